"""What the suite sends and what it keeps of a reply: queries, exchanges, observations.

A Case is one query (a question and the way it is asked, or raw bytes); an Observation is
the reply reduced to what is compared: rcode, each header flag, the question as echoed,
the three sections as sets of records (order and letter case do not matter; rdata compare
as dnspython compares them), the TTL of every record, and the EDNS record. Exchanges are
plain blocking sockets with a timeout: the suite waits for a reply, never for a time.
"""

from __future__ import annotations

import itertools
import socket
import struct
from collections.abc import Callable
from typing import NamedTuple

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig

from tests.conformance.zones import Question

#: Seconds to wait for one reply: generous, since a lost reply is a difference in itself.
REPLY_TIMEOUT = 4.0

FLAGS: tuple[tuple[str, int], ...] = (
    ("aa", dns.flags.AA),
    ("tc", dns.flags.TC),
    ("rd", dns.flags.RD),
    ("ra", dns.flags.RA),
    ("z", 0x0040),
    ("ad", dns.flags.AD),
    ("cd", dns.flags.CD),
)


class Variant(NamedTuple):
    """How a question is asked."""

    transport: str  #: "udp" or "tcp"
    payload: int | None  #: EDNS payload size; None: no EDNS
    do: bool
    cd: bool

    def label(self) -> str:
        edns = "noedns" if self.payload is None else f"edns{self.payload}"
        bits = "".join(f"+{name}" for name, on in (("do", self.do), ("cd", self.cd)) if on)
        return f"{self.transport}/{edns}{bits}"


#: Every way a question is asked: UDP and TCP; no EDNS, and EDNS at 512, 1232 and 4096;
#: DO (EDNS only) and CD, each on and off.
VARIANTS: tuple[Variant, ...] = tuple(
    Variant(transport, payload, do, cd)
    for transport in ("udp", "tcp")
    for payload in (None, 512, 1232, 4096)
    for do in (False, True)
    for cd in (False, True)
    if payload is not None or not do
)


class Case(NamedTuple):
    """One query of the suite: a question asked one way, or a raw case's bytes."""

    name: str  #: question and variant, or the raw case's name
    transport: str
    build: Callable[[int], bytes]  #: message ID -> query wire
    question: Question | None  #: None for raw cases
    variant: Variant | None
    tags: frozenset[str] = frozenset()  #: what known-difference rules may select on


def question_case(question: Question, variant: Variant) -> Case:
    def build(msg_id: int) -> bytes:
        query = dns.message.make_query(
            question.qname,
            question.qtype,
            use_edns=0 if variant.payload is not None else False,
            payload=variant.payload or 0,
            want_dnssec=variant.do,
        )
        query.id = msg_id
        if variant.cd:
            query.flags |= dns.flags.CD
        return query.to_wire()

    name = f"{question.qname} {question.qtype} {variant.label()}"
    return Case(name, variant.transport, build, question, variant)


# ---------------------------------------------------------------------------------------
# Exchanges


def exchange(wire: bytes, transport: str, address: tuple[str, int]) -> bytes | None:
    """Send one query; the reply's bytes, or None when none came within REPLY_TIMEOUT."""
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(REPLY_TIMEOUT)
            sock.connect(address)
            sock.send(wire)
            try:
                while True:
                    data = sock.recv(65535)
                    if data[:2] == wire[:2]:
                        return data
            except TimeoutError:
                return None
    with socket.create_connection(address, timeout=REPLY_TIMEOUT) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        try:
            head = _read(sock, 2)
            if head is None:
                return None
            return _read(sock, struct.unpack("!H", head)[0])
        except TimeoutError:
            return None


def _read(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None  # closed without (the rest of) a reply
        data += chunk
    return data


_ids = itertools.count(0x1000)


def next_id() -> int:
    return next(_ids) & 0xFFFF


# ---------------------------------------------------------------------------------------
# Observations

#: A record as compared: owner, type, class and rdata (dnspython compares names in rdata
#: case-insensitively); its TTL is kept apart.
RecordKey = tuple[dns.name.Name, int, int, dns.rdata.Rdata]


class Observation(NamedTuple):
    """A reply reduced to what the suite compares; `error` says why there is none."""

    error: str  #: "" for a parsed reply; "no reply", or why it did not parse
    rcode: int
    opcode: int
    flags: frozenset[str]
    qdcount: int
    question: str  #: as echoed, letter case included; "" when QDCOUNT is 0
    sections: tuple[frozenset[RecordKey], frozenset[RecordKey], frozenset[RecordKey]]
    ttls: dict[tuple[int, RecordKey], int]  #: (section index, record) -> TTL
    edns: int  #: EDNS version, -1 without OPT
    payload: int
    edns_do: bool
    options: tuple[str, ...]  #: EDNS options, sorted: the code, "ede:N" for EDE code N
    tsig_error: int  #: -1 without a TSIG record
    size: int  #: bytes of the reply

    @property
    def ok(self) -> bool:
        return not self.error


SECTION_NAMES = ("answer", "authority", "additional")
_EMPTY: frozenset[RecordKey] = frozenset()


def failed(error: str, size: int = 0) -> Observation:
    return Observation(
        error, -1, -1, frozenset(), 0, "", (_EMPTY, _EMPTY, _EMPTY), {}, -1, 0, False, (), -1,
        size,
    )  # fmt: skip


def observe(wire: bytes | None) -> Observation:
    if wire is None:
        return failed("no reply")
    try:
        message = dns.message.from_wire(wire, keyring=False)
    except (dns.exception.DNSException, ValueError) as exc:
        return failed(f"unparsable: {type(exc).__name__}: {exc}", len(wire))
    qdcount = struct.unpack_from("!H", wire, 4)[0]
    sections = []
    ttls: dict[tuple[int, RecordKey], int] = {}
    for index, section in enumerate((message.answer, message.authority, message.additional)):
        records = set()
        for rrset in section:
            for rdata in rrset:
                key = (rrset.name, rrset.rdtype, rrset.rdclass, rdata)
                records.add(key)
                ttls[(index, key)] = rrset.ttl
        sections.append(frozenset(records))
    options = tuple(
        sorted(
            f"ede:{int(o.code)}" if isinstance(o, dns.edns.EDEOption) else str(int(o.otype))
            for o in message.options
        )
    )
    tsig_error = -1
    if message.tsig is not None:
        tsig_error = int(message.tsig[0].error)
    return Observation(
        "",
        int(message.rcode()),
        int(message.opcode()),
        frozenset(name for name, bit in FLAGS if message.flags & bit),
        qdcount,
        message.question[0].name.to_text() if message.question else "",
        (sections[0], sections[1], sections[2]),
        ttls,
        int(message.edns),
        int(message.payload) if message.edns >= 0 else 0,
        bool(message.ednsflags & dns.flags.DO),
        options,
        tsig_error,
        len(wire),
    )


def record_text(key: RecordKey, ttl: int | None = None) -> str:
    name, rdtype, rdclass, rdata = key
    text = rdata.to_text()
    if len(text) > 60:
        text = text[:57] + "..."
    shown = f" {ttl}" if ttl is not None else ""
    klass = dns.rdataclass.to_text(dns.rdataclass.RdataClass.make(rdclass))
    kind = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))
    return f"{name.to_text()}{shown} {klass} {kind} {text}"
