"""dnsfilter.datapath.wire: the hand-written query parser, the reply builders and the response
scanner.

Inputs are literal wire bytes (tests/vectors) or messages put together field by field; replies
are decoded with dnspython (and dnslib where that reads better) so every assertion is on the
values a real DNS client would see.
"""

from __future__ import annotations

import random
import struct
from typing import Any, cast

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.tsigkeyring
import pytest
from dnslib import QTYPE, RR, SOA, A, DNSHeader, DNSQuestion, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfilter.datapath.wire import (
    CLASSIC_UDP_SIZE,
    DEFAULT_UDP_SIZE,
    MAX_TCP_SIZE,
    EdeCode,
    QType,
    Query,
    Rcode,
    RecordRef,
    ResponseScan,
    Transport,
    answer_record,
    badvers_reply,
    build_reply,
    ede_option,
    encode_name,
    error_reply,
    make_query,
    negative_soa,
    notauth_reply,
    opt_record,
    parse_query,
    read_name,
    reply_flags,
    same_question,
    scan_response,
    skip_name,
    soa_minimum,
    truncate_for,
)
from dnsfilter.errors import (
    BadVersion,
    DropPacket,
    FormatError,
    NotImplementedOpcode,
    Unverifiable,
    WireError,
)
from tests.vectors import (
    AA,
    CD,
    DO,
    QR,
    QUERY_A,
    QUERY_A_QUESTION_END,
    QUERY_AAAA_EDNS_DO,
    QUERY_EDNS_VERSION_1,
    QUERY_ROOT_NS,
    RA,
    RD,
    RESPONSE_CNAME_CHAIN,
    RESPONSE_CNAME_CHAIN_QUESTION_END,
    TC,
    WWW_EXAMPLE_COM,
    WWW_EXAMPLE_COM_MIXED,
    header,
    opt_rr,
    query,
    question,
    rr,
)

CLIENT = ("192.0.2.55", 53000)
AD = 0x0020

#: A name of exactly 255 octets on the wire (63+63+63+61 octet labels), and one of 256.
NAME_255 = b"".join(bytes((n,)) + b"a" * n for n in (63, 63, 63, 61)) + b"\x00"
NAME_256 = b"".join(bytes((n,)) + b"a" * n for n in (63, 63, 63, 62)) + b"\x00"


def parse(
    data: bytes, transport: Transport = Transport.UDP, udp_limit: int = DEFAULT_UDP_SIZE
) -> Query:
    return parse_query(data, CLIENT, transport, udp_limit)


