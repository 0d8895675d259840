"""Finishing a CNAME chain that an upstream left unfinished (RFC 1034 3.6.2, 5.3.3).

A recursive upstream follows a CNAME itself; an authoritative one (a department's own
server reached through `forward_zones`) answers only from its zone, so a CNAME that leaves
the zone arrives alone. A recursive resolver asks again for the target and gives the
client the whole chain, as unbound does when it forwards. This module decides whether an
answer needs that, builds the question for the target and joins the two answers.

Pure: bytes and their ResponseScan in, bytes out; the asking is the resolver's.
"""

from __future__ import annotations

import struct

from dnslib import DNSError, DNSRecord

from dnsfilter.datapath.scrub import Labels, RefusedAnswer, follow_chain
from dnsfilter.datapath.wire import (
    ResponseScan,
    encode_labels,
    opt_record,
    read_labels,
    scan_response,
)
from dnsfilter.errors import FormatError

#: Targets asked for one client query before the answer is given as it stands (unbound's
#: max-restart is 11 CNAME restarts; a chain past MAX_CHAIN_LINKS is refused anyway).
MAX_CHASES = 8

_CNAME = 5
_DNAME = 39
_SOA = 6
_ANY = 255
_NOERROR = 0
_RD = 0x0100
_CD = 0x0010
_AD = 0x0020
_HEADER = struct.Struct("!HHHHHH")


def unfinished_target(wire: bytes, scan: ResponseScan) -> Labels | None:
    """The name an answer's CNAME/DNAME chain ends at when the answer stops there: NOERROR,
    nothing of the question's type at the end of a chain of one link or more, and no SOA
    (which would make it the zone's NODATA for the target). None for every other answer,
    and for one whose chain cannot be followed (scrub refuses it later)."""
    if scan.rcode != _NOERROR:
        return None
    answers = [i for i, ref in enumerate(scan.records) if ref.section == 1]
    if not any(scan.records[i].rtype in (_CNAME, _DNAME) for i in answers):
        return None
    if any(ref.rtype == _SOA for ref in scan.records if ref.section == 2):
        return None
    qtype = int.from_bytes(wire[scan.question_end - 4 : scan.question_end - 2], "big")
    try:
        owners = [read_labels(wire, ref.start) for ref in scan.records]
        chain, _ = follow_chain(wire, scan.records, owners, answers, qtype)
    except (FormatError, RefusedAnswer):
        return None
    last = chain[-1]
    if len(chain) < 2 or any(scan.records[i].rtype == qtype and owners[i] == last for i in answers):
        return None
    return last


def target_query(query_wire: bytes, question_end: int, target: Labels, do: bool) -> bytes:
    """A query for target with the type, class, RD and CD of the client's query (ID 0: the
    upstream gives every query its own), with an OPT carrying DO."""
    flags = int.from_bytes(query_wire[2:4], "big") & (_RD | _CD)
    return (
        _HEADER.pack(0, flags | _RD, 1, 0, 0, 1)
        + encode_labels(target)
        + query_wire[question_end - 4 : question_end]
        + opt_record(do)
    )


def joined(first: bytes, then: bytes) -> tuple[bytes, ResponseScan]:
    """first (whose chain ends at the target) with the answer for the target: first's
    question and answer records, then the target's answer records; the target's rcode,
    authority (its negative proof) and AD bit, AD only if both had it. Additional records
    and OPT are first's (scrub decides what stays).

    Raises RefusedAnswer when either does not parse: no client gets half a chain."""
    try:
        head = DNSRecord.parse(first)
        tail = DNSRecord.parse(then)
        head.rr = head.rr + tail.rr
        head.auth = tail.auth
        head.header.rcode = tail.header.rcode
        head.header.ad = head.header.ad and tail.header.ad
        wire = bytes(head.pack())
        return wire, scan_response(wire)
    except (DNSError, FormatError, ValueError, IndexError, struct.error) as exc:
        raise RefusedAnswer(f"the chain's answers could not be joined: {exc}") from None
