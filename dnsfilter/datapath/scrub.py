"""What an upstream answer may tell a client: only records about the question's chain.

Modelled on unbound's iter_scrub.c, for a forwarder. The answer section keeps the
question's name and its CNAME/DNAME chain (followed from the question, so a loop or an
over-long chain is seen here and the answer refused); the authority section keeps the SOA,
NS and DS of a zone above the chain's last name and the DNSSEC records inside that zone;
the additional section keeps only records inside that zone. With minimal responses (the
default, as in unbound), authority keeps only what a negative answer needs and additional
is empty.

Pure: bytes and their ResponseScan in, the same or fewer out; no I/O.
"""

from __future__ import annotations

import struct

from dnslib import DNSError, DNSRecord

from dnsfilter.datapath.wire import (
    HEADER_LEN,
    RecordRef,
    ResponseScan,
    name_text,
    read_labels,
    scan_response,
)
from dnsfilter.errors import FormatError, UpstreamError

#: CNAME and DNAME links followed before the answer is refused (unbound stops at 11, BIND
#: at 16 restarts); a longer chain is a loop in all but name.
MAX_CHAIN_LINKS = 12

_CNAME = 5
_DNAME = 39
_SOA = 6
_NS = 2
_DS = 43
_RRSIG = 46
_NSEC = 47
_NSEC3 = 50
_ANY = 255
_OPT = 41
#: Records of a negative answer's proof: kept in authority even with minimal responses.
_PROOF_TYPES = frozenset((_SOA, _NSEC, _NSEC3, _RRSIG))
#: Records that belong at or below the zone cut rather than at the zone's apex.
_IN_ZONE_TYPES = frozenset((_NSEC, _NSEC3, _RRSIG))
_NXDOMAIN = 3
_QNAME_POINTER = b"\xc0\x0c"
_AA = 0x0400
#: Address records a referral's NS names need (glue).
_GLUE_TYPES = frozenset((1, 28))

Labels = tuple[bytes, ...]


class RefusedAnswer(UpstreamError):
    """An upstream answer no client may get: its CNAME/DNAME chain loops or is longer
    than MAX_CHAIN_LINKS, or a name in it does not decode."""


def scrub(wire: bytes, scan: ResponseScan, minimal: bool) -> tuple[bytes, ResponseScan]:
    """(wire, scan) with the records a client must not see left out; the very same pair
    when none are.

    Records left out at the end are simply not referred to by the new scan: what stays
    before them keeps its offsets, and compression pointers only point backwards. When a
    record left out comes before one that stays, the pointers after it would move, so the
    message is re-packed (dnslib: this is the rare path, an answer with foreign records),
    as is one with its OPT amid the records, OPT last.

    Raises RefusedAnswer for a looping or over-long chain, or a name that does not decode
    (scan_response checked only the bounds of names, not where their pointers lead).
    """
    records = scan.records
    opt = scan.opt
    repacked_already = False
    if opt is not None and records and opt.start < records[-1].end:
        # An OPT amid the records: the cache could not join those after it to those before
        # (their compression pointers would land 11 octets off). Compressed afresh, OPT last.
        wire, scan = repacked(wire)
        records = scan.records
        repacked_already = True  # then what is left out is packed out too, not cut off
    qtype = int.from_bytes(wire[scan.question_end - 4 : scan.question_end - 2], "big")
    # The common answer: records owned by the question (a pointer to it), no chain to
    # follow and nothing beside them. Nothing to leave out.
    for ref in records:
        if (
            ref.section != 1
            or wire[ref.start : ref.start + 2] != _QNAME_POINTER
            or ref.rtype in (_CNAME, _DNAME)
        ):
            break
    else:
        return wire, scan
    try:
        keep = _kept(wire, records, qtype, scan.rcode, minimal, bool(scan.flags & _AA))
    except FormatError as exc:
        raise RefusedAnswer(f"undecodable name in the answer: {exc}") from None
    if len(keep) == len(records):
        return wire, scan
    if (not keep or max(keep) < len(keep)) and not repacked_already:  # a prefix stays
        return wire, scan._replace(records=records[: len(keep)])
    return repacked(wire, keep)


def repacked(wire: bytes, keep: set[int] | None = None) -> tuple[bytes, ResponseScan]:
    """The message again with only the records numbered in keep (OPT not counted; None:
    all of them), compressed afresh, the OPT last: the records then sit back to back, as
    the cache needs them.

    Raises RefusedAnswer when the message cannot be read whole."""
    try:
        message = DNSRecord.parse(wire)
        index = 0
        sections = []
        opts = []
        for records in (message.rr, message.auth, message.ar):
            kept = []
            for rr in records:
                if rr.rtype == _OPT:
                    opts.append(rr)
                    continue
                if keep is None or index in keep:
                    kept.append(rr)
                index += 1
            sections.append(kept)
        sections[2].extend(opts)
        message.rr, message.auth, message.ar = sections
        repacked = bytes(message.pack())
        return repacked, scan_response(repacked)
    except (DNSError, FormatError, ValueError, IndexError, struct.error) as exc:
        raise RefusedAnswer(f"answer could not be scrubbed: {exc}") from None