def decode(wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(wire)


def counts(wire: bytes) -> tuple[int, int, int, int]:
    qd, an, ns, ar = struct.unpack_from("!HHHH", wire, 4)
    return qd, an, ns, ar


def test_vectors_decode_as_written() -> None:
    """The hand-written hex in tests/vectors says what its comments say."""
    q = decode(QUERY_A)
    assert (q.id, q.flags, q.edns) == (0x1234, dns.flags.RD, -1)
    assert q.question[0].name.to_text() == "www.Example.COM."
    e = decode(QUERY_AAAA_EDNS_DO)
    assert (e.id, e.edns, e.payload, e.ednsflags) == (0xBEEF, 0, 4096, dns.flags.DO)
    assert e.question[0].rdtype == dns.rdatatype.AAAA
    assert decode(QUERY_ROOT_NS).question[0].name.to_text() == "."
    r = decode(RESPONSE_CNAME_CHAIN)
    assert [rrset.to_text() for rrset in r.answer] == [
        "www.example.com. 300 IN CNAME cdn.example.com.",
        "cdn.example.com. 60 IN A 192.0.2.1",
    ]


# ---------------------------------------------------------------------------------------
# parse_query: valid queries


@pytest.mark.parametrize(
    ("data", "transport", "expected"),
    [
        pytest.param(
            QUERY_A,
            Transport.UDP,
            (0x1234, RD, "www.example.com", 1, 1, QUERY_A_QUESTION_END, False, False, 512),
            id="a-mixed-case-lowercased-no-edns-512",
        ),
        pytest.param(
            QUERY_A,
            Transport.TCP,
            (0x1234, RD, "www.example.com", 1, 1, QUERY_A_QUESTION_END, False, False, 65535),
            id="a-over-tcp-65535",
        ),
        pytest.param(
            QUERY_AAAA_EDNS_DO,
            Transport.UDP,
            (0xBEEF, RD | CD, "example.org", 28, 1, 29, True, True, 1232),
            id="aaaa-edns-do-cd-payload-4096-capped-1232",
        ),
        pytest.param(
            QUERY_AAAA_EDNS_DO,
            Transport.TCP,
            (0xBEEF, RD | CD, "example.org", 28, 1, 29, True, True, 65535),
            id="aaaa-edns-over-tcp-ignores-payload",
        ),
        pytest.param(
            QUERY_ROOT_NS,
            Transport.UDP,
            (1, 0, "", 2, 1, 17, False, False, 512),
            id="root-ns-empty-qname",
        ),
        pytest.param(
            query(WWW_EXAMPLE_COM_MIXED, 65, msg_id=7, flags=0),
            Transport.UDP,
            (7, 0, "www.example.com", 65, 1, 33, False, False, 512),
            id="https-rd-clear",
        ),
        pytest.param(
            header(flags=RD) + question(b"\x07version\x04BIND\x00", 16, 3),
            Transport.UDP,
            (0x1234, RD, "version.bind", 16, 3, 12 + 14 + 4, False, False, 512),
            id="chaos-class-kept",
        ),
        pytest.param(
            query(NAME_255),
            Transport.UDP,
            (0x1234, RD, ".".join("a" * n for n in (63, 63, 63, 61)), 1, 1, 271, False, False, 512),
            id="name-of-255-octets",
        ),
        pytest.param(
            query(b"\x04A-B_\x01Z\x00", opt=opt_rr(payload=1000)),
            Transport.UDP,
            (0x1234, RD, "a-b_.z", 1, 1, 12 + 8 + 4, True, False, 1000),
            id="edns-without-do",
        ),
        pytest.param(
            header(ancount=1, arcount=2)
            + question()
            + rr(b"\xc0\x0c", 1, 60, bytes(4))
            + rr(b"\x00", 1, 0, bytes(4))
            + opt_rr(payload=1400, flags=DO, options=ede_option(EdeCode.BLOCKED, "x")),
            Transport.UDP,
            (0x1234, RD, "www.example.com", 1, 1, 33, True, True, 1232),
            id="opt-after-other-records-with-options",
        ),
        pytest.param(
            header(arcount=1) + question() + rr(b"\x00", 1, 60, bytes(4)),
            Transport.UDP,
            (0x1234, RD, "www.example.com", 1, 1, 33, False, False, 512),
            id="additional-without-opt-is-not-edns",
        ),
    ],
)
def test_parse_query_fields(
    data: bytes,
    transport: Transport,
    expected: tuple[int, int, str, int, int, int, bool, bool, int],
) -> None:
    q = parse(data, transport)
    got = (q.id, q.flags, q.qname, q.qtype, q.qclass, q.question_end, q.edns, q.do, q.max_size)
    assert got == expected
    assert q.wire is data
    assert q.question == data[12 : expected[5]]
    assert q.client == CLIENT
    assert q.transport is transport
    assert q.cd is bool(expected[1] & CD)


@pytest.mark.parametrize(
    ("payload", "udp_limit", "max_size"),
    [
        pytest.param(0, 1232, 512, id="payload-0-raised-to-512"),
        pytest.param(100, 1232, 512, id="payload-100-raised-to-512"),
        pytest.param(511, 1232, 512, id="payload-511-raised-to-512"),
        pytest.param(512, 1232, 512, id="payload-512"),
        pytest.param(513, 1232, 513, id="payload-513"),
        pytest.param(1231, 1232, 1231, id="payload-1231"),
        pytest.param(1232, 1232, 1232, id="payload-1232-at-limit"),
        pytest.param(1233, 1232, 1232, id="payload-1233-capped"),
        pytest.param(65535, 1232, 1232, id="payload-65535-capped"),
        pytest.param(4096, 4096, 4096, id="payload-4096-limit-4096"),
        pytest.param(4096, 1400, 1400, id="payload-4096-limit-1400"),
        pytest.param(1000, 4096, 1000, id="payload-1000-under-limit-4096"),
    ],
)
def test_parse_query_edns_payload_clamped(payload: int, udp_limit: int, max_size: int) -> None:
    q = parse(query(opt=opt_rr(payload=payload)), Transport.UDP, udp_limit)
    assert (q.edns, q.max_size) == (True, max_size)


@pytest.mark.parametrize(
    ("opt_flags", "do"),
    [
        pytest.param(0, False, id="no-do"),
        pytest.param(DO, True, id="do"),
        pytest.param(0x7FFF, False, id="all-z-bits-but-not-do"),
        pytest.param(0xFFFF, True, id="do-and-z-bits"),
    ],
)
def test_parse_query_do_bit(opt_flags: int, do: bool) -> None:
    assert parse(query(opt=opt_rr(flags=opt_flags))).do is do


# ---------------------------------------------------------------------------------------
# parse_query: malformed queries


def _cut(data: bytes, n: int) -> bytes:
    return data[: len(data) - n]


_OPT_OK = opt_rr(payload=1232)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        pytest.param(b"", DropPacket, "shorter than a DNS header", id="empty"),
        pytest.param(QUERY_A[:11], DropPacket, "shorter than a DNS header", id="11-octets"),
        pytest.param(b"\x12\x34\x01", DropPacket, "shorter than a DNS header", id="3-octets"),
        pytest.param(
            header(flags=QR | RD) + question(), DropPacket, "a response, not a query", id="qr-set"
        ),
        pytest.param(
            header(flags=QR, qdcount=0),
            DropPacket,
            "a response, not a query",
            id="qr-set-header-only",
        ),
        pytest.param(
            header(flags=QR | 0x2800, qdcount=0),
            DropPacket,
            "a response, not a query",
            id="qr-beats-opcode",
        ),
        pytest.param(
            header(flags=0x0800) + question(),
            NotImplementedOpcode,
            "opcode 1",
            id="opcode-1-iquery",
        ),
        pytest.param(
            header(flags=0x1000) + question(),
            NotImplementedOpcode,
            "opcode 2",
            id="opcode-2-status",
        ),
        pytest.param(
            header(flags=0x2000) + question(),
            NotImplementedOpcode,
            "opcode 4",
            id="opcode-4-notify",
        ),
        pytest.param(
            header(flags=0x2800) + question(),
            NotImplementedOpcode,
            "opcode 5",
            id="opcode-5-update",
        ),
        pytest.param(
            header(flags=0x7800) + question(), NotImplementedOpcode, "opcode 15", id="opcode-15"
        ),
        pytest.param(
            header(flags=0x2800, qdcount=0),
            NotImplementedOpcode,
            "opcode 5",
            id="opcode-beats-qdcount",
        ),
        pytest.param(header(qdcount=0), FormatError, "QDCOUNT is 0, not 1", id="qdcount-0"),
        pytest.param(
            header(qdcount=0, arcount=1) + _OPT_OK,
            FormatError,
            "QDCOUNT is 0, not 1",
            id="qdcount-0-with-opt",
        ),
        pytest.param(
            header(qdcount=2) + question() + question(),
            FormatError,
            "QDCOUNT is 2, not 1",
            id="qdcount-2",
        ),
        pytest.param(
            header(qdcount=0xFFFF) + question(),
            FormatError,
            "QDCOUNT is 65535, not 1",
            id="qdcount-65535",
        ),
        pytest.param(
            header(), FormatError, "question runs past the end", id="header-only-qdcount-1"
        ),
        pytest.param(
            header() + b"\x03ww", FormatError, "question runs past the end", id="label-truncated"
        ),
        pytest.param(
            header() + b"\x03www",
            FormatError,
            "question runs past the end",
            id="name-without-terminator",
        ),
        pytest.param(
            header() + b"\x03www\x07example",
            FormatError,
            "question runs past the end",
            id="second-label-no-end",
        ),
        pytest.param(
            header() + WWW_EXAMPLE_COM, FormatError, "question runs past the end", id="type-missing"
        ),
        pytest.param(
            header() + WWW_EXAMPLE_COM + b"\x00\x01",
            FormatError,
            "question runs past the end",
            id="class-missing",
        ),
        pytest.param(
            header() + WWW_EXAMPLE_COM + b"\x00\x01\x00",
            FormatError,
            "question runs past the end",
            id="class-short",
        ),
        pytest.param(
            header() + b"\xc0\x0c\x00\x01\x00\x01",
            FormatError,
            "compressed or extended label in the question",
            id="pointer-as-qname",
        ),
        pytest.param(
            header() + b"\x03www\xc0\x0c\x00\x01\x00\x01",
            FormatError,
            "compressed or extended label in the question",
            id="pointer-after-label",
        ),
        pytest.param(
            header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
            FormatError,
            "compressed or extended label in the question",
            id="label-64",
        ),
        pytest.param(
            header() + b"\x80abc\x00\x00\x01\x00\x01",
            FormatError,
            "compressed or extended label in the question",
            id="label-type-10",
        ),
        pytest.param(
            header() + b"\x41" + b"a" * 65 + b"\x00\x00\x01\x00\x01",
            FormatError,
            "compressed or extended label in the question",
            id="label-65-ascii-A-length",
        ),
        pytest.param(
            query(NAME_256),
            FormatError,
            "question name longer than 255 octets",
            id="name-256-octets",
        ),
        pytest.param(
            query(b"\x01a" * 200 + b"\x00"),
            FormatError,
            "question name longer than 255 octets",
            id="name-401-octets-of-short-labels",
        ),
        pytest.param(
            query(opt=opt_rr(owner=WWW_EXAMPLE_COM)),
            FormatError,
            "OPT record owner is not the root",
            id="opt-owner-not-root",
        ),
        pytest.param(
            query(opt=opt_rr(owner=b"\xc0\x0c")),
            FormatError,
            "OPT record owner is not the root",
            id="opt-owner-pointer",
        ),
        pytest.param(
            header(arcount=2) + question() + _OPT_OK + _OPT_OK,
            FormatError,
            "more than one OPT record",
            id="two-opts",
        ),
        pytest.param(
            header(arcount=2) + question() + _OPT_OK + opt_rr(version=1),
            FormatError,
            "more than one OPT record",
            id="two-opts-second-version-1",
        ),
        pytest.param(
            header(ancount=1) + question() + _OPT_OK,
            FormatError,
            "OPT record outside the additional section",
            id="opt-in-answer",
        ),
        pytest.param(
            header(nscount=1) + question() + _OPT_OK,
            FormatError,
            "OPT record outside the additional section",
            id="opt-in-authority",
        ),
        pytest.param(
            _cut(query(opt=_OPT_OK), 1),
            FormatError,
            "record header runs past the end",
            id="opt-cut-by-1",
        ),
        pytest.param(
            _cut(query(opt=_OPT_OK), 10),
            FormatError,
            "record header runs past the end",
            id="opt-owner-only",
        ),
        pytest.param(
            _cut(query(opt=_OPT_OK), 11),
            FormatError,
            "name runs past the end",
            id="arcount-1-no-record",
        ),
        pytest.param(
            query(opt=opt_rr(options=b"\x00\x0f\x00\x02\x00\x0f"))[:-2],
            FormatError,
            "record data runs past the end",
            id="opt-rdata-truncated",
        ),
        pytest.param(
            header(arcount=2) + question() + _OPT_OK,
            FormatError,
            "name runs past the end",
            id="arcount-2-one-record",
        ),
        pytest.param(
            header(ancount=1) + question() + b"\x03www",
            FormatError,
            "name runs past the end",
            id="answer-owner-truncated",
        ),
        pytest.param(
            header(ancount=1) + question() + b"\x7fabc",
            FormatError,
            "unknown label type",
            id="answer-owner-label-127",
        ),
        pytest.param(QUERY_EDNS_VERSION_1, BadVersion, "EDNS version 1", id="edns-version-1"),
        pytest.param(
            query(opt=opt_rr(version=255, flags=DO)),
            BadVersion,
            "EDNS version 255",
            id="edns-version-255",
        ),
    ],
)
def test_parse_query_rejects(data: bytes, error: type[WireError], message: str) -> None:
    with pytest.raises(WireError) as info:
        parse(data)
    assert type(info.value) is error
    assert str(info.value) == message


