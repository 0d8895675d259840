"""The fuzz targets: one function per parser that takes bytes from outside, with its invariants.

A target takes the fuzzer's bytes and returns None. It lets an exception escape only when an
invariant is broken: an undocumented exception from the code under test, or an
AssertionError from a check here. The documented errors are caught where the code under test
documents them (WireError subclasses for the wire, ListError for the lists, ConfigError for
the config). Hangs and memory are bounded by the runner (libFuzzer's -timeout and
-rss_limit_mb under atheris), not here.

query     a client's datagram: parse_query, then what the resolver answers at once (policy,
          blocked replies in every mode, REFUSED, ANY, cache hits); every reply is checked to
          be a well-formed response to that question, and dnspython must read it back when
          it could read the query.
response  an upstream's reply: scan_response and the upstream's reply check, then what the
          resolver does with it (scrub, policy.inspect, make_entry, make_passthrough, serving
          the entry fresh, aged and stale, truncation). What is served must scan, keep every
          record, and say what the upstream said (dnspython compares the records); what
          scrub keeps of the answer section must be exactly the question's CNAME chain.
hosts, plain, adblock, rpz, yaml
          a list file, through parse_list with that format (text decoded as read_text does).
          Every entry must be a normalized name, every problem must name the file; for hosts
          and plain the fast path (whole runs of simple lines at once) must agree with reading
          every line through the format's own line reader.
config    a config file, through parse_config (only ConfigError may escape).
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import re
import struct
from collections.abc import Callable

import dns.exception
import dns.message

from dnsfilter.config import parse_config
from dnsfilter.datapath.cache import (
    AnswerCache,
    CacheEntry,
    CacheKey,
    TtlPolicy,
    make_entry,
    make_passthrough,
)
from dnsfilter.datapath.policy import build_policy
from dnsfilter.datapath.resolver import Reply, Resolver, ZoneRouter
from dnsfilter.datapath.scrub import RefusedAnswer, scrub
from dnsfilter.datapath.upstream import UpstreamAnswer, _check_answer
from dnsfilter.datapath.wire import (
    HEADER_LEN,
    Query,
    Rcode,
    ResponseScan,
    Transport,
    badvers_reply,
    error_reply,
    opt_record,
    parse_query,
    scan_response,
    skip_name,
    truncate_for,
)
from dnsfilter.errors import (
    BadVersion,
    ConfigError,
    DropPacket,
    FormatError,
    ListError,
    NotImplementedOpcode,
)
from dnsfilter.lists import hostsformat, plainformat
from dnsfilter.lists.formats import FORMATS, detect_format, parse_list
from dnsfilter.lists.model import BlockList, Category, DomainEntry, NetworkEntry
from dnsfilter.lists.textlist import LOCAL_NAMES, LineReport, read_lines
from dnsfilter.names import normalize_domain

Target = Callable[[bytes], None]

_HEADER = struct.Struct("!HHHHHH")
_QR = 0x8000
_RD = 0x0100
_CD = 0x0010
#: The clock the cache and resolver are given: fixed, so a run is reproducible.
NOW = 1_000_000.0

# ---------------------------------------------------------------------------------------
# The resolver the wire targets talk to: every blocking mode, inspection, a cache.

_CONFIG = parse_config(
    """
upstream: {servers: ["127.0.0.1:53"]}
networks:
  lan: ["192.0.2.0/24", "2001:db8::/32"]
  strict: ["198.51.100.0/24"]
  sink: ["203.0.113.0/24"]
lists: {apps: {file: apps.txt}}
policies:
  p: {networks: [lan], lists: [apps]}
  q: {networks: [strict], lists: [apps], mode: nxdomain}
  s: {networks: [sink], lists: [apps], mode: sinkhole, sinkhole_ipv4: 192.0.2.53,
      sinkhole_ipv6: "2001:db8::53"}
