"""Frames to Facts: literal headers built here byte by byte, every link type, every way to break."""

from __future__ import annotations

import random
import socket
import struct

import pytest

from dnsfilter.egress.decode import PROTO_TCP, PROTO_UDP, Facts, LinkType, Skip, decode_frame
from tests.egress.builders import client_hello, dns_query

SRC, DST = "10.1.0.5", "198.51.100.99"
SRC6, DST6 = "fd00::7", "2001:db8::99"


def ipv4(
    payload: bytes,
    proto: int = PROTO_UDP,
    src: str = SRC,
    dst: str = DST,
    frag: int = 0,
    ihl: int = 5,
    total: int | None = None,
) -> bytes:
    options = bytes((ihl - 5) * 4) if ihl > 5 else b""
    length = 20 + len(options) + len(payload) if total is None else total
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        length,
        1,
        frag,
        64,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return header + options + payload


def ipv6(payload: bytes, nh: int = PROTO_UDP, src: str = SRC6, dst: str = DST6) -> bytes:
    return (
        struct.pack("!IHBB", 0x60000000, len(payload), nh, 64)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + payload
    )


def udp(dport: int, payload: bytes = b"", sport: int = 40000, length: int | None = None) -> bytes:
    size = 8 + len(payload) if length is None else length
    return struct.pack("!HHHH", sport, dport, size, 0) + payload


def tcp(dport: int, payload: bytes = b"", sport: int = 50000, offset: int = 5) -> bytes:
    options = bytes((offset - 5) * 4) if offset > 5 else b""
    flags = 0x18 if payload else 0x02
    header = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, offset << 4, flags, 65535, 0, 0)
    return header + options + payload


def ether(packet: bytes, ethertype: int = 0x0800, tags: int = 0) -> bytes:
    head = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
    for _ in range(tags):
        head += struct.pack("!HH", 0x8100, 100)
    return head + struct.pack("!H", ethertype) + packet


def sll(packet: bytes, ethertype: int = 0x0800) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, bytes(8), ethertype) + packet


def sll2(packet: bytes, ethertype: int = 0x0800) -> bytes:
    return struct.pack("!HHIHBB8s", ethertype, 0, 2, 1, 0, 6, bytes(8)) + packet


QUERY = dns_query("Www.Example.ORG")
FACTS = Facts(SRC, DST, PROTO_UDP, 40000, 53, dns_query=True, qname="www.example.org")