def test_parse_query_badversion_on_tcp_too() -> None:
    with pytest.raises(BadVersion):
        parse(QUERY_EDNS_VERSION_1, Transport.TCP)


_FUZZ_SEEDS = (
    QUERY_A,
    QUERY_AAAA_EDNS_DO,
    QUERY_ROOT_NS,
    QUERY_EDNS_VERSION_1,
    header(ancount=1, arcount=2)
    + question(WWW_EXAMPLE_COM_MIXED, 65)
    + rr(b"\xc0\x0c", 1, 60, bytes(4))
    + rr(b"\x00", 16, 0, b"\x02hi")
    + opt_rr(payload=4096, flags=DO, options=ede_option(EdeCode.BLOCKED, "list")),
)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and buf:
            del buf[rng.randrange(len(buf))]
        elif op == 1 and buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif op == 2:
            buf.insert(rng.randrange(len(buf) + 1), rng.randrange(256))
        else:
            del buf[rng.randrange(len(buf) + 1) :]
    return bytes(buf)


def _check_parsed(q: Query, data: bytes, transport: Transport) -> None:
    assert 12 < q.question_end <= len(data)
    raw_name = q.qname.encode("latin-1")
    assert raw_name == raw_name.lower()
    assert not q.qname.endswith(".")
    if transport is Transport.UDP:
        assert CLASSIC_UDP_SIZE <= q.max_size <= DEFAULT_UDP_SIZE
    else:
        assert q.max_size == MAX_TCP_SIZE


def test_parse_query_fuzz_raises_only_wire_errors() -> None:
    """dnslib fuzz.py style: delete, flip, insert and cut bytes of valid queries."""
    rng = random.Random(1234)
    outcomes: dict[str, int] = {}
    for _ in range(20_000):
        data = _mutate(rng, rng.choice(_FUZZ_SEEDS))
        transport = Transport.UDP if rng.random() < 0.8 else Transport.TCP
        try:
            q = parse_query(data, CLIENT, transport)
        except WireError as exc:
            name = type(exc).__name__
        else:
            _check_parsed(q, data, transport)
            name = "parsed"
        outcomes[name] = outcomes.get(name, 0) + 1
    # The loop reached every outcome, so it exercised more than the header checks.
    assert set(outcomes) == {
        "parsed",
        "DropPacket",
        "FormatError",
        "NotImplementedOpcode",
        "BadVersion",
    }


@settings(max_examples=1000, database=None, deadline=None)
@given(st.binary(max_size=600))
def test_parse_query_arbitrary_bytes_raise_only_wire_errors(data: bytes) -> None:
    try:
        q = parse_query(data, CLIENT, Transport.UDP)
    except WireError:
        return
    _check_parsed(q, data, Transport.UDP)


@settings(max_examples=1000, database=None, deadline=None)
@given(
    st.integers(0, 0xFFFF),
    st.sampled_from([0, RD, RD | CD, AD]),
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
    st.binary(max_size=400),
)
def test_parse_query_valid_header_then_arbitrary_bytes(
    msg_id: int, flags: int, rr_counts: tuple[int, int, int], tail: bytes
) -> None:
    data = header(msg_id, flags, 1, *rr_counts) + tail
    try:
        q = parse_query(data, CLIENT, Transport.UDP)
    except WireError as exc:
        assert isinstance(exc, FormatError | BadVersion)
        return
    _check_parsed(q, data, Transport.UDP)
    assert (q.id, q.flags) == (msg_id, flags)


# ---------------------------------------------------------------------------------------
# Reply builders


@pytest.mark.parametrize(
    ("query_flags", "rcode", "expected"),
    [
        pytest.param(0, 0, QR | RA, id="nothing-to-echo"),
        pytest.param(RD, 0, QR | RA | RD, id="rd-echoed"),
        pytest.param(RD | CD, 3, QR | RA | RD | CD | 3, id="rd-cd-echoed-nxdomain"),
        pytest.param(RD | AD | AA | TC | 0x0040, 5, QR | RA | RD | 5, id="ad-aa-tc-z-dropped"),
        pytest.param(RD | 0x000F, 0, QR | RA | RD, id="query-rcode-bits-dropped"),
        pytest.param(RD, 16, QR | RA | RD, id="badvers-low-bits-zero"),
        pytest.param(0, 23, QR | RA | 7, id="extended-rcode-low-bits"),
    ],
)
def test_reply_flags(query_flags: int, rcode: int, expected: int) -> None:
    assert reply_flags(query_flags, rcode) == expected


@pytest.mark.parametrize(
    ("do", "ext_rcode", "options", "expected"),
    [
        pytest.param(False, 0, b"", "00 0029 04d0 00 00 0000 0000", id="plain"),
        pytest.param(True, 0, b"", "00 0029 04d0 00 00 8000 0000", id="do"),
        pytest.param(False, 1, b"", "00 0029 04d0 01 00 0000 0000", id="badvers-high-bits"),
        pytest.param(
            True,
            0,
            b"\x00\x0f\x00\x02\x00\x0f",
            "00 0029 04d0 00 00 8000 0006 000f0002000f",
            id="with-option",
        ),
    ],
)
def test_opt_record_bytes(do: bool, ext_rcode: int, options: bytes, expected: str) -> None:
    assert opt_record(do, ext_rcode, options) == bytes.fromhex(expected)


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        pytest.param(EdeCode.BLOCKED, "", "000f 0002 000f", id="blocked-no-text"),
        pytest.param(EdeCode.BLOCKED, "ads", "000f 0005 000f 616473", id="blocked-ads"),
        pytest.param(EdeCode.PROHIBITED, "", "000f 0002 0012", id="prohibited"),
        pytest.param(EdeCode.NETWORK_ERROR, "up", "000f 0004 0017 7570", id="network-error"),
        pytest.param(
            EdeCode.BLOCKED, "wéchat", "000f 0009 000f 77c3a9636861 74", id="utf8-length-in-octets"
        ),
    ],
)
def test_ede_option_bytes(code: EdeCode, text: str, expected: str) -> None:
    assert ede_option(code, text) == bytes.fromhex(expected)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        pytest.param(EdeCode.BLOCKED, "tiktok", id="blocked"),
        pytest.param(EdeCode.PROHIBITED, "", id="prohibited-no-text"),
        pytest.param(EdeCode.NETWORK_ERROR, "Ünïcödé list", id="network-error-unicode"),
    ],
)
def test_ede_option_decoded_by_dnspython(code: EdeCode, text: str) -> None:
    q = parse(QUERY_AAAA_EDNS_DO)
    msg = decode(build_reply(q, Rcode.REFUSED, ede=ede_option(code, text)))
    assert len(msg.options) == 1
    option = msg.options[0]
    assert isinstance(option, dns.edns.EDEOption)
    assert int(option.code) == code
    assert option.text == (text or None)