""",
    "fuzz.yaml",
    None,
)
_APPS = BlockList(
    name="apps",
    source="apps.txt",
    category=Category.SOCIAL,
    domains=(
        DomainEntry("banned.example.test", 1),
        DomainEntry("f", 2),
        DomainEntry("example", 3),
        DomainEntry("www.example.com", 4),
    ),
    networks=(
        NetworkEntry(ipaddress.ip_network("192.0.2.0/24"), 5),
        NetworkEntry(ipaddress.ip_network("2001:db8::/48"), 6),
    ),
)
POLICY = build_policy(_CONFIG, [_APPS])
#: Clients in each network, and one outside them all (REFUSED).
CLIENTS = (("192.0.2.1", 5353), ("198.51.100.9", 53), ("203.0.113.7", 53), ("10.0.0.1", 53))
TTL_POLICIES = (TtlPolicy(), TtlPolicy(min_ttl=60, max_ttl=3600, negative_max_ttl=30))


class _NoUpstream:
    """answer_now never goes to the network; a call here is a bug in the target."""

    async def forward(self, q: Query) -> UpstreamAnswer:
        raise AssertionError("answer_now forwarded a query")


def _resolver() -> Resolver:
    cache = AnswerCache(64)
    # One entry to hit: www.example.test A, answered with a CNAME chain.
    answer = bytes.fromhex(
        "0000 8180 0001 0002 0000 0000"
        "03 777777 07 6578616d706c65 04 74657374 00 0001 0001"
        "c00c 0005 0001 0000012c 0006 03 63646e c010"
        "c02e 0001 0001 0000003c 0004 c6336401"
    )
    entry = make_entry(answer, scan_response(answer), NOW, cache.ttl_policy)
    assert entry is not None
    cache.put(CacheKey("www.example.test", 1, 1, False, False), entry)
    return Resolver(POLICY, ZoneRouter(_NoUpstream(), {}), cache, lambda: NOW)


RESOLVER = _resolver()


def _dnspython(data: bytes) -> dns.message.Message | None:
    """dnspython's reading of a message, or None when it cannot read it."""
    try:
        return dns.message.from_wire(data)
    except (dns.exception.DNSException, ValueError, UnicodeError, struct.error):
        return None


# ---------------------------------------------------------------------------------------
# query


def query(data: bytes) -> None:
    """A client's datagram or TCP message."""
    for transport in Transport:
        _query(data, transport)


def _query(data: bytes, transport: Transport) -> None:
    try:
        q = parse_query(data, CLIENTS[0], transport)
    except DropPacket:
        return
    except BadVersion:
        _check_header_only(data, badvers_reply(data), arcount=1)
        return
    except NotImplementedOpcode:
        _check_error_reply(data, error_reply(data, Rcode.NOTIMP))
        return
    except FormatError:
        _check_error_reply(data, error_reply(data, Rcode.FORMERR))
        return
    # Anything else parse_query raises escapes: it documents only the four above.
    assert q.wire is data
    assert HEADER_LEN < q.question_end <= len(data), q
    assert q.question_end - HEADER_LEN <= 255 + 4, q
    limit = 65535 if transport is Transport.TCP else 1232
    assert 512 <= q.max_size <= limit, q
    readable = _dnspython(data) is not None
    for client in CLIENTS:
        result = RESOLVER.answer_now(q._replace(client=client))
        if isinstance(result, Reply):
            _check_reply_to(q, result.wire, readable)


def _check_header_only(data: bytes, reply: bytes, arcount: int = 0) -> None:
    _, flags, qd, an, ns, ar = _HEADER.unpack_from(reply)
    assert reply[:2] == data[:2]
    assert flags & _QR
    assert (qd, an, ns, ar) == (0, 0, 0, arcount)


def _check_error_reply(data: bytes, reply: bytes) -> None:
    """FORMERR / NOTIMP: the query's ID, no records, at most its questions (as sent) and
    our OPT, so never larger than the query plus one OPT; and readable by dnspython."""
    _, flags, qd, an, ns, ar = _HEADER.unpack_from(reply)
    assert reply[:2] == data[:2]
    assert flags & _QR
    assert (an, ns) == (0, 0) and ar in (0, 1) and qd <= 4, (qd, an, ns, ar)
    opt_len = 11 * ar
    echoed = reply[HEADER_LEN : len(reply) - opt_len]
    assert data[HEADER_LEN : HEADER_LEN + len(echoed)] == echoed
    assert bool(echoed) == bool(qd)
    assert len(reply) <= len(data) + 11
    assert _dnspython(reply) is not None, reply.hex()


def _check_reply_to(q: Query, wire: bytes, readable: bool) -> ResponseScan:
    """A reply must scan, carry q's ID and question, fit, and be readable if q was."""
    scan = scan_response(wire)
    assert scan.id == q.id
    assert wire[HEADER_LEN : scan.question_end] == q.question
    assert len(wire) <= q.max_size, (len(wire), q.max_size)
    if readable:
        assert _dnspython(wire) is not None, wire.hex()
    return scan


# ---------------------------------------------------------------------------------------
# response


