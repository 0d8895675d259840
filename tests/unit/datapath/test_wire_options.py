"""EDNS options on replies: finding one in a query, appending edns-tcp-keepalive to a reply."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import pytest

from dnsfilter.datapath.wire import (
    OPT_TCP_KEEPALIVE,
    Rcode,
    Transport,
    add_option,
    build_reply,
    padded_query,
    parse_query,
    query_has_option,
    tcp_keepalive_option,
)

KEEPALIVE = dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE, b"")
COOKIE = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"\x01" * 8)


def _query(options: list[dns.edns.Option] | None, edns: bool = True) -> bytes:
    message = dns.message.make_query(
        "www.example.test", "A", use_edns=0 if edns else False, options=options
    )
    return message.to_wire()


@pytest.mark.parametrize(
    ("wire", "found"),
    [
        pytest.param(_query([KEEPALIVE]), True, id="alone"),
        pytest.param(_query([COOKIE, KEEPALIVE]), True, id="after-another"),
        pytest.param(_query([COOKIE]), False, id="another-only"),
        pytest.param(_query([]), False, id="edns-no-options"),
        pytest.param(_query(None, edns=False), False, id="no-edns"),
        pytest.param(_query([KEEPALIVE])[:-2], False, id="truncated"),
        pytest.param(b"\x00" * 5, False, id="shorter-than-header"),
        pytest.param(_query([KEEPALIVE])[:12] + b"\xc0", False, id="broken-question"),
        # QDCOUNT 0, though its bytes would read as the root's question and a keepalive OPT:
        # only a one-question query is looked into.
        pytest.param(
            struct.pack("!6H", 1, 0, 0, 0, 0, 1)
            + b"\x00\x00\x01\x00\x01"
            + _query([KEEPALIVE])[12 + len(b"\x03www\x07example\x04test\x00") + 4 :],
            False,
            id="no-question",
        ),
    ],
)
def test_query_has_option(wire: bytes, found: bool) -> None:
    assert query_has_option(wire, OPT_TCP_KEEPALIVE) is found


def test_keepalive_timeout_is_in_units_of_100_ms() -> None:
    assert tcp_keepalive_option(10) == struct.pack("!HHH", 11, 2, 100)
    assert tcp_keepalive_option(0.25) == struct.pack("!HHH", 11, 2, 2)
    assert tcp_keepalive_option(1e9) == struct.pack("!HHH", 11, 2, 0xFFFF)


def test_add_option_extends_the_reply_opt() -> None:
    q = parse_query(_query([KEEPALIVE]), ("127.0.0.1", 1), Transport.TCP)
    reply = build_reply(q, Rcode.NOERROR)
    extended = add_option(reply, tcp_keepalive_option(7.5))
    message = dns.message.from_wire(extended)
    options = {o.otype: o.to_wire() for o in message.options}
    assert options == {dns.edns.OptionType.KEEPALIVE: struct.pack("!H", 75)}
    assert message.id == q.id and len(extended) == len(reply) + 6


def test_add_option_leaves_a_reply_without_opt_alone() -> None:
    q = parse_query(_query(None, edns=False), ("127.0.0.1", 1), Transport.TCP)
    reply = build_reply(q, Rcode.NOERROR)
    assert add_option(reply, tcp_keepalive_option(1)) == reply
    assert add_option(b"\x00\x01", tcp_keepalive_option(1)) == b"\x00\x01"  # not a message


@pytest.mark.parametrize("qname", ["a.test", "www.example.com", "x" * 63 + ".example.org"])
@pytest.mark.parametrize("do", [False, True])
def test_padded_query_is_a_multiple_of_128_and_reads_the_same(qname: str, do: bool) -> None:
    """RFC 8467 4.1 block-length padding; the option is RFC 7830's, all zero octets."""
    wire = dns.message.make_query(qname, "AAAA", use_edns=0, want_dnssec=do, payload=1232)
    plain = wire.to_wire()
    padded = padded_query(plain)
    assert len(padded) % 128 == 0 and len(plain) < len(padded) <= len(plain) + 4 + 127
    message = dns.message.from_wire(padded)
    assert message.question == wire.question and message.flags == wire.flags
    assert bool(message.ednsflags & dns.flags.DO) == do
    (option,) = message.options
    assert option.otype == dns.edns.OptionType.PADDING
    assert option.to_wire() == bytes(len(padded) - len(plain) - 4)


@pytest.mark.parametrize(
    "wire",
    [
        dns.message.make_query("a.test", "A", use_edns=False).to_wire(),
        dns.message.make_query(
            "a.test", "A", use_edns=0, options=[dns.edns.NSIDOption(b"")]
        ).to_wire(),
    ],
    ids=["no-edns", "opt-with-an-option"],
)
def test_padded_query_leaves_other_messages_alone(wire: bytes) -> None:
    assert padded_query(wire) == wire