def test_build_reply_without_edns_echoes_question_bytes() -> None:
    q = parse(QUERY_A)
    answer = answer_record(QType.A, 60, bytes((192, 0, 2, 7)))
    wire = build_reply(q, Rcode.NOERROR, answer=answer, ancount=1, ede=ede_option(EdeCode.BLOCKED))
    assert wire[:12] == bytes.fromhex("1234 8180 0001 0001 0000 0000")
    assert wire[12:QUERY_A_QUESTION_END] == QUERY_A[12:QUERY_A_QUESTION_END]
    assert wire[QUERY_A_QUESTION_END:] == answer
    msg = decode(wire)
    assert msg.id == 0x1234
    assert msg.flags == dns.flags.QR | dns.flags.RD | dns.flags.RA
    assert msg.rcode() == dns.rcode.NOERROR
    assert msg.edns == -1  # no OPT (and so no EDE) without EDNS in the query
    assert msg.question[0].name.to_text() == "www.Example.COM."
    assert [rrset.to_text() for rrset in msg.answer] == ["www.Example.COM. 60 IN A 192.0.2.7"]


@pytest.mark.parametrize(
    ("data", "rcode", "ede", "flags", "ednsflags", "options"),
    [
        pytest.param(
            QUERY_AAAA_EDNS_DO,
            Rcode.NOERROR,
            b"",
            dns.flags.QR | dns.flags.RD | dns.flags.RA | dns.flags.CD,
            dns.flags.DO,
            [],
            id="do-and-cd-echoed-no-ede",
        ),
        pytest.param(
            QUERY_AAAA_EDNS_DO,
            Rcode.NXDOMAIN,
            ede_option(EdeCode.BLOCKED, "ads"),
            dns.flags.QR | dns.flags.RD | dns.flags.RA | dns.flags.CD,
            dns.flags.DO,
            [dns.edns.EDEOption(dns.edns.EDECode.BLOCKED, "ads")],
            id="nxdomain-with-ede",
        ),
        pytest.param(
            query(flags=0, opt=opt_rr(payload=4096)),
            Rcode.REFUSED,
            ede_option(EdeCode.PROHIBITED),
            dns.flags.QR | dns.flags.RA,
            0,
            [dns.edns.EDEOption(dns.edns.EDECode.PROHIBITED)],
            id="rd-clear-do-clear",
        ),
        pytest.param(
            query(flags=RD, opt=opt_rr(payload=512, flags=DO)),
            Rcode.SERVFAIL,
            ede_option(EdeCode.NETWORK_ERROR),
            dns.flags.QR | dns.flags.RD | dns.flags.RA,
            dns.flags.DO,
            [dns.edns.EDEOption(dns.edns.EDECode.NETWORK_ERROR)],
            id="servfail-network-error",
        ),
    ],
)
def test_build_reply_with_edns(
    data: bytes,
    rcode: Rcode,
    ede: bytes,
    flags: int,
    ednsflags: int,
    options: list[dns.edns.Option],
) -> None:
    q = parse(data)
    wire = build_reply(q, rcode, ede=ede)
    assert wire[12 : q.question_end] == data[12 : q.question_end]
    assert counts(wire) == (1, 0, 0, 1)
    msg = decode(wire)
    assert msg.id == q.id
    assert msg.flags & ~0xF == flags  # dnspython keeps the rcode bits in flags
    assert int(msg.rcode()) == rcode
    assert (msg.edns, msg.payload, msg.ednsflags) == (0, DEFAULT_UDP_SIZE, ednsflags)
    assert list(msg.options) == options


def test_build_reply_extended_rcode_goes_to_opt() -> None:
    wire = build_reply(parse(QUERY_AAAA_EDNS_DO), Rcode.BADVERS)
    assert wire[3] & 0xF == 0
    assert wire[-11:] == bytes.fromhex("00 0029 04d0 01 00 8000 0000")
    assert decode(wire).rcode() == dns.rcode.BADVERS


def test_build_reply_with_authority_counts_and_soa() -> None:
    q = parse(QUERY_A)
    wire = build_reply(q, Rcode.NXDOMAIN, authority=negative_soa(300), nscount=1)
    assert counts(wire) == (1, 0, 1, 0)
    msg = decode(wire)
    assert msg.rcode() == dns.rcode.NXDOMAIN
    (rrset,) = msg.authority
    assert (rrset.name.to_text(), rrset.rdtype, rrset.ttl) == (
        "www.Example.COM.",
        dns.rdatatype.SOA,
        300,
    )
    soa = cast(dns.rdtypes.ANY.SOA.SOA, rrset[0])
    assert soa.mname.to_text() == "dnsfilter.invalid."
    assert soa.rname.to_text() == "hostmaster.dnsfilter.invalid."
    assert (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum) == (
        1,
        3600,
        600,
        86400,
        300,
    )


def test_answer_record_bytes() -> None:
    assert answer_record(QType.AAAA, 0x01020304, b"\xaa" * 2) == bytes.fromhex(
        "c00c 001c 0001 01020304 0002 aaaa"
    )


_Q = question().hex()
_OPT_OURS = "00 0029 04d0 00 00 0000 0000"


