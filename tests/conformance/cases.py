"""Every query of the suite: each question in every variant, and the raw cases.

Raw cases are queries dnspython would not send on its own, or sends only with help: RD
clear, TSIG-signed, unknown opcodes, EDNS version 1, QDCOUNT 0 and 2, two OPT records,
EDNS options (unknown, cookie, padding, NSID), the AD bit in a query, CHAOS class, class
ANY, a zone transfer (AXFR) asked of a resolver. Their
tags name them for the known-difference table.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.tsig

from tests.conformance.observe import VARIANTS, Case, question_case
from tests.conformance.zones import QUESTIONS

#: The name every raw case asks about, unless it says otherwise.
RAW_NAME = "www.conf.test."
#: A key neither resolver has (RFC 8945): the suite signs one query with it.
TSIG_KEY = dns.tsig.Key("conformance-key.", b"0123456789abcdef0123456789abcdef", "hmac-sha256")


def _make(
    qname: str = RAW_NAME,
    qtype: str = "A",
    *,
    edns: int | bool = False,
    options: list[dns.edns.Option] | None = None,
    rdclass: str = "IN",
) -> dns.message.QueryMessage:
    return dns.message.make_query(
        qname, qtype, rdclass=rdclass, use_edns=edns, payload=1232, options=options
    )


def _builder(
    make: Callable[[], dns.message.Message], patch: Callable[[bytes], bytes] | None = None
) -> Callable[[int], bytes]:
    def build(msg_id: int) -> bytes:
        message = make()
        message.id = msg_id
        wire = message.to_wire()
        return patch(wire) if patch is not None else wire

    return build


def _flags(clear: int = 0, set_: int = 0) -> Callable[[bytes], bytes]:
    def patch(wire: bytes) -> bytes:
        (flags,) = struct.unpack_from("!H", wire, 2)
        return wire[:2] + struct.pack("!H", (flags & ~clear) | set_) + wire[4:]

    return patch


def _opcode(code: int) -> Callable[[bytes], bytes]:
    return _flags(clear=0x7800, set_=code << 11)


def _qdcount0(wire: bytes) -> bytes:
    return wire[:4] + b"\x00\x00\x00\x00\x00\x00\x00\x00"


def _qdcount2(wire: bytes) -> bytes:
    question = wire[12:]
    return wire[:4] + b"\x00\x02\x00\x00\x00\x00\x00\x00" + question + question


def _two_opts(wire: bytes) -> bytes:
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    (arcount,) = struct.unpack_from("!H", wire, 10)
    return wire[:10] + struct.pack("!H", arcount + 1) + wire[12:] + opt


def _option(code: int, data: bytes) -> dns.edns.Option:
    return dns.edns.GenericOption(dns.edns.OptionType.make(code), data)


def _signed() -> dns.message.Message:
    message = _make(edns=0)
    message.use_tsig(TSIG_KEY)
    return message


def _raw(
    name: str, build: Callable[[int], bytes], tags: str, transports: str = "udp tcp"
) -> list[Case]:
    return [
        Case(f"raw:{name} {transport}", transport, build, None, None, frozenset(tags.split()))
        for transport in transports.split()
    ]


RAW_CASES: tuple[Case, ...] = tuple(
    [
        *_raw("rd0", _builder(_make, _flags(clear=dns.flags.RD)), "rd0"),
        *_raw("rd0-edns", _builder(lambda: _make(edns=0), _flags(clear=dns.flags.RD)), "rd0"),
        *_raw("ad-flag", _builder(_make, _flags(set_=dns.flags.AD)), "ad-flag"),
        *_raw("tsig", _builder(_signed), "tsig"),
        *_raw("opcode-status", _builder(_make, _opcode(2)), "opcode"),
        *_raw("opcode-3", _builder(_make, _opcode(3)), "opcode"),
        *_raw("opcode-3-edns", _builder(lambda: _make(edns=0), _opcode(3)), "opcode"),
        *_raw("edns-version-1", _builder(lambda: _make(edns=1)), "badvers"),
        *_raw("qdcount-0", _builder(_make, _qdcount0), "qdcount"),
        *_raw("qdcount-2", _builder(_make, _qdcount2), "qdcount"),
        *_raw("two-opt", _builder(lambda: _make(edns=0), _two_opts), "two-opt"),
        *_raw(
            "unknown-option",
            _builder(lambda: _make(edns=0, options=[_option(65001, b"x")])),
            "option",
        ),
        *_raw(
            "cookie",
            _builder(lambda: _make(edns=0, options=[dns.edns.CookieOption(b"clientck", b"")])),
            "option cookie",
        ),
        *_raw(
            "padding",
            _builder(lambda: _make(edns=0, options=[_option(12, bytes(16))])),
            "option",
        ),
        *_raw(
            "nsid",
            _builder(lambda: _make(edns=0, options=[dns.edns.NSIDOption(b"")])),
            "option",
        ),
        *_raw("axfr", _builder(lambda: _make("conf.test.", "AXFR")), "axfr"),
        *_raw("class-any", _builder(lambda: _make(rdclass="ANY")), "class-any"),
        *_raw(
            "chaos-version",
            _builder(lambda: _make("version.bind.", "TXT", rdclass="CH")),
            "chaos",
        ),
        *_raw(
            "chaos-id",
            _builder(lambda: _make("id.server.", "TXT", rdclass="CH")),
            "chaos",
        ),
    ]
)

QUESTION_CASES: tuple[Case, ...] = tuple(
    question_case(question, variant) for question in QUESTIONS for variant in VARIANTS
)


def groups() -> list[list[Case]]:
    """The cases in groups that run one after the other (each question's variants in a
    fixed order); the groups themselves run side by side."""
    by_question: dict[tuple[bytes, str], list[Case]] = {}
    for case in QUESTION_CASES:
        assert case.question is not None
        # Names whose labels join to the same dotted text (www\.victim and www.victim) go
        # in one group, so that if a cache ever keys them alike again (issue 16), which is
        # asked first, and so what the suite sees, does not depend on the threads.
        labels = dns.name.from_text(case.question.qname).labels
        key = (b".".join(labels).lower(), case.question.qtype)
        by_question.setdefault(key, []).append(case)
    return [*by_question.values(), *([case] for case in RAW_CASES)]