@pytest.mark.parametrize(
    ("frame", "linktype", "expected"),
    [
        pytest.param(ether(ipv4(udp(53, QUERY))), LinkType.ETHERNET, FACTS, id="ethernet"),
        pytest.param(ether(ipv4(udp(53, QUERY)), tags=1), LinkType.ETHERNET, FACTS, id="vlan"),
        pytest.param(ether(ipv4(udp(53, QUERY)), tags=2), LinkType.ETHERNET, FACTS, id="qinq"),
        pytest.param(
            ether(ipv4(udp(53, QUERY))) + bytes(20), LinkType.ETHERNET, FACTS, id="padding"
        ),
        pytest.param(sll(ipv4(udp(53, QUERY))), LinkType.LINUX_SLL, FACTS, id="sll"),
        pytest.param(sll2(ipv4(udp(53, QUERY))), LinkType.LINUX_SLL2, FACTS, id="sll2"),
        pytest.param(ipv4(udp(53, QUERY)), LinkType.RAW, FACTS, id="raw"),
        pytest.param(ipv4(udp(53, QUERY)), LinkType.IPV4, FACTS, id="raw-ipv4"),
        pytest.param(struct.pack("<I", 2) + ipv4(udp(53, QUERY)), LinkType.NULL, FACTS, id="null"),
        pytest.param(
            struct.pack(">I", 2) + ipv4(udp(53, QUERY)), LinkType.NULL, FACTS, id="null-be"
        ),
        pytest.param(ether(ipv4(udp(53, QUERY), ihl=7)), LinkType.ETHERNET, FACTS, id="ip-options"),
        pytest.param(
            ether(ipv6(udp(53, QUERY)), 0x86DD),
            LinkType.ETHERNET,
            FACTS._replace(src=SRC6, dst=DST6),
            id="ipv6",
        ),
        pytest.param(
            ipv6(udp(53, QUERY)),
            LinkType.IPV6,
            FACTS._replace(src=SRC6, dst=DST6),
            id="raw-ipv6",
        ),
        pytest.param(
            # hop-by-hop options (8 bytes) then destination options (16 bytes), then UDP
            ipv6(bytes([60, 0]) + bytes(6) + bytes([17, 1]) + bytes(14) + udp(53, QUERY), nh=0),
            LinkType.IPV6,
            FACTS._replace(src=SRC6, dst=DST6),
            id="ipv6-extension-headers",
        ),
        pytest.param(
            ether(ipv4(tcp(53, struct.pack("!H", len(QUERY)) + QUERY), PROTO_TCP)),
            LinkType.ETHERNET,
            FACTS._replace(proto=PROTO_TCP, sport=50000),
            id="dns-over-tcp",
        ),
        pytest.param(
            ether(ipv4(tcp(853), PROTO_TCP)),
            LinkType.ETHERNET,
            Facts(SRC, DST, PROTO_TCP, 50000, 853),
            id="dot-syn",
        ),
        pytest.param(
            ether(ipv4(tcp(443, client_hello("Dns.Google")), PROTO_TCP)),
            LinkType.ETHERNET,
            Facts(SRC, DST, PROTO_TCP, 50000, 443, sni="dns.google"),
            id="client-hello",
        ),
        pytest.param(
            ether(ipv4(tcp(443, client_hello("dns.google")[:20]), PROTO_TCP)),
            LinkType.ETHERNET,
            Facts(SRC, DST, PROTO_TCP, 50000, 443),
            id="client-hello-cut-before-name",
        ),
        pytest.param(
            ether(ipv4(tcp(443, b"\x17\x03\x03\x00\x10" + bytes(16), offset=8), PROTO_TCP)),
            LinkType.ETHERNET,
            Facts(SRC, DST, PROTO_TCP, 50000, 443),
            id="tls-data-tcp-options",
        ),
        pytest.param(
            ether(ipv4(udp(443, b"\xc3quic"))),
            LinkType.ETHERNET,
            Facts(SRC, DST, PROTO_UDP, 40000, 443),
            id="quic",
        ),
        pytest.param(
            ether(ipv4(udp(53, dns_query("x", flags=0x8180)))),
            LinkType.ETHERNET,
            Facts(SRC, DST, PROTO_UDP, 40000, 53),
            id="dns-response-is-no-query",
        ),
        pytest.param(
            ether(ipv4(udp(53, b"\x12\x34"))),
            LinkType.ETHERNET,
            Facts(SRC, DST, PROTO_UDP, 40000, 53),
            id="dns-too-short",
        ),
        pytest.param(
            ether(ipv4(udp(53, dns_query("x")[:13] + b"\x3f"))),
            LinkType.ETHERNET,
            FACTS._replace(qname=""),
            id="dns-broken-question",
        ),
        pytest.param(
            ether(ipv4(udp(53, dns_query("x", flags=0x2800)))),
            LinkType.ETHERNET,
            FACTS._replace(qname=""),
            id="dns-odd-opcode",
        ),
        pytest.param(
            # The IP header says 60 bytes were sent; the capture kept 50 (a snap length).
            ether(ipv4(udp(53, QUERY), total=20 + 8 + len(QUERY) + 10)),
            LinkType.ETHERNET,
            FACTS,
            id="payload-cut-by-snaplen",
        ),
    ],
)
def test_facts(frame: bytes, linktype: int, expected: Facts) -> None:
    assert decode_frame(frame, linktype) == expected