@pytest.mark.parametrize(
    ("data", "rcode", "expected"),
    [
        pytest.param(
            QUERY_A,
            Rcode.FORMERR,
            "1234 8101 0001 0000 0000 0000" + QUERY_A[12:].hex(),
            id="formerr-rd-question-echoed-ra-clear",
        ),
        pytest.param(
            header(0xABCD, 0, 2), Rcode.FORMERR, "abcd 8001 0000 0000 0000 0000", id="formerr-no-rd"
        ),
        pytest.param(
            header(0x0102, RD | CD | AD | TC | AA, 1),
            Rcode.FORMERR,
            "0102 8111 0000 0000 0000 0000",
            id="formerr-rd-cd-echoed-ad-tc-aa-not",
        ),
        pytest.param(
            header(0x0002, RD, 2) + question() + question(qtype=28),
            Rcode.FORMERR,
            "0002 8101 0002 0000 0000 0000" + _Q + question(qtype=28).hex(),
            id="formerr-qdcount-2-both-echoed",
        ),
        pytest.param(
            header(0x0003, RD, 2) + question() + b"\xc0\x0c\x00\x01\x00\x01",
            Rcode.FORMERR,
            "0003 8101 0000 0000 0000 0000",
            id="formerr-compressed-second-question-header-only",
        ),
        pytest.param(
            header(0x0004, RD, 5) + question() * 5,
            Rcode.FORMERR,
            "0004 8101 0000 0000 0000 0000",
            id="formerr-qdcount-5-past-the-cap-header-only",
        ),
        pytest.param(
            header(0x0005, RD, 1) + b"\x03www\x07example",
            Rcode.FORMERR,
            "0005 8101 0000 0000 0000 0000",
            id="formerr-question-runs-past-the-end",
        ),
        pytest.param(
            header(0x5555, 0x2000 | RD) + question(),
            Rcode.NOTIMP,
            "5555 a104 0001 0000 0000 0000" + _Q,
            id="notimp-notify-opcode-copied-no-ra-question-echoed",
        ),
        pytest.param(
            header(0x5556, 0x1800 | RD, 1, 0, 0, 1) + question() + opt_rr(flags=DO),
            Rcode.NOTIMP,
            "5556 9904 0001 0000 0000 0001" + _Q + "00 0029 04d0 00 00 8000 0000",
            id="notimp-opt-echoed-with-do",
        ),
        pytest.param(
            header(0x5557, 0x1800, 1, 0, 0, 2) + question() + opt_rr() + opt_rr(),
            Rcode.NOTIMP,
            "5557 9804 0001 0000 0000 0000" + _Q,
            id="notimp-two-opts-none-echoed",
        ),
        pytest.param(
            header(0x5558, 0x1800, 1, 0, 0, 1) + question() + opt_rr(payload=512, version=3),
            Rcode.NOTIMP,
            "5558 9804 0001 0000 0000 0001" + _Q + _OPT_OURS,
            id="notimp-ours-is-version-0",
        ),
        pytest.param(
            header(0x0001, 0x2800, 1, 1, 1, 1),
            Rcode.NOTIMP,
            "0001 a804 0000 0000 0000 0000",
            id="notimp-update-counts-zeroed",
        ),
    ],
)
def test_error_reply(data: bytes, rcode: Rcode, expected: str) -> None:
    wire = error_reply(data, rcode)
    assert wire == bytes.fromhex(expected)
    parsed = dns.message.from_wire(wire, question_only=True)
    assert parsed.id == struct.unpack_from("!H", data)[0]
    assert parsed.rcode() == int(rcode)
    assert parsed.opcode() == (struct.unpack_from("!H", data, 2)[0] >> 11) & 0xF
    assert parsed.flags & dns.flags.QR


def test_badvers_reply() -> None:
    wire = badvers_reply(QUERY_EDNS_VERSION_1)
    assert wire == bytes.fromhex(
        "1234 8180 0000 0000 0000 0001"  # header rcode 0: BADVERS is 16
        "00 0029 04d0 01 00 0000 0000"  # OPT TTL high octet 1, version 0
    )
    msg = decode(wire)
    assert msg.rcode() == dns.rcode.BADVERS
    assert (msg.id, msg.edns) == (0x1234, 0)


def test_badvers_reply_without_rd_echoes_cd_and_the_question() -> None:
    data = header(0x4321, CD, 1, 0, 0, 1) + question() + opt_rr(version=2, flags=DO)
    with pytest.raises(BadVersion) as raised:
        parse_query(data, CLIENT, Transport.UDP)
    wire = badvers_reply(data, raised.value.question_end)
    assert wire[:6] == bytes.fromhex("4321 8090 0001")
    message = decode(wire)
    assert message.rcode() == dns.rcode.BADVERS
    assert message.question == decode(data).question


def _padded_reply(q: Query, size: int, rcode: Rcode = Rcode.NOERROR) -> bytes:
    """A reply to q of exactly size octets: one TXT record padded to fit."""
    base = len(build_reply(q, rcode, answer=answer_record(QType.TXT, 60, b""), ancount=1))
    pad = size - base
    assert pad >= 2
    strings = b""
    while pad > 0:
        chunk = min(pad - 1, 255)
        strings += bytes((chunk,)) + b"t" * chunk
        pad -= chunk + 1
    wire = build_reply(q, rcode, answer=answer_record(QType.TXT, 60, strings), ancount=1)
    assert len(wire) == size
    return wire


@pytest.mark.parametrize(
    ("data", "transport", "size"),
    [
        pytest.param(QUERY_A, Transport.UDP, 512, id="udp-512-exactly"),
        pytest.param(QUERY_A, Transport.UDP, 100, id="udp-small"),
        pytest.param(QUERY_AAAA_EDNS_DO, Transport.UDP, 1232, id="edns-1232-exactly"),
        pytest.param(QUERY_AAAA_EDNS_DO, Transport.TCP, 60000, id="tcp-60000"),
    ],
)
def test_truncate_for_passes_small_replies(data: bytes, transport: Transport, size: int) -> None:
    q = parse(data, transport)
    wire = _padded_reply(q, size)
    assert truncate_for(q, wire) is wire


@pytest.mark.parametrize(
    ("data", "size", "rcode", "expected_header"),
    [
        pytest.param(QUERY_A, 513, Rcode.NOERROR, "1234 8380 0001 0000 0000 0000", id="udp-513"),
        pytest.param(
            QUERY_A, 3000, Rcode.NXDOMAIN, "1234 8383 0001 0000 0000 0000", id="udp-rcode-kept"
        ),
        pytest.param(
            QUERY_AAAA_EDNS_DO,
            1233,
            Rcode.NOERROR,
            "beef 8390 0001 0000 0000 0001",
            id="edns-1233-keeps-opt",
        ),
        pytest.param(
            query(opt=opt_rr(payload=600)),
            601,
            Rcode.NOERROR,
            "1234 8380 0001 0000 0000 0001",
            id="edns-payload-600",
        ),
    ],
)
def test_truncate_for_cuts_big_replies(
    data: bytes, size: int, rcode: Rcode, expected_header: str
) -> None:
    q = parse(data)
    wire = truncate_for(q, _padded_reply(q, size, rcode))
    assert wire[:12] == bytes.fromhex(expected_header)
    assert wire[12 : q.question_end] == data[12 : q.question_end]
    tail = wire[q.question_end :]
    assert tail == (opt_record(q.do) if q.edns else b"")
    assert len(wire) <= q.max_size
    msg = dns.message.from_wire(wire, raise_on_truncation=False)
    assert msg.flags & dns.flags.TC
    assert int(msg.rcode()) == rcode
    assert msg.answer == []
    assert msg.ednsflags == (dns.flags.DO if q.do else 0)


# ---------------------------------------------------------------------------------------
# make_query, encode_name, same_question


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("", b"\x00", id="empty-is-root"),
        pytest.param(".", b"\x00", id="dot-is-root"),
        pytest.param("com", b"\x03com\x00", id="one-label"),
        pytest.param("www.Example.com", b"\x03www\x07Example\x03com\x00", id="case-kept"),
        pytest.param("www.example.com.", WWW_EXAMPLE_COM, id="trailing-dot"),
        pytest.param("a" * 63 + ".b", b"\x3f" + b"a" * 63 + b"\x01b\x00", id="label-63"),
    ],
)
def test_encode_name(name: str, expected: bytes) -> None:
    assert encode_name(name) == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("a..b", "bad label in 'a..b'", id="empty-label"),
        pytest.param(".a", "bad label in '.a'", id="leading-dot"),
        pytest.param("a" * 64 + ".com", f"bad label in '{'a' * 64}.com'", id="label-64"),
        pytest.param(
            "bücher.example", "non-ASCII label in 'bücher.example'; use its IDNA form", id="idna"
        ),
        pytest.param(
            ".".join(["a" * 63] * 4),
            f"name longer than 255 octets: {'a' * 40!r}...",
            id="256-octets",
        ),
    ],
)
def test_encode_name_rejects(name: str, message: str) -> None:
    with pytest.raises(WireError) as info:
        encode_name(name)
    assert str(info.value) == message