def _kept(
    wire: bytes,
    records: tuple[RecordRef, ...],
    qtype: int,
    rcode: int,
    minimal: bool,
    authoritative: bool,
) -> set[int]:
    """The numbers of the records that stay."""
    owners = [read_labels(wire, ref.start) for ref in records]
    answers = [i for i, ref in enumerate(records) if ref.section == 1]
    chain, dname_owners = follow_chain(wire, records, owners, answers, qtype)
    names = set(chain)
    keep: set[int] = set()
    for i in answers:
        owner, rtype = owners[i], records[i].rtype
        if owner in names or (owner in dname_owners and rtype in (_DNAME, _RRSIG)):
            keep.add(i)

    last = chain[-1]
    # The zone that answered: the deepest SOA or NS owner at or above the chain's end.
    zone: Labels | None = None
    for i, ref in enumerate(records):
        owner = owners[i]
        if (
            ref.section == 2
            and ref.rtype in (_SOA, _NS)
            and _at_or_below(last, owner)
            and (zone is None or len(owner) > len(zone))
        ):
            zone = owner
    answered = any(records[i].rtype == qtype or qtype == _ANY for i in keep if owners[i] == last)
    negative = rcode == _NXDOMAIN or not answered
    # A referral (an authoritative upstream pointing below its zone): passed on as it came,
    # NS and glue, as unbound does; minimal, it would be an empty NODATA without an SOA.
    referral = False
    if not answered and not rcode and not authoritative and zone is not None:
        kinds = {ref.rtype for ref in records if ref.section == 2}
        referral = _NS in kinds and _SOA not in kinds
    for i, ref in enumerate(records):
        section, rtype, owner = ref.section, ref.rtype, owners[i]
        if section == 1 or zone is None:
            continue
        if section == 2:
            if rtype in _IN_ZONE_TYPES:
                in_bailiwick = _at_or_below(owner, zone)
            elif rtype in (_SOA, _NS, _DS):
                in_bailiwick = owner == zone or (rtype == _DS and _at_or_below(last, owner))
            else:
                in_bailiwick = False
            if in_bailiwick and (
                not minimal or (negative and rtype in _PROOF_TYPES) or (referral and rtype == _NS)
            ):
                keep.add(i)
        elif (not minimal or (referral and rtype in _GLUE_TYPES)) and _at_or_below(owner, zone):
            keep.add(i)
    return keep


def follow_chain(
    wire: bytes,
    records: tuple[RecordRef, ...],
    owners: list[Labels],
    answers: list[int],
    qtype: int,
) -> tuple[list[Labels], set[Labels]]:
    """The names from the question through every CNAME and DNAME link, and the owners of
    the DNAMEs used. A CNAME question's answer is the CNAME itself: no link is followed."""
    current = read_labels(wire, HEADER_LEN)
    chain = [current]
    dname_owners: set[Labels] = set()
    if qtype in (_CNAME, _ANY):
        return chain, dname_owners
    while True:
        target: Labels | None = None
        # A DNAME above the current name redirects it; the upstream usually adds the CNAME
        # it synthesizes, which is then followed as any CNAME is.
        synthesized: Labels | None = None
        for i in answers:
            ref, owner = records[i], owners[i]
            if ref.rtype == _DNAME and len(owner) < len(current) and _at_or_below(current, owner):
                dname_owners.add(owner)
                if synthesized is None:
                    substitute = read_labels(wire, ref.rdata_start)
                    synthesized = current[: len(current) - len(owner)] + substitute
        for i in answers:
            ref, owner = records[i], owners[i]
            if ref.rtype == _CNAME and owner == current:
                target = read_labels(wire, ref.rdata_start)
                break
        else:
            target = synthesized
            if target is not None and sum(len(label) + 1 for label in target) + 1 > 255:
                raise FormatError("DNAME substitution longer than 255 octets")
        if target is None:
            return chain, dname_owners
        if target in chain:
            raise RefusedAnswer(f"CNAME/DNAME loop at {_text(target)}")
        if len(chain) > MAX_CHAIN_LINKS:
            raise RefusedAnswer(f"CNAME/DNAME chain longer than {MAX_CHAIN_LINKS} links")
        chain.append(target)
        current = target


def _at_or_below(name: Labels, zone: Labels) -> bool:
    return len(name) >= len(zone) and name[len(name) - len(zone) :] == zone


def _text(labels: Labels) -> str:
    return name_text(labels) or "."


#: RFC 8482 4.2: HINFO with CPU "RFC8482" and an empty OS, owned by the question name; its
#: TTL is the smallest of the records it stands for, at most this.
ANY_HINFO_TTL = 3600
_HINFO = 13
_MINIMAL_ANY_START = b"\xc0\x0c" + struct.pack("!HH", _HINFO, 1)
_HINFO_RDATA = b"\x07RFC8482\x00"


def minimal_any(wire: bytes, scan: ResponseScan) -> tuple[bytes, ResponseScan]:
    """An ANY answer (scrubbed) made minimal: for a name that owns records other than a
    CNAME or DNAME, one synthetic HINFO in their stead; anything else as it is — the rcode
    is the upstream's and a CNAME is a CNAME (RFC 8482 4, RFC 8020)."""
    answers = [ref for ref in scan.records if ref.section == 1]
    if scan.rcode or not answers or any(ref.rtype in (_CNAME, _DNAME) for ref in answers):
        return wire, scan
    ttl = min(ANY_HINFO_TTL, *(ref.ttl for ref in answers))
    header = wire[:4] + struct.pack("!HHHH", 1, 1, 0, 0)
    record = _MINIMAL_ANY_START + struct.pack("!IH", ttl, len(_HINFO_RDATA)) + _HINFO_RDATA
    minimal = header + wire[HEADER_LEN : scan.question_end] + record
    return minimal, scan_response(minimal)


def is_minimal_any(body: bytes) -> bool:
    """Whether a cache entry's body is minimal_any's synthetic HINFO (for the reply kind)."""
    return body.startswith(_MINIMAL_ANY_START) and body.endswith(_HINFO_RDATA)