@pytest.mark.parametrize(
    ("frame", "linktype", "expected"),
    [
        pytest.param(b"\x02\x00", LinkType.ETHERNET, Skip.TRUNCATED, id="short-ethernet"),
        pytest.param(ether(b"", tags=1)[:16], LinkType.ETHERNET, Skip.TRUNCATED, id="short-vlan"),
        pytest.param(ether(ipv4(udp(53))[:19]), LinkType.ETHERNET, Skip.TRUNCATED, id="ip-cut"),
        pytest.param(
            ether(ipv4(udp(53), ihl=6)[:22]), LinkType.ETHERNET, Skip.TRUNCATED, id="options-cut"
        ),
        pytest.param(
            ether(ipv4(tcp(443), PROTO_TCP)[:30]), LinkType.ETHERNET, Skip.TRUNCATED, id="tcp-cut"
        ),
        pytest.param(
            ether(ipv4(tcp(443, offset=10), PROTO_TCP)[:44]),
            LinkType.ETHERNET,
            Skip.TRUNCATED,
            id="tcp-options-cut",
        ),
        pytest.param(ether(ipv4(udp(53))[:24]), LinkType.ETHERNET, Skip.TRUNCATED, id="udp-cut"),
        pytest.param(ipv6(udp(53))[:39], LinkType.IPV6, Skip.TRUNCATED, id="ipv6-cut"),
        pytest.param(b"", LinkType.RAW, Skip.TRUNCATED, id="empty"),
        pytest.param(sll(b"")[:10], LinkType.LINUX_SLL, Skip.TRUNCATED, id="short-sll"),
        pytest.param(b"\x02\x00", LinkType.NULL, Skip.TRUNCATED, id="short-null"),
        pytest.param(
            ether(ipv4(udp(53, QUERY), frag=0x2000)), LinkType.ETHERNET, Skip.FRAGMENT, id="mf"
        ),
        pytest.param(ether(ipv4(b"x" * 16, frag=185)), LinkType.ETHERNET, Skip.FRAGMENT, id="off"),
        pytest.param(
            ipv6(bytes([17, 0, 0, 1, 0, 0, 0, 1]) + udp(53), nh=44),
            LinkType.IPV6,
            Skip.FRAGMENT,
            id="ipv6-fragment",
        ),
        pytest.param(ether(ipv4(udp(53), ihl=4)), LinkType.ETHERNET, Skip.MALFORMED, id="ihl-4"),
        pytest.param(
            ether(ipv4(udp(53), total=10)), LinkType.ETHERNET, Skip.MALFORMED, id="total-short"
        ),
        pytest.param(
            ether(b"\x60" + ipv4(udp(53))[1:]), LinkType.ETHERNET, Skip.MALFORMED, id="v6-in-v4"
        ),
        pytest.param(
            ether(ipv4(tcp(443, offset=4), PROTO_TCP)),
            LinkType.ETHERNET,
            Skip.MALFORMED,
            id="tcp-offset-4",
        ),
        pytest.param(
            ether(ipv4(udp(53, length=7))), LinkType.ETHERNET, Skip.MALFORMED, id="udp-length"
        ),
        pytest.param(b"\x50" + bytes(30), LinkType.RAW, Skip.MALFORMED, id="ip-version-5"),
        pytest.param(
            ipv6(b"", nh=0),
            LinkType.IPV6,
            Skip.TRUNCATED,
            id="ipv6-extension-cut",
        ),
        pytest.param(
            ipv6(b"".join(bytes([0, 0]) + bytes(6) for _ in range(9)), nh=0),
            LinkType.IPV6,
            Skip.MALFORMED,
            id="ipv6-endless-extensions",
        ),
        pytest.param(ether(b"\x00" * 28, 0x0806), LinkType.ETHERNET, Skip.NOT_IP, id="arp"),
        pytest.param(ipv4(udp(53)), 9999, Skip.NOT_IP, id="unknown-link-type"),
        pytest.param(struct.pack("<I", 7) + ipv4(udp(53)), LinkType.NULL, Skip.NOT_IP, id="af7"),
        pytest.param(
            ether(ipv4(bytes(8), proto=1)), LinkType.ETHERNET, Skip.NOT_TCP_UDP, id="icmp"
        ),
        pytest.param(ipv6(b"", nh=59), LinkType.IPV6, Skip.NOT_TCP_UDP, id="no-next-header"),
    ],
)
def test_skips(frame: bytes, linktype: int, expected: Skip) -> None:
    assert decode_frame(frame, linktype) is expected


def test_broken_and_uninteresting_are_told_apart() -> None:
    assert {s for s in Skip if s.broken} == {Skip.TRUNCATED, Skip.FRAGMENT, Skip.MALFORMED}


def test_fuzzed_frames_never_raise() -> None:
    """Whatever the bytes, decode_frame returns Facts or a Skip."""
    rng = random.Random(6)
    seeds = [
        (ether(ipv4(udp(53, QUERY))), LinkType.ETHERNET),
        (ether(ipv4(tcp(443, client_hello("dns.google")), PROTO_TCP)), LinkType.ETHERNET),
        (ether(ipv4(tcp(53, struct.pack("!H", len(QUERY)) + QUERY), PROTO_TCP)), LinkType.ETHERNET),
        (ipv6(bytes([17, 0]) + bytes(6) + udp(53, QUERY), nh=60), LinkType.IPV6),
        (sll2(ipv6(tcp(853), nh=PROTO_TCP), 0x86DD), LinkType.LINUX_SLL2),
    ]
    for _ in range(20000):
        seed, linktype = rng.choice(seeds)
        data = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(3)
            at = rng.randrange(len(data))
            if op == 0:
                data[at] = rng.randrange(256)
            elif op == 1:
                del data[at]
            else:
                data[at:at] = bytes([rng.randrange(256)])
        result = decode_frame(bytes(data), linktype)
        assert isinstance(result, Facts | Skip)