def _pointer_chain(jumps: int) -> tuple[bytes, int]:
    """A message whose name at the returned offset reaches "a" after this many pointers."""
    data = bytearray(header() + b"\x01a\x00")
    target = 12
    for _ in range(jumps):
        pos = len(data)
        data += struct.pack("!H", 0xC000 | target)
        target = pos
    return bytes(data), target


def test_read_name_follows_64_pointers_and_no_more() -> None:
    data, pos = _pointer_chain(64)
    assert read_name(data, pos) == "a"
    data, pos = _pointer_chain(65)
    with pytest.raises(FormatError, match=r"^compression pointer loop$"):
        read_name(data, pos)


@pytest.mark.parametrize(
    ("qname", "qtype", "msg_id", "rd", "expected"),
    [
        pytest.param(
            "www.example.com",
            QType.A,
            0x1234,
            True,
            "1234 0100 0001 0000 0000 0000 03777777076578616d706c6503636f6d00 0001 0001",
            id="a-rd",
        ),
        pytest.param(
            "", QType.NS, 0, False, "0000 0000 0001 0000 0000 0000 00 0002 0001", id="root"
        ),
    ],
)
def test_make_query_bytes(qname: str, qtype: int, msg_id: int, rd: bool, expected: str) -> None:
    wire = make_query(qname, qtype, msg_id, rd)
    assert wire == bytes.fromhex(expected)
    q = parse(wire)
    assert (q.id, q.qname, q.qtype, q.edns, bool(q.flags & RD)) == (msg_id, qname, qtype, False, rd)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param(question(), question(), True, id="identical"),
        pytest.param(question(WWW_EXAMPLE_COM_MIXED), question(), True, id="case-insensitive"),
        pytest.param(question(), question(qtype=28), False, id="other-type"),
        pytest.param(question(), question(qclass=3), False, id="other-class"),
        pytest.param(
            question(), question(b"\x03www\x07example\x03org\x00"), False, id="other-name"
        ),
        pytest.param(question(), question(b"\x03ww\x07example\x03com\x00"), False, id="length"),
        pytest.param(
            question(b"\x03abc\x00"), question(b"\x03ABD\x00"), False, id="one-letter-differs"
        ),
    ],
)
def test_same_question(a: bytes, b: bytes, same: bool) -> None:
    assert same_question(a, b) is same
    assert same_question(b, a) is same


# ---------------------------------------------------------------------------------------
# scan_response


def test_scan_response_compressed_cname_chain() -> None:
    data = RESPONSE_CNAME_CHAIN
    scan = scan_response(data)
    assert scan == ResponseScan(
        id=0x1234,
        flags=QR | RD | RA,
        rcode=0,
        question_end=RESPONSE_CNAME_CHAIN_QUESTION_END,
        records=(
            RecordRef(1, QType.CNAME, 33, 39, 300, 45, 51),
            RecordRef(1, QType.A, 51, 57, 60, 63, 67),
        ),
        opt=RecordRef(3, QType.OPT, 67, 72, DO, 78, 78),
    )
    for ref in scan.records:
        assert struct.unpack_from("!I", data, ref.ttl_offset)[0] == ref.ttl
    cname, a = scan.records
    assert read_name(data, cname.start) == "www.example.com"
    assert read_name(data, cname.rdata_start) == "cdn.example.com"
    assert read_name(data, a.start) == "cdn.example.com"
    assert data[a.rdata_start : a.end] == bytes((192, 0, 2, 1))


def _dnslib_response() -> bytes:
    """A dnslib-packed response with records in all three sections, with distinct TTLs."""
    record = DNSRecord(
        DNSHeader(id=0x0BAD, qr=1, aa=1, rd=1, ra=1),
        q=DNSQuestion("Mail.Example.NET", QTYPE.MX),
    )
    record.add_answer(*RR.fromZone("mail.example.net. 111 IN MX 10 mx1.example.net."))
    record.add_answer(*RR.fromZone("mail.example.net. 222 IN MX 20 mx2.example.net."))
    record.add_auth(*RR.fromZone("example.net. 333 IN NS ns1.example.net."))
    record.add_ar(RR("mx1.example.net", QTYPE.A, ttl=444, rdata=A("192.0.2.25")))
    record.add_ar(*RR.fromZone("mx2.example.net. 555 IN AAAA 2001:db8::25"))
    return bytes(record.pack())


def test_scan_response_sections_and_ttl_offsets() -> None:
    data = _dnslib_response()
    scan = scan_response(data)
    assert (scan.id, scan.rcode, scan.opt) == (0x0BAD, 0, None)
    assert scan.flags == QR | AA | RD | RA
    got = [(r.section, r.rtype, r.ttl) for r in scan.records]
    assert got == [
        (1, QType.MX, 111),
        (1, QType.MX, 222),
        (2, QType.NS, 333),
        (3, QType.A, 444),
        (3, QType.AAAA, 555),
    ]
    msg = decode(data)
    decoded_ttls = [
        rrset.ttl
        for section in (msg.answer, msg.authority, msg.additional)
        for rrset in section
        for _ in rrset
    ]
    # dnspython merges the two MX records into one rrset with the smaller TTL.
    assert decoded_ttls == [111, 111, 333, 444, 555]
    for ref in scan.records:
        assert struct.unpack_from("!I", data, ref.ttl_offset)[0] == ref.ttl
        assert ref.start < ref.ttl_offset < ref.rdata_start <= ref.end
        assert struct.unpack_from("!H", data, ref.rdata_start - 2)[0] == ref.end - ref.rdata_start
    assert [read_name(data, r.start) for r in scan.records] == [
        "mail.example.net",
        "mail.example.net",
        "example.net",
        "mx1.example.net",
        "mx2.example.net",
    ]
    assert scan.records[-1].end == len(data)
    assert scan.question_end == 12 + len(b"\x04mail\x07example\x03net\x00") + 4


@pytest.mark.parametrize(
    ("header_rcode", "opt", "rcode"),
    [
        pytest.param(3, b"", 3, id="nxdomain-no-opt"),
        pytest.param(3, opt_rr(), 3, id="nxdomain-opt-ext-0"),
        pytest.param(0, opt_rr(ext_rcode=1), 16, id="badvers"),
        pytest.param(7, opt_rr(ext_rcode=1), 23, id="badcookie"),
        pytest.param(0xF, opt_rr(ext_rcode=0xFF), 4095, id="largest"),
    ],
)
def test_scan_response_extended_rcode(header_rcode: int, opt: bytes, rcode: int) -> None:
    data = header(flags=QR | RD | RA | header_rcode, arcount=1 if opt else 0) + question() + opt
    scan = scan_response(data)
    assert scan.rcode == rcode
    assert scan.records == ()
    if opt:
        assert scan.opt is not None
        assert (scan.opt.start, scan.opt.end) == (33, 44)
    else:
        assert scan.opt is None