def response(data: bytes) -> None:
    """An upstream's reply to the query its own question asks."""
    try:
        scan = scan_response(data)
    except FormatError:
        return
    _check_scan(data, scan)
    # The query the resolver would have sent: this question, EDNS and DO from bits of the ID
    # (so the fuzzer picks them), RD, and the CD bit the reply echoes.
    edns, do = bool(data[1] & 1), bool(data[1] & 2)
    flags = _RD | (scan.flags & _CD)
    question = data[HEADER_LEN : scan.question_end]
    opt = opt_record(do) if edns else b""
    wire = _HEADER.pack(scan.id, flags, 1, 0, 0, 1 if edns else 0) + question + opt
    try:
        q = parse_query(wire, CLIENTS[0], Transport.UDP)
    except (DropPacket, FormatError, NotImplementedOpcode, BadVersion):
        return  # a question dnsfilter never asks (compressed, too long): no reply matches it
    assert _check_answer(data, q.id, q.question) is not None
    original = _dnspython(data)
    # What the resolver stores and serves: the answer as the upstream sent it (the cache
    # code must keep every record), then as scrub leaves it, minimal or not.
    _store_and_serve(q, data, scan, original)
    for minimal in (True, False):
        try:
            wire, kept = scrub(data, scan, minimal)
        except RefusedAnswer:
            continue  # a CNAME loop or an undecodable name: SERVFAIL, nothing stored
        scrubbed = _check_scrubbed(q, data, scan, original, wire, kept)
        _store_and_serve(q, wire, kept, scrubbed)


def _store_and_serve(
    q: Query, data: bytes, scan: ResponseScan, original: dns.message.Message | None
) -> None:
    POLICY.inspect(data, scan)
    try:
        entries: list[CacheEntry] = [make_passthrough(data, scan, NOW)]
    except RefusedAnswer:
        # Only an OPT amid the records makes the cache re-pack, and only dnslib's reading
        # can refuse; the resolver's own answers were re-packed by scrub already.
        assert scan.opt is not None and scan.opt.start < scan.records[-1].end
        return
    for ttls in TTL_POLICIES:
        entry = make_entry(data, scan, NOW, ttls)
        if entry is not None:
            assert entry.expires_at > NOW
            entries.append(entry)
    reply_opt = opt_record(q.do) if q.edns else b""
    for entry in entries:
        for now in (NOW, NOW + 1.5, NOW + 86400 * 2):
            served = entry.reply(q.id, q.flags, q.question, reply_opt, now, q.do)
            _check_served(q, served, scan, data, original)
        stale = entry.stale_reply(q.id, q.flags, q.question, reply_opt, 30, q.do)
        _check_served(q, stale, scan, data, original)


def _check_scrubbed(
    q: Query,
    data: bytes,
    scan: ResponseScan,
    original: dns.message.Message | None,
    wire: bytes,
    kept: ResponseScan,
) -> dns.message.Message | None:
    """scrub keeps a subset, its scan describes its bytes, and (checked with dnspython, for
    answers without DNAME) the answer section is exactly the question's CNAME chain.

    Returns dnspython's reading of what a client is served from the scrubbed answer (None
    when dnspython cannot read the upstream's), for the checks of the cache that follow."""
    if wire is data:
        # Records left out at the end: the bytes stay, the scan stops short of them.
        assert kept.records == scan.records[: len(kept.records)]
        assert kept.question_end == scan.question_end
    else:
        assert kept == scan_response(wire), "scrub's scan does not describe its bytes"
        assert wire[HEADER_LEN : kept.question_end].lower() == q.question.lower()
        assert len(kept.records) < len(scan.records)
    if original is None or not original.question or opt_before_records(kept):
        return None
    # What the client gets (no TTL aged yet): the bytes alone hold records scrub dropped.
    served = make_passthrough(wire, kept, NOW).reply(q.id, q.flags, q.question, b"", NOW, q.do)
    read = _dnspython(served)
    assert read is not None, f"dnspython reads the upstream's reply but not scrub's: {served.hex()}"
    if any(rrset.rdtype == 39 for rrset in original.answer):  # DNAME: synthesis, not checked
        return read
    question = original.question[0]
    chain = [question.name]
    if question.rdtype not in (5, 255):  # a CNAME or ANY question's answer is the CNAME
        while len(chain) <= 12:
            link = next((r for r in original.answer if r.rdtype == 5 and r.name == chain[-1]), None)
            if link is None or link[0].target in chain:
                break
            chain.append(link[0].target)
    expected = [rrset for rrset in original.answer if rrset.name in chain]
    assert read.answer == expected, (read.answer, expected)
    return read


