"""Captured frames to packet facts: link, IP and TCP/UDP headers read by hand, bounds-checked.

Scapy builds a Python object per layer and dissects about 10,000 packets a second; a SPAN
port carries far more. The monitor only needs addresses, ports, a DNS question name and a
TLS server name, so it reads those straight from the bytes (as dnsfilter.datapath.wire does for
queries) and lets scapy do what it is good at: reading capture files and sockets.

decode_frame never raises: a frame it cannot use comes back as a Skip saying why.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Callable
from typing import NamedTuple

from dnsfilter.datapath.wire import HEADER_LEN, Transport, parse_query
from dnsfilter.egress.tls import TlsError, client_hello_sni, looks_like_client_hello
from dnsfilter.errors import DropPacket, WireError

PROTO_TCP = 6
PROTO_UDP = 17
DNS_PORT = 53

_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_ETHERTYPE_VLAN = frozenset({0x8100, 0x88A8, 0x9100})
#: IPv6 extension headers walked to reach TCP/UDP: hop-by-hop, routing, destination options.
_IPV6_OPTION_HEADERS = frozenset({0, 43, 60})
_IPV6_FRAGMENT = 44
_IPV6_AH = 51
_MAX_IPV6_HEADERS = 8
#: BSD loopback address families meaning IPv6 (Linux/NetBSD 10, FreeBSD 28, OpenBSD 24, macOS 30).
_NULL_FAMILIES_V6 = frozenset({10, 24, 28, 30})
_NULL_FAMILY_V4 = 2

_inet_ntop = socket.inet_ntop
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_NO_CLIENT = ("", 0)


class LinkType(enum.IntEnum):
    """pcap LINKTYPE_ values this decoder reads (tcpdump.org/linktypes.html)."""

    NULL = 0  #: BSD loopback: a 4-byte address family in host byte order
    ETHERNET = 1  #: Ethernet II, with up to two 802.1Q/802.1ad tags
    RAW = 101  #: raw IPv4 or IPv6, told apart by the version nibble
    LINUX_SLL = 113  #: Linux "cooked" capture (tcpdump -i any)
    IPV4 = 228  #: raw IPv4
    IPV6 = 229  #: raw IPv6
    LINUX_SLL2 = 276  #: Linux "cooked" capture v2


class Skip(enum.Enum):
    """Why a frame gave no facts. The first three are broken packets, the rest uninteresting."""

    TRUNCATED = "truncated"  #: cut inside the IP or TCP/UDP header
    FRAGMENT = "fragment"  #: an IP fragment: there is no reassembly, so no reliable ports
    MALFORMED = "malformed"  #: a header field that cannot be right
    NOT_IP = "not_ip"  #: ARP, LLDP, an unknown link type ...: nothing to classify
    NOT_TCP_UDP = "not_tcp_udp"  #: ICMP, ESP, GRE ...

    @property
    def broken(self) -> bool:
        return self in _BROKEN


_BROKEN = frozenset({Skip.TRUNCATED, Skip.FRAGMENT, Skip.MALFORMED})


class Facts(NamedTuple):
    """What the detector needs from one TCP or UDP packet (a tuple: one per packet)."""

    src: str  #: source address, canonical text (inet_ntop)
    dst: str
    proto: int  #: PROTO_TCP or PROTO_UDP
    sport: int
    dport: int
    dns_query: bool = False  #: the payload is a DNS query (to port 53; header with QR=0)
    qname: str = ""  #: its question name, lowercased, no trailing dot; "" if unreadable
    sni: str = ""  #: server name of a TLS ClientHello in the payload; "" if none


def decode_frame(frame: bytes, linktype: int) -> Facts | Skip:
    """Facts of one captured frame, or the reason there are none."""
    link = _LINKS.get(linktype)
    if link is None:
        return Skip.NOT_IP
    return link(frame)


def _ethernet(frame: bytes) -> Facts | Skip:
    if len(frame) < 14:
        return Skip.TRUNCATED
    ethertype = (frame[12] << 8) | frame[13]
    offset = 14
    for _ in range(2):
        if ethertype not in _ETHERTYPE_VLAN:
            break
        if len(frame) < offset + 4:
            return Skip.TRUNCATED
        ethertype = (frame[offset + 2] << 8) | frame[offset + 3]
        offset += 4
    return _by_ethertype(frame, offset, ethertype)


def _linux_sll(frame: bytes) -> Facts | Skip:
    if len(frame) < 16:
        return Skip.TRUNCATED
    return _by_ethertype(frame, 16, (frame[14] << 8) | frame[15])


def _linux_sll2(frame: bytes) -> Facts | Skip:
    if len(frame) < 20:
        return Skip.TRUNCATED
    return _by_ethertype(frame, 20, (frame[0] << 8) | frame[1])


def _null(frame: bytes) -> Facts | Skip:
    if len(frame) < 4:
        return Skip.TRUNCATED
    # Host byte order of the capturing machine: one of the two ends holds the family.
    family = frame[0] or frame[3]
    if family == _NULL_FAMILY_V4:
        return _ipv4(frame, 4)
    if family in _NULL_FAMILIES_V6:
        return _ipv6(frame, 4)
    return Skip.NOT_IP


def _raw(frame: bytes) -> Facts | Skip:
    if not frame:
        return Skip.TRUNCATED
    version = frame[0] >> 4
    if version == 4:
        return _ipv4(frame, 0)
    if version == 6:
        return _ipv6(frame, 0)
    return Skip.MALFORMED


def _raw_ipv4(frame: bytes) -> Facts | Skip:
    return _ipv4(frame, 0)


def _raw_ipv6(frame: bytes) -> Facts | Skip:
    return _ipv6(frame, 0)


def _by_ethertype(frame: bytes, offset: int, ethertype: int) -> Facts | Skip:
    if ethertype == _ETHERTYPE_IPV4:
        return _ipv4(frame, offset)
    if ethertype == _ETHERTYPE_IPV6:
        return _ipv6(frame, offset)
    return Skip.NOT_IP


def _ipv4(frame: bytes, offset: int) -> Facts | Skip:
    available = len(frame) - offset
    if available < 20:
        return Skip.TRUNCATED
    first = frame[offset]
    header_length = (first & 0x0F) * 4
    if first >> 4 != 4 or header_length < 20:
        return Skip.MALFORMED
    total_length = (frame[offset + 2] << 8) | frame[offset + 3]
    if total_length < header_length:
        return Skip.MALFORMED
    if available < header_length:
        return Skip.TRUNCATED
    # MF set or a non-zero offset: only the first fragment has ports, and even those
    # cannot be trusted without the rest (overlapping-fragment evasion).
    if ((frame[offset + 6] << 8) | frame[offset + 7]) & 0x3FFF:
        return Skip.FRAGMENT
    proto = frame[offset + 9]
    if proto not in (PROTO_TCP, PROTO_UDP):
        return Skip.NOT_TCP_UDP
    # Ethernet pads short frames; a snap length cuts long ones: the packet ends at
    # whichever comes first.
    end = offset + min(total_length, available)
    src = _inet_ntop(_AF_INET, frame[offset + 12 : offset + 16])
    dst = _inet_ntop(_AF_INET, frame[offset + 16 : offset + 20])
    return _transport(frame, offset + header_length, end, proto, src, dst)


def _ipv6(frame: bytes, offset: int) -> Facts | Skip:
    available = len(frame) - offset
    if available < 40:
        return Skip.TRUNCATED
    if frame[offset] >> 4 != 6:
        return Skip.MALFORMED
    payload_length = (frame[offset + 4] << 8) | frame[offset + 5]
    # A zero payload length means a jumbogram (RFC 2675); the capture's length is all we know.
    end = offset + 40 + payload_length if payload_length else len(frame)
    end = min(end, len(frame))
    proto = frame[offset + 6]
    src = _inet_ntop(_AF_INET6, frame[offset + 8 : offset + 24])
    dst = _inet_ntop(_AF_INET6, frame[offset + 24 : offset + 40])
    pos = offset + 40
    for _ in range(_MAX_IPV6_HEADERS):
        if proto in (PROTO_TCP, PROTO_UDP):
            return _transport(frame, pos, end, proto, src, dst)
        if proto == _IPV6_FRAGMENT:
            return Skip.FRAGMENT
        if proto not in _IPV6_OPTION_HEADERS and proto != _IPV6_AH:
            return Skip.NOT_TCP_UDP
        if pos + 2 > end:
            return Skip.TRUNCATED
        length = (frame[pos + 1] + 2) * 4 if proto == _IPV6_AH else (frame[pos + 1] + 1) * 8
        proto = frame[pos]
        pos += length
    return Skip.MALFORMED


def _transport(frame: bytes, pos: int, end: int, proto: int, src: str, dst: str) -> Facts | Skip:
    if proto == PROTO_TCP:
        if pos + 20 > end:
            return Skip.TRUNCATED
        header_length = (frame[pos + 12] >> 4) * 4
        if header_length < 20:
            return Skip.MALFORMED
        if pos + header_length > end:
            return Skip.TRUNCATED
        sport = (frame[pos] << 8) | frame[pos + 1]
        dport = (frame[pos + 2] << 8) | frame[pos + 3]
        payload = frame[pos + header_length : end]
        if not payload:
            return Facts(src, dst, proto, sport, dport)
        if dport == DNS_PORT:
            # DNS over TCP: a two-byte length, then the message (RFC 1035 4.2.2). Only a
            # message that starts a segment is read; there is no stream reassembly.
            size = (payload[0] << 8) | payload[1] if len(payload) >= 2 else 0
            facts = Facts(src, dst, proto, sport, dport)
            return _with_dns(facts, payload[2 : 2 + size], Transport.TCP)
        if looks_like_client_hello(payload):
            try:
                sni = client_hello_sni(payload)
            except TlsError:
                sni = None
            if sni:
                return Facts(src, dst, proto, sport, dport, sni=sni)
        return Facts(src, dst, proto, sport, dport)
    if pos + 8 > end:
        return Skip.TRUNCATED
    udp_length = (frame[pos + 4] << 8) | frame[pos + 5]
    if udp_length < 8:
        return Skip.MALFORMED
    sport = (frame[pos] << 8) | frame[pos + 1]
    dport = (frame[pos + 2] << 8) | frame[pos + 3]
    facts = Facts(src, dst, proto, sport, dport)
    if dport == DNS_PORT:
        return _with_dns(facts, frame[pos + 8 : min(end, pos + udp_length)], Transport.UDP)
    return facts


def _with_dns(facts: Facts, message: bytes, transport: Transport) -> Facts:
    if len(message) < HEADER_LEN or message[2] & 0x80:
        return facts  # too short for a header, or a response: not a query
    try:
        qname = parse_query(message, _NO_CLIENT, transport).qname
    except DropPacket:
        return facts
    except WireError:
        # Still a query to that resolver (an odd opcode, a broken question): count it,
        # without a name.
        qname = ""
    return facts._replace(dns_query=True, qname=qname)


_LINKS: dict[int, Callable[[bytes], Facts | Skip]] = {
    LinkType.NULL: _null,
    LinkType.ETHERNET: _ethernet,
    LinkType.RAW: _raw,
    LinkType.LINUX_SLL: _linux_sll,
    LinkType.IPV4: _raw_ipv4,
    LinkType.IPV6: _raw_ipv6,
    LinkType.LINUX_SLL2: _linux_sll2,
}