_ANSWER_A = rr(b"\xc0\x0c", 1, 60, bytes(4))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "shorter than a DNS header", id="empty"),
        pytest.param(header(flags=QR)[:11], "shorter than a DNS header", id="11-octets"),
        pytest.param(QUERY_A, "not a response", id="not-qr"),
        pytest.param(header(flags=QR, qdcount=0), "QDCOUNT is 0, not 1", id="qdcount-0"),
        pytest.param(
            header(flags=QR, qdcount=2) + question() * 2, "QDCOUNT is 2, not 1", id="qdcount-2"
        ),
        pytest.param(
            header(flags=QR) + WWW_EXAMPLE_COM,
            "question runs past the end",
            id="question-type-missing",
        ),
        pytest.param(
            header(flags=QR) + b"\x03www", "name runs past the end", id="question-name-cut"
        ),
        pytest.param(
            header(flags=QR) + b"\xc0",
            "compression pointer runs past the end",
            id="question-pointer-cut",
        ),
        pytest.param(
            header(flags=QR, ancount=1) + question() + _ANSWER_A[:-1],
            "record data runs past the end",
            id="rdata-truncated",
        ),
        pytest.param(
            header(flags=QR, ancount=1) + question() + rr(b"\xc0\x0c", 1, 60, bytes(4))[:-4],
            "record data runs past the end",
            id="rdata-missing",
        ),
        pytest.param(
            header(flags=QR, ancount=1) + question() + _ANSWER_A[:11],
            "record header runs past the end",
            id="record-header-cut",
        ),
        pytest.param(
            header(flags=QR, ancount=1) + question() + b"\xc0\x21" + _ANSWER_A[2:],
            "compression pointer not backwards into the records",
            id="owner-pointer-to-itself",
        ),
        pytest.param(
            header(flags=QR, ancount=1) + question() + b"\xc1\x00" + _ANSWER_A[2:],
            "compression pointer not backwards into the records",
            id="owner-pointer-forward",
        ),
        pytest.param(
            header(flags=QR, ancount=1) + question() + b"\xc0",
            "compression pointer runs past the end",
            id="owner-pointer-cut",
        ),
        pytest.param(
            header(flags=QR, ancount=1) + question() + b"\x07example",
            "name runs past the end",
            id="owner-runs-past-end",
        ),
        pytest.param(
            header(flags=QR, ancount=1) + question() + b"\x40" + _ANSWER_A,
            "unknown label type",
            id="owner-label-type",
        ),
        pytest.param(
            header(flags=QR, ancount=2) + question() + _ANSWER_A,
            "name runs past the end",
            id="ancount-beyond-records",
        ),
        pytest.param(
            header(flags=QR, nscount=1, arcount=1) + question() + _ANSWER_A,
            "name runs past the end",
            id="arcount-beyond-records",
        ),
        pytest.param(
            header(flags=QR, ancount=1) + question() + opt_rr(),
            "misplaced or repeated OPT record",
            id="opt-in-answer",
        ),
        pytest.param(
            header(flags=QR, nscount=1) + question() + opt_rr(),
            "misplaced or repeated OPT record",
            id="opt-in-authority",
        ),
        pytest.param(
            header(flags=QR, arcount=2) + question() + opt_rr() + opt_rr(),
            "misplaced or repeated OPT record",
            id="two-opts",
        ),
    ],
)
def test_scan_response_rejects(data: bytes, message: str) -> None:
    with pytest.raises(FormatError) as info:
        scan_response(data)
    assert str(info.value) == message


@settings(max_examples=1000, database=None, deadline=None)
@given(st.binary(max_size=400))
def test_scan_response_arbitrary_tail_raises_only_format_error(tail: bytes) -> None:
    data = header(flags=QR | RA, ancount=2, nscount=1, arcount=1) + tail
    try:
        scan = scan_response(data)
    except FormatError:
        return
    for ref in scan.records:
        assert ref.end <= len(data)
        assert struct.unpack_from("!I", data, ref.ttl_offset)[0] == ref.ttl


# ---------------------------------------------------------------------------------------
# read_name, skip_name, soa_minimum


#: example.com at 12, then "WWW" + pointer to 12 at 25, then a pointer to 25 at 31.
_NAMES = header() + b"\x07Example\x03COM\x00" + b"\x03WWW\xc0\x0c" + b"\xc0\x19"


@pytest.mark.parametrize(
    ("data", "pos", "name"),
    [
        pytest.param(_NAMES, 12, "example.com", id="plain-lowercased"),
        pytest.param(_NAMES, 25, "www.example.com", id="label-then-pointer"),
        pytest.param(_NAMES, 31, "www.example.com", id="pointer-to-pointer"),
        pytest.param(_NAMES, 20, "com", id="suffix"),
        pytest.param(_NAMES, 24, "", id="root"),
        pytest.param(
            header() + NAME_255, 12, ".".join("a" * n for n in (63, 63, 63, 61)), id="255-octets"
        ),
        pytest.param(b"\x01\xc4\x01Z\x00", 0, "\\196.z", id="only-ascii-folded-high-escaped"),
    ],
)
def test_read_name(data: bytes, pos: int, name: str) -> None:
    assert read_name(data, pos) == name


@pytest.mark.parametrize(
    ("data", "pos", "message"),
    [
        pytest.param(
            header() + b"\xc0\x0c", 12, "compression pointer loop", id="pointer-to-itself"
        ),
        pytest.param(
            header() + b"\xc0\x0e\xc0\x0c", 12, "compression pointer loop", id="two-pointers-loop"
        ),
        pytest.param(
            header() + b"\x01a\xc0\x0c", 12, "compression pointer loop", id="label-then-loop"
        ),
        pytest.param(header() + b"\x03www", 12, "name runs past the end", id="no-terminator"),
        pytest.param(header() + b"\x07www", 12, "name runs past the end", id="label-runs-past-end"),
        pytest.param(
            header() + b"\xc0", 12, "compression pointer runs past the end", id="pointer-cut"
        ),
        pytest.param(header() + b"\xc0\xff", 12, "name runs past the end", id="pointer-past-end"),
        pytest.param(header() + b"\x40abc\x00", 12, "unknown label type", id="label-type-01"),
        pytest.param(header() + b"\x80abc\x00", 12, "unknown label type", id="label-type-10"),
        pytest.param(header(), 12, "name runs past the end", id="pos-at-end"),
        pytest.param(header() + NAME_256, 12, "name longer than 255 octets", id="256-octets"),
        pytest.param(
            header() + b"\x3f" + b"a" * 63 + b"\xc0\x0c",
            12,
            "name longer than 255 octets",
            id="endless-through-pointers",
        ),
        pytest.param(
            # 254 octets of labels, then a pointer to "b": 256 octets in all.
            header() + NAME_255[:-1] + b"\xc1\x0c" + b"\x01b\x00",
            12,
            "name longer than 255 octets",
            id="too-long-across-pointer",
        ),
    ],
)
def test_read_name_rejects(data: bytes, pos: int, message: str) -> None:
    with pytest.raises(FormatError) as info:
        read_name(data, pos)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("data", "pos", "end"),
    [
        pytest.param(_NAMES, 12, 25, id="plain"),
        pytest.param(_NAMES, 25, 31, id="label-then-pointer"),
        pytest.param(_NAMES, 31, 33, id="pointer"),
        pytest.param(_NAMES, 24, 25, id="root"),
    ],
)
def test_skip_name(data: bytes, pos: int, end: int) -> None:
    assert skip_name(data, pos) == end


@pytest.mark.parametrize(
    ("data", "pos", "message"),
    [
        pytest.param(b"\x03ab", 0, "name runs past the end", id="label-past-end"),
        pytest.param(b"\xc0", 0, "compression pointer runs past the end", id="pointer-cut"),
        pytest.param(b"\x41abc", 0, "unknown label type", id="label-type"),
        pytest.param(b"", 0, "name runs past the end", id="empty"),
    ],
)
def test_skip_name_rejects(data: bytes, pos: int, message: str) -> None:
    with pytest.raises(FormatError) as info:
        skip_name(data, pos)
    assert str(info.value) == message