def _check_scan(data: bytes, scan: ResponseScan) -> None:
    """The offsets scan_response hands the cache all lie inside the message, in order."""
    size = len(data)
    assert HEADER_LEN < scan.question_end <= size
    last_end = scan.question_end
    section = 1
    for ref in sorted((*scan.records, *([scan.opt] if scan.opt else [])), key=lambda r: r.start):
        assert ref.start == last_end, (ref, last_end)
        assert ref.section >= section
        section = ref.section
        assert ref.start < ref.ttl_offset < ref.rdata_start <= ref.end <= size, ref
        assert struct.unpack_from("!I", data, ref.ttl_offset)[0] == ref.ttl
        last_end = ref.end


def _check_served(
    q: Query,
    served: bytes,
    scan: ResponseScan,
    data: bytes,
    original: dns.message.Message | None,
) -> None:
    """A reply served from an entry keeps what the upstream said, record for record."""
    got = _check_reply_to_answer(q, served)
    assert [(r.section, r.rtype) for r in got.records] == [
        (r.section, r.rtype) for r in scan.records
    ]
    for mine, theirs in zip(got.records, scan.records, strict=True):
        assert served[mine.rdata_start : mine.end] == data[theirs.rdata_start : theirs.end]
    assert got.rcode & 0xF == scan.rcode & 0xF
    # Names are compared only when no TTL changed: a pointer may legally land inside a TTL
    # field (a name overlapping it), and then aging the TTL renames the record. That is a
    # curiosity of pointers into non-name octets, not something an honest upstream sends.
    same_ttls = all(m.ttl == t.ttl for m, t in zip(got.records, scan.records, strict=True))
    if (
        original is not None
        and same_ttls
        and not opt_before_records(scan)
        and not names_read_rewritten_octets(data, scan)
    ):
        read = _dnspython(served)
        assert read is not None, (
            f"dnspython reads the upstream's reply but not ours: {served.hex()}"
        )
        assert read.answer == original.answer, (read.answer, original.answer)
        assert read.authority == original.authority, (read.authority, original.authority)
        assert _without_opt(read.additional) == _without_opt(original.additional)
    small = truncate_for(q, served)
    assert len(small) <= q.max_size
    scan_response(small)


def opt_before_records(scan: ResponseScan) -> bool:
    """Known bug, left to the lead (cache.py is being rewritten; see
    tests/unit/test_fuzz_found.py): with records after the OPT, the cache drops the OPT and
    joins the rest, so compression pointers into those records now point 11 octets too far.
    The record-for-record check skips such replies so the fuzzer can look for other bugs."""
    opt = scan.opt
    return opt is not None and any(ref.start > opt.start for ref in scan.records)


#: Where a record's rdata holds a compressible name: type -> offsets into the rdata.
_NAME_OFFSETS = {2: (0,), 5: (0,), 12: (0,), 39: (0,), 15: (2,), 33: (6,)}


def names_read_rewritten_octets(data: bytes, scan: ResponseScan) -> bool:
    """Known bug, left to the lead (wire.py; see tests/unit/test_fuzz_found.py): does a
    name's compression pointer land in the header, which the cache replaces with the
    client's (ID, flags, counts)? scan_response accepts pointers below offset 12, so the
    name a client reads is not the one scrub and the policy read. Pointers into a TTL field
    (renamed as the TTL ages) are caught by the same walk."""
    rewritten = set(range(HEADER_LEN))
    for ref in scan.records:
        rewritten.update(range(ref.ttl_offset, ref.ttl_offset + 4))
    starts = [ref.start for ref in scan.records]
    for ref in scan.records:
        for offset in _NAME_OFFSETS.get(ref.rtype, ()):
            if ref.rdata_start + offset < ref.end:
                starts.append(ref.rdata_start + offset)
        if ref.rtype == 6:  # SOA: MNAME, then RNAME
            starts.append(ref.rdata_start)
            with contextlib.suppress(FormatError):
                starts.append(skip_name(data, ref.rdata_start))
    return any(rewritten & _name_octets(data, start) for start in starts)


