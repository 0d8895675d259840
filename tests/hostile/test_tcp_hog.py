"""DNS over TCP that one client cannot hog: slots per address, unread replies, keepalive.

Every client here is on loopback and so exempt from rate limits (ratelimit.exempt_networks
covers 127.0.0.0/8 by default): the caps under test hold for exempt clients too.
"""

from __future__ import annotations

import selectors
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.hostile.connflood import UnreadPipelines, rss_mib
from tests.integration.conftest import APPS_LIST, OTHER_LIST, base_config
from tests.integration.harness import TIMEOUT, DnsFilter, make, wait_until
from tests.nsd import NsdServer

pytestmark = pytest.mark.integration

PER_CLIENT = 16  #: server.max_tcp_per_client's default


@pytest.fixture
def serve(tmp_path: Path, nsd_upstream: NsdServer) -> Iterator[Any]:
    started: list[DnsFilter] = []

    def start(**server: Any) -> DnsFilter:
        config = base_config([nsd_upstream.address], server=server)
        dnsfilter = DnsFilter(tmp_path, config, {"apps": APPS_LIST, "other": OTHER_LIST})
        dnsfilter.start()
        started.append(dnsfilter)
        return dnsfilter

    yield start
    for dnsfilter in started:
        code = dnsfilter.stop()
        assert code == 0, f"dnsfilter exited with {code}:\n{dnsfilter.log}"
        assert "Traceback" not in dnsfilter.log, dnsfilter.log


def _tcp_answers(server: DnsFilter, source: str, count: int) -> list[str]:
    """rcodes of count TCP queries from source, one connection each ("error: ..." if none)."""
    outcomes = []
    for n in range(count):
        query = make(f"victim-{n}.wild.example.test")
        try:
            reply = dns.query.tcp(
                query, "127.0.0.1", port=server.port, timeout=TIMEOUT, source=source
            )
            outcomes.append(dns.rcode.to_text(reply.rcode()))
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            outcomes.append(f"error: {type(exc).__name__}")
    return outcomes


def _closed_by_peer(
    sockets: list[socket.socket], timeout: float, until: int | None = None
) -> list[socket.socket]:
    """Those of sockets the server closes within timeout (EOF or reset), or as soon as until
    of them are; they send nothing, so anything readable is a close."""
    closed: list[socket.socket] = []
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while selector.get_map() and len(closed) != until and time.monotonic() < deadline:
            for key, _ in selector.select(0.1):
                selector.unregister(key.fileobj)
                assert isinstance(key.fileobj, socket.socket)
                closed.append(key.fileobj)
    return closed


def test_one_address_with_300_connections_leaves_tcp_to_the_others(serve: Any) -> None:
    # Idle timeout long enough that it cannot be what frees a slot during the test.
    server = serve(tcp_idle_timeout=30)
    hog = [
        socket.create_connection(
            ("127.0.0.1", server.port), timeout=3, source_address=("127.0.0.2", 0)
        )
        for _ in range(300)
    ]
    try:
        assert _tcp_answers(server, "127.0.0.3", 10) == ["NOERROR"] * 10
        # The hog keeps its 16 slots and no more; everything past them was closed at once.
        closed = _closed_by_peer(hog, timeout=10, until=300 - PER_CLIENT)
        assert len(closed) == 300 - PER_CLIENT
        kept = [sock for sock in hog if sock not in closed]
        for sock in kept:  # ...and those 16 are served
            sock.settimeout(TIMEOUT)
            reply = dns.query.receive_tcp(_sent(sock, make("www.example.test")), time.time() + 3)
            assert reply[0].rcode() == dns.rcode.NOERROR
    finally:
        for sock in hog:
            sock.close()
    assert (
        server.metric("dnsfilter_tcp_connections_rejected_total", reason="per_address")
        == 300 - PER_CLIENT
    )
    assert server.metric("dnsfilter_tcp_connections_rejected_total", reason="global") == 0


def _sent(sock: socket.socket, query: dns.message.Message) -> socket.socket:
    sock.sendall(_framed(query.to_wire()))
    return sock


def _framed(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


def test_replies_never_read_do_not_grow_memory(serve: Any) -> None:
    idle = 2.0
    server = serve(tcp_idle_timeout=idle)
    assert server.process is not None
    pid = server.process.pid
    # A cached 2.7 kB answer to a 40-byte query: the amplification a reader-less client wants.
    query = make("big.example.test", "TXT", edns=True, payload=1232)
    assert server.tcp("big.example.test", "TXT", edns=True).rcode() == dns.rcode.NOERROR
    burst = _framed(query.to_wire()) * 200
    baseline = peak = rss_mib(pid)
    with UnreadPipelines(("127.0.0.1", server.port), 10, "127.0.0.4", burst, 25) as flood:
        deadline = time.monotonic() + 25
        while not flood.done and time.monotonic() < deadline:
            peak = max(peak, rss_mib(pid))
            if peak > baseline + 50:
                break  # grown past the bound: no need to watch it reach a gigabyte
            time.sleep(0.05)
        closed, sent = flood.closed, flood.sent
    assert peak < baseline + 50, f"RSS grew from {baseline:.0f} to {peak:.0f} MiB"
    assert closed == 10, f"{closed} of 10 connections closed ({sent} query bytes sent)"
    assert server.metric("dnsfilter_tcp_connections_closed_total", reason="unread_replies") == 10
    paused = server.metric("dnsfilter_tcp_reads_paused_total")
    assert paused is not None and paused >= 10
    print(f"RSS {baseline:.1f} -> peak {peak:.1f} MiB; {sent / 1e6:.1f} MB of queries sent")


def _keepalive(reply: dns.message.Message) -> bytes | None:
    """The data of the reply's edns-tcp-keepalive option, or None when it has none."""
    for option in reply.options:
        if option.otype == dns.edns.OptionType.KEEPALIVE:
            return bytes(option.to_wire())
    return None


def _asking(name: str, qtype: str = "A") -> dns.message.QueryMessage:
    keepalive = dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE, b"")
    return dns.message.make_query(name, qtype, use_edns=0, options=[keepalive])


def test_tcp_keepalive_is_advertised_to_clients_that_ask(serve: Any) -> None:
    server = serve(tcp_idle_timeout=7.5)
    port = server.port

    def tcp(query: dns.message.Message) -> dns.message.Message:
        return dns.query.tcp(query, "127.0.0.1", port=port, timeout=TIMEOUT)

    expected = struct.pack("!H", 75)  # 7.5 s in units of 100 ms
    # A forwarded miss (answered later) and a blocked name (answered at once) alike.
    for name in ("www.example.test", "banned.example.test", "www.example.test"):
        reply = tcp(_asking(name))
        assert reply.rcode() == dns.rcode.NOERROR
        assert _keepalive(reply) == expected, name
    assert _keepalive(tcp(make("www.example.test", edns=True))) is None, "not asked: not sent"
    udp = dns.query.udp(_asking("www.example.test"), "127.0.0.1", port=port, timeout=TIMEOUT)
    assert udp.rcode() == dns.rcode.NOERROR
    assert _keepalive(udp) is None, "never over UDP (RFC 7828 3.3.2)"


def test_idle_timeout_holds_for_a_query_left_half_sent(serve: Any) -> None:
    server = serve(tcp_idle_timeout=1.0)
    wire = _framed(make("www.example.test").to_wire())
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(wire[: len(wire) // 2])  # length and half the message, then nothing
        assert len(_closed_by_peer([sock], timeout=5)) == 1
    assert wait_until(
        lambda: server.metric("dnsfilter_tcp_connections_closed_total", reason="incomplete") == 1
    )
