"""The passive monitor: frames from a capture file or an interface, through decode and detect,
to the event sinks.

Scapy is imported here and only inside the functions that capture, so importing this module
(or the command line) costs nothing until a capture starts. Scapy reads files and sockets;
the frames themselves are decoded by dnsfilter.egress.decode (see there for why).

A frame that cannot be used is counted and passed over. An unexpected exception on one frame
is counted as an error and logged once; it does not end the capture.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnsfilter.egress.decode import LinkType, Skip, decode_frame
from dnsfilter.egress.detect import Detector
from dnsfilter.egress.plan import EgressPlan, merged
from dnsfilter.egress.sink import EventSink
from dnsfilter.errors import DnsFilterError

log = logging.getLogger("dnsfilter.egress")

#: Longest BPF program the Linux kernel accepts (BPF_MAXINSNS).
BPF_MAX_INSTRUCTIONS = 4096
#: Captures everything the decoder can use, for when the narrow filter is too long.
FALLBACK_FILTER = "ip or ip6"
#: Prefixes the filter names one by one at most: libpcap's optimizer is quadratic (256 compile
#: in 0.05 s, 1,500 take 20 s), and the kernel takes at most BPF_MAX_INSTRUCTIONS.
MAX_FILTER_PREFIXES = 256
#: Ports the monitor classifies without a banned prefix: DNS, DoT/DoQ, TLS/QUIC.
WATCHED_PORTS = (53, 853, 443)
#: Seconds to wait for the capture thread to report that it runs.
_START_TIMEOUT = 10.0
#: How often the main thread checks that the capture thread is still alive.
_WATCH_INTERVAL = 0.2
#: DLT values (as pcap_datalink reports them) for raw IP: 12 on Linux, 14 on OpenBSD.
_DLT_RAW = frozenset({12, 14, LinkType.RAW})
_SUPPORTED_LINKS = frozenset(LinkType)
#: Receive buffer asked for on the capture socket.
_CAPTURE_BUFFER = 32 * 1024 * 1024
#: Linux socket options the socket module does not name (linux/socket.h, linux/if_packet.h).
_SO_RCVBUFFORCE = 33
_SOL_PACKET = 263
_PACKET_STATISTICS = 6


class CaptureError(DnsFilterError):
    """A capture cannot start or stopped on its own; the message says why."""


@dataclass
class MonitorStats:
    """Packet counters (dnsfilter.observe.metrics.MonitorView). The capture thread writes all but
    kernel_drops, which the main thread adds up; each field has one writer thread."""

    packets: int = 0
    #: broken frames by Skip reason (truncated, fragment, malformed)
    skipped: Counter[str] = field(default_factory=Counter)
    #: frames of no interest by Skip reason (not_ip, not_tcp_udp)
    ignored: Counter[str] = field(default_factory=Counter)
    errors: int = 0  #: frames that raised inside the monitor: a bug, reported once
    #: packets the kernel dropped because the monitor fell behind (--iface only)
    kernel_drops: int = 0


class Monitor:
    """Frames in, events out to every sink. No I/O of its own: the capture loops feed it."""

    def __init__(
        self, detector: Detector, sinks: Sequence[EventSink], stats: MonitorStats | None = None
    ) -> None:
        self.detector = detector
        self.sinks = tuple(sinks)
        self.stats = stats if stats is not None else MonitorStats()

    def feed(self, frame: bytes, linktype: int, timestamp: float) -> None:
        stats = self.stats
        stats.packets += 1
        try:
            facts = decode_frame(frame, linktype)
            if isinstance(facts, Skip):
                (stats.skipped if facts.broken else stats.ignored)[facts.value] += 1
                return
            for event in self.detector.classify(facts, timestamp):
                for sink in self.sinks:
                    sink.record(event)
        except Exception:
            # One bad frame, or one failing sink, must not end a capture that may run for
            # weeks; the first traceback is enough to find the bug.
            stats.errors += 1
            if stats.errors == 1:
                log.exception("error on packet %d; counting further errors silently", stats.packets)


def build_filter(plan: EgressPlan) -> str:
    """A BPF expression for what the monitor classifies: the watched ports and every banned
    prefix, in the client-to-server direction only; FALLBACK_FILTER past MAX_FILTER_PREFIXES."""
    parts = [f"dst port {port}" for port in WATCHED_PORTS]
    prefixes = [p for entry in (*plan.banned, *plan.doh) for p in entry.prefixes]
    nets = [f"dst net {prefix}" for version in (4, 6) for prefix in merged(prefixes, version)]
    if len(nets) > MAX_FILTER_PREFIXES:
        log.warning(
            "%d banned prefixes make too long a BPF filter; capturing all IP traffic and "
            "filtering in Python instead",
            len(nets),
        )
        return FALLBACK_FILTER
    return " or ".join(parts + nets)


def run_pcap(path: Path, monitor: Monitor) -> None:
    """Feed every frame of a pcap or pcapng file, read one at a time."""
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapNgReader, RawPcapReader

    try:
        reader: Any = RawPcapReader(str(path))
    except (OSError, Scapy_Exception, EOFError) as exc:
        raise CaptureError(f"{path}: cannot read as a pcap or pcapng file: {exc}") from None
    feed = monitor.feed
    try:
        # A bool, not a narrowing isinstance: scapy types its metadata for plain pcap only.
        pcapng = isinstance(reader, RawPcapNgReader)
        if pcapng:
            # pcapng: every packet carries its interface's link type and time resolution.
            for frame, meta in reader:
                stamp = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
                feed(frame, meta.linktype, stamp)
        else:
            linktype = reader.linktype
            if linktype not in _SUPPORTED_LINKS:
                raise CaptureError(f"{path}: link type {linktype} is not supported")
            scale = 1e-9 if reader.nano else 1e-6
            for frame, meta in reader:
                feed(frame, linktype, meta.sec + meta.usec * scale)
    finally:
        reader.close()


def check_filter(expression: str, iface: str) -> int:
    """Compile a BPF expression for iface; return its length in instructions.

    Done before capturing because a filter error inside AsyncSniffer's thread leaves the
    sniffer looking alive (secdev/scapy#3567).
    """
    from scapy.arch.common import compile_filter, free_filter
    from scapy.error import Scapy_Exception

    try:
        program = compile_filter(expression, iface=iface)
    except (Scapy_Exception, ImportError, OSError, ValueError) as exc:
        raise CaptureError(f"BPF filter does not compile for {iface}: {exc}") from None
    length = int(program.bf_len)
    free_filter(program)
    return length


def require_interface(iface: str) -> None:
    """Fail with a plain message before scapy gets to report a missing interface its way."""
    try:
        socket.if_nametoindex(iface)
    except (OSError, ValueError):
        raise CaptureError(f"no network interface named {iface!r}") from None


def choose_filter(plan: EgressPlan, iface: str) -> str:
    """The narrow filter when the kernel takes it, else FALLBACK_FILTER (with a warning)."""
    require_interface(iface)
    expression = build_filter(plan)
    if check_filter(expression, iface) <= BPF_MAX_INSTRUCTIONS:
        return expression
    log.warning(
        "the BPF filter is longer than the kernel takes; capturing all IP traffic and "
        "filtering in Python instead"
    )
    check_filter(FALLBACK_FILTER, iface)
    return FALLBACK_FILTER


def run_iface(
    iface: str,
    monitor: Monitor,
    expression: str,
    stop: threading.Event,
    on_started: Callable[[], None] = lambda: None,
) -> None:
    """Capture on iface until stop is set; raise CaptureError if the capture cannot start or
    ends by itself (interface gone, socket error)."""
    require_interface(iface)
    check_filter(expression, iface)
    import scapy.layers.l2  # noqa: F401  (registers Ethernet framing; silences a guess warning)
    from scapy.config import conf
    from scapy.data import ARPHRD_TO_DLT
    from scapy.error import Scapy_Exception
    from scapy.sendrecv import AsyncSniffer

    try:
        sock: Any = conf.L2listen(iface=iface, filter=expression)
    except (OSError, Scapy_Exception, ValueError) as exc:
        raise CaptureError(f"cannot capture on {iface}: {exc}") from None
    try:
        linktype = _linktype(ARPHRD_TO_DLT.get(sock.ins.getsockname()[3]))
        if linktype is None:
            raise CaptureError(f"{iface}: its link type is not supported")
        # Hand the raw bytes to the decoder: scapy's own dissection is the slow part.
        sock.LL = conf.raw_layer
        _enlarge_buffer(sock.ins)
        feed = monitor.feed

        def on_packet(packet: Any) -> None:
            feed(packet.load, linktype, float(packet.time))

        started = threading.Event()
        sniffer = AsyncSniffer(
            opened_socket=sock, prn=on_packet, store=False, started_callback=started.set
        )
        sniffer.start()
        try:
            if not started.wait(_START_TIMEOUT):
                raise CaptureError(f"the capture thread on {iface} did not start")
            on_started()
            while not stop.wait(_WATCH_INTERVAL):
                # Read as it happens, for the metric: each read also resets the kernel's count.
                monitor.stats.kernel_drops += _kernel_drops(sock.ins)
                if sniffer.thread is None or not sniffer.thread.is_alive():
                    reason = sniffer.exception or "its socket failed (see the warning above)"
                    raise CaptureError(f"capture on {iface} stopped: {reason}")
        finally:
            if sniffer.running and sniffer.thread is not None and sniffer.thread.is_alive():
                sniffer.stop(join=False)
                sniffer.thread.join(_START_TIMEOUT)
            monitor.stats.kernel_drops += _kernel_drops(sock.ins)
    finally:
        sock.close()


def _enlarge_buffer(capture: socket.socket) -> None:
    """A mirror port delivers in bursts; scapy's 64 kB receive buffer overflows in
    milliseconds. Root may exceed net.core.rmem_max (SO_RCVBUFFORCE); others get the cap."""
    for option in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            capture.setsockopt(socket.SOL_SOCKET, option, _CAPTURE_BUFFER)
            return
        except OSError:
            continue


def _kernel_drops(capture: socket.socket) -> int:
    """Packets the kernel dropped on this socket for want of buffer space."""
    try:
        raw = capture.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
    except OSError:
        return 0  # the socket already failed: nothing to read
    _received, dropped = struct.unpack("II", raw)
    return int(dropped)


def _linktype(dlt: int | None) -> LinkType | None:
    if dlt in _DLT_RAW:
        return LinkType.RAW
    if dlt in (LinkType.ETHERNET, LinkType.LINUX_SLL, LinkType.NULL):
        return LinkType(dlt)
    return None