def _name_octets(data: bytes, pos: int) -> set[int]:
    """Every offset the name at pos is read from, through its pointers."""
    read: set[int] = set()
    for _ in range(128):
        if pos >= len(data) or pos in read:
            return read
        length = data[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                return read
            read.update((pos, pos + 1))
            pos = (length & 0x3F) << 8 | data[pos + 1]
            continue
        read.update(range(pos, pos + 1 + length))
        if length == 0 or length > 63:
            return read
        pos += 1 + length
    return read


def _check_reply_to_answer(q: Query, wire: bytes) -> ResponseScan:
    scan = scan_response(wire)
    assert scan.id == q.id
    assert wire[HEADER_LEN : scan.question_end] == q.question
    assert (scan.opt is not None) == q.edns
    return scan


def _without_opt(section: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    return [rrset for rrset in section if rrset.rdtype != 41]


# ---------------------------------------------------------------------------------------
# lists


def _text(data: bytes) -> str:
    """The text read_text would hand the parser; bytes that are not UTF-8 are read as
    Latin-1 rather than dropped, so every input reaches the parser."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


_LIST_FILE = "fuzz.list"
_NEVER = re.compile(r"(?!)")
#: For the fast-path check: each line format's simple-run splitter and line reader.
_LINE_READERS: dict[
    str, tuple[Callable[[str], list[str]], Callable[[str, int, LineReport], list[str]]]
] = {
    "hosts": (hostsformat._simple_names, hostsformat._read_line),
    "plain": (str.split, plainformat._read_line),
}


def _list_target(format: str) -> Target:
    def target(data: bytes) -> None:
        text = _text(data)
        assert detect_format(text, _LIST_FILE) in FORMATS
        try:
            blocklist = parse_list(text, _LIST_FILE, "" if format == "yaml" else "fuzz", format)
        except ListError as exc:
            assert exc.problems
            for problem in exc.problems:
                assert problem.startswith(_LIST_FILE + ":"), problem
            blocklist = None
        if blocklist is not None:
            _check_list(blocklist, text, single_labels=format == "yaml")
        if format in _LINE_READERS:
            _check_fast_path(format, text, blocklist)
        if format == "rpz":
            _check_rpz_slow_path(text, blocklist)

    target.__name__ = target.__qualname__ = format
    target.__doc__ = f"A list file in the {format} format."
    return target


def _check_list(blocklist: BlockList, text: str, single_labels: bool) -> None:
    lines = text.count("\n") + 1
    for entries in (blocklist.domains, blocklist.exceptions):
        names = [entry.domain for entry in entries]
        assert len(set(names)) == len(names), "an entry listed twice"
        for entry in entries:
            name = entry.domain
            assert normalize_domain(name) == name, name
            assert name not in LOCAL_NAMES, name
            assert single_labels or "." in name, name
            assert 1 <= entry.line <= lines, (entry, lines)
    for warning in blocklist.warnings:
        assert warning.startswith(_LIST_FILE + ":"), warning


def _check_fast_path(format: str, text: str, blocklist: BlockList | None) -> None:
    """read_lines promises that taking runs of simple lines at once changes nothing."""
    simple_names, read_line = _LINE_READERS[format]
    report = LineReport(_LIST_FILE)
    entries, duplicates = read_lines(text, report, _NEVER, simple_names, read_line)
    if blocklist is None:
        # Only a file whose every line was unreadable fails (textlist.finish).
        assert report.error_count, "the fast path reported an error that line reading does not"
        assert not entries, entries
        return
    assert report.error_count == blocklist.skipped, report._errors
    assert list(blocklist.domains) == list(entries)
    assert blocklist.duplicates == duplicates
    assert blocklist.warnings == report.warnings()


def _check_rpz_slow_path(text: str, blocklist: BlockList | None) -> None:
    """RPZ reads most lines with str.split(); a line with a quote, a parenthesis or a
    comment goes through the full word reader. An empty comment on every line that has no
    quote (inside one, ';' is text) forces the full reader: the list must read the same."""
    commented = "".join(
        line if '"' in line else line.rstrip("\n") + " ;" + line[len(line.rstrip("\n")) :]
        for line in io.StringIO(text)
    )
    try:
        slow: BlockList | None = parse_list(commented, _LIST_FILE, "fuzz", "rpz")
    except ListError as exc:
        assert blocklist is None, exc.problems
        return
    assert slow is not None and blocklist is not None, "the fast path reported an error"
    assert list(slow.domains) == list(blocklist.domains)
    assert list(slow.exceptions) == list(blocklist.exceptions)
    assert slow.warnings == blocklist.warnings


# ---------------------------------------------------------------------------------------
# config


def config(data: bytes) -> None:
    """A config file (relative list paths are not opened: base is None)."""
    try:
        parse_config(_text(data), "fuzz.yaml", None)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.startswith("fuzz.yaml"), problem


TARGETS: dict[str, Target] = {
    "query": query,
    "response": response,
    **{format: _list_target(format) for format in ("hosts", "plain", "adblock", "rpz", "yaml")},
    "config": config,
}