def _nxdomain_with_soa(minimum: int, soa_ttl: int) -> bytes:
    record = DNSRecord(
        DNSHeader(id=9, qr=1, rd=1, ra=1, rcode=3), q=DNSQuestion("gone.example.com", QTYPE.A)
    )
    record.add_auth(
        RR(
            "example.com",
            QTYPE.SOA,
            ttl=soa_ttl,
            rdata=SOA("ns1.example.com", "admin.example.com", (2024, 7200, 900, 1209600, minimum)),
        )
    )
    return bytes(record.pack())


@pytest.mark.parametrize(
    ("minimum", "soa_ttl"),
    [
        pytest.param(300, 3600, id="minimum-300"),
        pytest.param(0, 60, id="minimum-0"),
        pytest.param(0xFFFFFFFF, 60, id="minimum-max"),
    ],
)
def test_soa_minimum(minimum: int, soa_ttl: int) -> None:
    data = _nxdomain_with_soa(minimum, soa_ttl)
    scan = scan_response(data)
    (soa,) = scan.records
    assert (soa.section, soa.rtype, soa.ttl, scan.rcode) == (2, QType.SOA, soa_ttl, 3)
    assert soa_minimum(data, soa) == minimum


def test_soa_minimum_rejects_short_rdata() -> None:
    data = (
        header(flags=QR, nscount=1) + question() + rr(b"\xc0\x0c", 6, 60, b"\x00\x00" + bytes(19))
    )
    (soa,) = scan_response(data).records
    with pytest.raises(FormatError):
        soa_minimum(data, soa)


# ---------------------------------------------------------------------------------------
# Names are wire-form: a label may hold any byte, and the qname text is one-to-one with it


def _question(*labels: bytes) -> bytes:
    name = b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
    return header() + name + b"\x00\x01\x00\x01"


@pytest.mark.parametrize(
    ("labels", "qname"),
    [
        pytest.param((b"www", b"Victim", b"test"), "www.victim.test", id="plain-lowercased"),
        pytest.param((b"www.victim", b"test"), r"www\.victim.test", id="dot-in-label"),
        pytest.param((b"WWW.Victim.TEST",), r"www\.victim\.test", id="one-label-folded"),
        pytest.param((b"a\\b", b"test"), r"a\\b.test", id="backslash"),
        pytest.param((b"a\x00b", b"test"), r"a\000b.test", id="nul"),
        pytest.param((b"a\nb c",), r"a\010b\032c", id="newline-and-space"),
        pytest.param((b"\xc4\xff",), r"\196\255", id="high-bytes-not-folded"),
        pytest.param((b'q"();@$',), r"q\"\(\)\;\@\$", id="master-file-specials"),
        pytest.param((), "", id="root"),
    ],
)
def test_qname_is_the_escaped_presentation_form(labels: tuple[bytes, ...], qname: str) -> None:
    q = parse_query(_question(*labels), CLIENT, Transport.UDP)
    assert q.qname == qname
    assert q.qname.isprintable()
    # dnspython's presentation form of the same wire name agrees, case aside.
    if labels:
        assert dns.name.Name((*labels, b"")).to_text(omit_final_dot=True).lower() == qname


@given(st.lists(st.binary(min_size=1, max_size=12), min_size=1, max_size=4))
@settings(max_examples=400, deadline=None)
def test_qnames_of_different_wire_names_differ(labels: list[bytes]) -> None:
    """Two questions share a qname exactly when their wire names are equal, ASCII case aside."""
    q = parse_query(_question(*labels), CLIENT, Transport.UDP)
    joined = parse_query(_question(b".".join(labels)), CLIENT, Transport.UDP)
    assert (q.qname == joined.qname) == (len(labels) == 1)
    assert read_name(_question(*labels), 12) == q.qname
    upper = parse_query(_question(*(label.upper() for label in labels)), CLIENT, Transport.UDP)
    assert upper.qname == q.qname


# ---------------------------------------------------------------------------------------
# Signed queries: NOTAUTH, never an answer as if the signature had been checked


def _signed(algorithm: str = "hmac-sha256") -> bytes:
    query = dns.message.make_query("www.example.test", "A", use_edns=0)
    query.id = 0x2468
    keyring = dns.tsigkeyring.from_text({"k.example.": "c2VjcmV0"})
    query.use_tsig(keyring, keyname="k.example.", algorithm=f"{algorithm}.")
    return query.to_wire()


def test_a_tsig_signed_query_is_unverifiable() -> None:
    data = _signed()
    with pytest.raises(Unverifiable) as raised:
        parse_query(data, CLIENT, Transport.UDP)
    assert raised.value.tsig_start is not None
    wire = notauth_reply(data, raised.value.question_end, raised.value.tsig_start)
    reply: Any = DNSRecord.parse(wire)
    assert (reply.header.id, reply.header.rcode, reply.header.qr) == (0x2468, 9, 1)
    assert str(reply.q.qname) == "www.example.test."
    (tsig,) = reply.ar
    assert (str(tsig.rname), tsig.rtype, tsig.rclass, tsig.ttl) == ("k.example.", 250, 255, 0)
    rdata = bytes(tsig.rdata.data)
    algorithm = b"\x0bhmac-sha256\x00"
    assert rdata.startswith(algorithm)
    fixed = rdata[len(algorithm) :]
    # time signed (6) and fudge (2) copied, MAC size 0, original ID, error BADKEY, no other data
    assert fixed[8:] == b"\x00\x00" + (0x2468).to_bytes(2, "big") + b"\x00\x11\x00\x00"


def test_a_tsig_record_that_is_not_the_last_is_formerr() -> None:
    data = bytearray(_signed())
    # Move the TSIG before an extra record: bump ARCOUNT and append a dummy A record.
    data[11] += 1
    data += b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x01\x02\x03\x04"
    with pytest.raises(FormatError, match=r"^TSIG record is not the last one$"):
        parse_query(bytes(data), CLIENT, Transport.UDP)


def test_a_sig0_signed_query_is_unverifiable_without_a_tsig_to_echo() -> None:
    sig0 = b"\x00" + struct.pack("!HHIH", 24, 255, 0, 19) + bytes(19)
    data = header(0x1357, RD, 1, 0, 0, 1) + question() + sig0
    with pytest.raises(Unverifiable) as raised:
        parse_query(data, CLIENT, Transport.UDP)
    assert raised.value.tsig_start is None
    wire = notauth_reply(data, raised.value.question_end, None)
    assert wire[:12] == bytes.fromhex("1357 8189 0001 0000 0000 0000")


@pytest.mark.parametrize(("labels", "echoed"), [(4, True), (5, False)])
def test_error_reply_echoes_questions_up_to_the_255_octet_name_limit(
    labels: int, echoed: bool
) -> None:
    """A second question's name of 4 x 60-octet labels (245 octets) is echoed with the
    first; at 5 labels (306 octets) it is no name, and the reply is the header alone."""
    long_name = b"".join(b"\x3c" + b"a" * 60 for _ in range(labels)) + b"\x00"
    questions = question() + long_name + b"\x00\x01\x00\x01"
    wire = error_reply(header(0x0102, 0x0100, 2, 0, 0, 0) + questions, Rcode.FORMERR)
    assert struct.unpack_from("!H", wire, 4)[0] == (2 if echoed else 0)
    assert wire[12:] == (questions if echoed else b"")
