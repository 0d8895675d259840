"""The ClientHello SNI parser: real and hand-built hellos, cuts, and junk."""

from __future__ import annotations

import random
import struct

import pytest

from dnsfilter.egress.tls import TlsError, TlsTruncated, client_hello_sni, looks_like_client_hello
from tests.egress.builders import (
    BIG_KEY_SHARE,
    RFC8448_CLIENT_HELLO,
    SUPPORTED_GROUPS,
    client_hello,
    extension,
    record,
    server_name_extension,
)


def test_rfc8448_client_hello() -> None:
    """A ClientHello from a real TLS 1.3 stack (RFC 8448 section 3) names "server"."""
    assert len(RFC8448_CLIENT_HELLO) == 196
    assert client_hello_sni(record(RFC8448_CLIENT_HELLO)) == "server"
    assert looks_like_client_hello(record(RFC8448_CLIENT_HELLO))


@pytest.mark.parametrize(
    ("hello", "expected"),
    [
        pytest.param(client_hello("dns.google"), "dns.google", id="only-extension"),
        pytest.param(
            client_hello("dns.google", before=[SUPPORTED_GROUPS, BIG_KEY_SHARE]),
            "dns.google",
            id="after-a-large-key-share",
        ),
        pytest.param(
            client_hello("dns.google", after=[SUPPORTED_GROUPS]), "dns.google", id="first"
        ),
        pytest.param(client_hello("Dns.Google."), "dns.google", id="case-and-dot-folded"),
        pytest.param(client_hello("x", session_id=b""), "x", id="no-session-id"),
        pytest.param(client_hello(None, before=[SUPPORTED_GROUPS]), None, id="no-server-name"),
        pytest.param(client_hello(None, extensions=False), None, id="no-extensions"),
    ],
)
def test_server_name(hello: bytes, expected: str | None) -> None:
    assert client_hello_sni(hello) == expected


def test_unknown_name_type_is_passed_over() -> None:
    """RFC 6066 defines only host_name (0); an entry of another type is skipped, not misread."""
    entries = struct.pack("!BH", 7, 2) + b"\x01\x02" + struct.pack("!BH", 0, 8) + b"real.one"
    hello = client_hello(None, after=[extension(0, struct.pack("!H", len(entries)) + entries)])
    assert client_hello_sni(hello) == "real.one"


def test_every_cut_either_names_the_server_or_says_truncated() -> None:
    """A hello cut anywhere (a segment boundary) gives the name once its extension is in."""
    hello = client_hello("cdn.banned.example.test", before=[SUPPORTED_GROUPS, BIG_KEY_SHARE])
    name_end = hello.index(b"cdn.banned.example.test") + len("cdn.banned.example.test")
    for cut in range(len(hello) + 1):
        if cut >= name_end:
            assert client_hello_sni(hello[:cut]) == "cdn.banned.example.test", cut
        else:
            with pytest.raises(TlsTruncated):
                client_hello_sni(hello[:cut])


def test_name_before_the_cut_is_found_in_the_first_segment() -> None:
    hello = client_hello("doh.example.test", after=[BIG_KEY_SHARE])
    assert len(hello) > 1460
    assert client_hello_sni(hello[:200]) == "doh.example.test"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"\x17\x03\x03\x00\x05hello", "not handshake", id="application-data"),
        pytest.param(b"\x16\x02\x00\x00\x05\x01\x00\x00\x01\x00", "is not TLS", id="sslv2-ish"),
        pytest.param(b"\x16\x03\x01\x00\x00", "out of range", id="empty-record"),
        pytest.param(b"\x16\x03\x01\x48\x01" + bytes(10), "out of range", id="huge-record"),
        pytest.param(
            record(b"\x02\x00\x00\x26" + bytes(38)), "not a ClientHello", id="server-hello"
        ),
        pytest.param(record(b"\x01\x00\x00\x05" + bytes(5)), "too short", id="short-body"),
        pytest.param(
            record(b"\x01\x00\x00\x30\x03\x03" + bytes(32) + b"\xff" + bytes(13)),
            "runs past",
            id="session-id-past-body",
        ),
    ],
)
def test_junk_raises_tls_error(data: bytes, message: str) -> None:
    with pytest.raises(TlsError, match=message):
        client_hello_sni(data)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(b"", id="empty"),
        pytest.param("ü.example".encode(), id="not-ascii"),
        pytest.param(b"a" * 256, id="too-long"),
    ],
)
def test_bad_server_names_raise(name: bytes) -> None:
    hello = client_hello(None, after=[server_name_extension(name)])
    with pytest.raises(TlsError):
        client_hello_sni(hello)


def test_extension_longer_than_the_extensions_block_is_an_error_not_a_cut() -> None:
    """Lengths that contradict each other are junk, not a capture cut short."""
    bad = client_hello(None, after=[b"\x00\x00\x7f\xff\x00\x03ab"])
    with pytest.raises(TlsError) as caught:
        client_hello_sni(bad)
    assert not isinstance(caught.value, TlsTruncated)


def test_fuzzed_hellos_raise_only_tls_error() -> None:
    """Deleted, flipped and inserted bytes: a name, None or TlsError, nothing else."""
    rng = random.Random(6)
    seeds = [
        record(RFC8448_CLIENT_HELLO),
        client_hello("dns.google", before=[SUPPORTED_GROUPS, BIG_KEY_SHARE]),
        client_hello(None, extensions=False),
    ]
    for _ in range(5000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(3)
            at = rng.randrange(len(data))
            if op == 0:
                data[at] = rng.randrange(256)
            elif op == 1:
                del data[at]
            else:
                data.insert(at, rng.randrange(256))
        try:
            result = client_hello_sni(bytes(data))
        except TlsError:
            continue
        assert result is None or isinstance(result, str)


def test_cheap_test_rejects_other_payloads() -> None:
    assert not looks_like_client_hello(b"GET / HTTP/1.1\r\n")
    assert not looks_like_client_hello(b"\x16\x03\x01")
    assert not looks_like_client_hello(b"\x16\x03\x01\x00\x10\x02")
