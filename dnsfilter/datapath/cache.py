"""The answer cache: upstream responses kept as bytes, served with aged TTLs.

Entries hold the response body after the question, without its OPT record, and a layout:
the header flags, the section counts and the offset of every TTL field. Serving a hit
patches those TTLs (once per second of age, then reuses the rendering), puts the client's
own question and ID in front and appends a fresh OPT when the client sent EDNS. Nothing is
re-packed through a DNS library.

What is cached follows CoreDNS and RFC 2308: NOERROR answers for their smallest TTL,
negative answers (NXDOMAIN, NODATA) for min(SOA TTL, SOA MINIMUM) only when they carry
an SOA; truncated responses and every other rcode are never cached.

Serve-stale (RFC 8767): an expired entry stays (unless eviction pushes it out) for
`stale_max_age` seconds more. `get` never returns it, so hits cost nothing extra;
`get_stale` finds it for the resolver when no upstream answers, and `stale_reply` serves
it with every TTL set to the short stale TTL.

Memory: most entries are filled once and never hit again (a full cache of 100,000 of them
is the benchmark's "miss" load), so an entry is kept to five objects: its key (the query
name itself for the usual IN A question), the entry, its bytes and two floats. Layouts are
shared between entries of the same shape, and what only a hit entry needs (its rendering,
its prefetch and stale state) lives in a side object made on the first hit.
"""

from __future__ import annotations

import struct
from itertools import pairwise
from typing import TYPE_CHECKING, NamedTuple

from dnsfilter.datapath.scrub import repacked
from dnsfilter.datapath.wire import QType, Rcode, ResponseScan, scan_response, soa_minimum
from dnsfilter.errors import FormatError

if TYPE_CHECKING:
    from dnsfilter.datapath.policy import Inspection

_HEADER = struct.Struct("!HHHHHH")
_U32 = struct.Struct("!I")
_QR = 0x8000
_TC = 0x0200
_RD = 0x0100
_RA = 0x0080
_AD = 0x0020
_CD = 0x0010
#: Copied from the client's query into every reply from an entry (RFC 1035 4.1.1, RFC 6840 5.9).
_ECHOED = _RD | _CD
_CLASS_IN = 1
_TYPE_A = int(QType.A)  # a plain int: comparing with the enum member costs a lookup a query
_TYPE_SOA = int(QType.SOA)
_NOERROR = int(Rcode.NOERROR)
_NXDOMAIN = int(Rcode.NXDOMAIN)
_CACHEABLE_RCODES = frozenset((_NOERROR, _NXDOMAIN))

#: A cache key: the name alone for IN A without DO or CD, (name, qtype) for other IN
#: questions without DO or CD, else every field. The three shapes never compare equal, so
#: no two questions share a key, and the commonest key costs no object of its own.
Key = str | tuple[str, int] | tuple[str, int, int, bool, bool]


def CacheKey(qname: str, qtype: int, qclass: int, do: bool, cd: bool) -> Key:
    """The key of a question; DO and CD are part of it (CoreDNS), as is the class.

    Named like the NamedTuple it replaced, which is how the resolver spells it.
    """
    if qclass == _CLASS_IN and not (do or cd):
        return qname if qtype == _TYPE_A else (qname, qtype)
    return (qname, qtype, qclass, do, cd)


class Layout(NamedTuple):
    """An entry's header values and where its TTLs are; equal layouts are one object."""

    flags: int  #: QR, RA, the rcode's low 4 bits and the upstream's TC and AD (see _build_entry)
    ancount: int
    nscount: int
    arcount: int  #: without the OPT record
    ttl_offsets: tuple[int, ...]  #: of every TTL field in the body


_LAYOUTS: dict[Layout, Layout] = {}
#: Distinct layouts kept for sharing; past this, new shapes get a copy each. A one-A answer
#: from one upstream has one layout, so the usual shapes are in long before the cap.
_MAX_LAYOUTS = 1024


def _shared(layout: Layout) -> Layout:
    found = _LAYOUTS.get(layout)
    if found is not None:
        return found
    if len(_LAYOUTS) < _MAX_LAYOUTS:
        _LAYOUTS[layout] = layout
    return layout


#: Where in an entry's lifetime the prefetch window starts (unbound prefetches at 90% too).
PREFETCH_WINDOW = 0.9
LIFETIME_PER_WINDOW = 1 / PREFETCH_WINDOW


class _HitState:
    """What only an entry that is hit needs: its rendering per age, the CLOCK mark, and
    the prefetch and stale bookkeeping of the resolver."""

    __slots__ = (
        "late_hits",
        "prefetching",
        "rendered",
        "rendered_from",
        "rendered_until",
        "stale_until",
        "used",
    )

    def __init__(self, stored_at: float, body: bytes) -> None:
        #: the body as served from rendered_from to rendered_until (age 0 at first)
        self.rendered = body
        self.rendered_from = stored_at
        self.rendered_until = stored_at + 1
        self.used = False  #: hit since the last eviction sweep passed it
        self.late_hits = 0
        self.prefetching = False
        self.stale_until = 0.0


class CacheEntry:
    """One cached response. Its bytes are never mutated; rendering makes new ones."""

    __slots__ = ("_hit", "body", "inspection", "layout", "prefetch_at", "stored_at")

    def __init__(self, layout: Layout, body: bytes, stored_at: float, prefetch_at: float) -> None:
        self.layout = layout
        #: the records after the question, OPT left out, with the stored (clamped) TTLs
        self.body = body
        self.stored_at = stored_at
        #: the last tenth of the lifetime: hits from here on may refresh the entry early
        self.prefetch_at = prefetch_at
        #: What the policy found in the answer (CNAME targets, addresses), set on fill, so
        #: a hit is checked against the asking client's policy with two ANDs.
        self.inspection: Inspection | None = None
        self._hit: _HitState | None = None

    @property
    def expires_at(self) -> float:
        """When the entry stops being fresh: stored_at + the lifetime, to within the
        rounding of prefetch_at (a nanosecond on a monotonic clock). Derived rather than
        kept, one float fewer an entry; AnswerCache.get computes it the same way, inline."""
        stored_at = self.stored_at
        return stored_at + (self.prefetch_at - stored_at) * LIFETIME_PER_WINDOW

    def _hit_state(self) -> _HitState:
        state = self._hit
        if state is None:
            state = self._hit = _HitState(self.stored_at, self.body)
        return state

    @property
    def late_hits(self) -> int:
        """Hits since prefetch_at (the resolver counts them)."""
        return 0 if self._hit is None else self._hit.late_hits

    @late_hits.setter
    def late_hits(self, value: int) -> None:
        self._hit_state().late_hits = value

    @property
    def prefetching(self) -> bool:
        """A refresh was started (at most one per entry)."""
        return self._hit is not None and self._hit.prefetching

    @prefetching.setter
    def prefetching(self, value: bool) -> None:
        self._hit_state().prefetching = value

    @property
    def stale_until(self) -> float:
        """After a failed refresh, the stale entry is served without asking until then."""
        return 0.0 if self._hit is None else self._hit.stale_until

    @stale_until.setter
    def stale_until(self, value: float) -> None:
        self._hit_state().stale_until = value

    def body_at(self, now: float) -> bytes:
        """The body with every TTL counted down by the entry's age in whole seconds."""
        state = self._hit
        if state is not None and state.rendered_from <= now < state.rendered_until:
            return state.rendered
        stored_at = self.stored_at
        age = int(now - stored_at)
        if age <= 0:  # the stored TTLs are the age-0 rendering (and a clock that went back)
            rendered = self.body
        else:
            out = bytearray(self.body)
            for offset in self.layout.ttl_offsets:
                (ttl,) = _U32.unpack_from(out, offset)
                _U32.pack_into(out, offset, ttl - age if ttl > age else 0)
            rendered = bytes(out)
        if state is not None:
            state.rendered = rendered
            state.rendered_from = stored_at + age
            state.rendered_until = stored_at + age + 1
        return rendered

    def reply(
        self, msg_id: int, query_flags: int, question: bytes, opt: bytes, now: float, do: bool
    ) -> bytes:
        """The full reply for a client: its ID, RD and CD bits and question; our OPT if it
        sent EDNS; AD as the upstream set it if the client asked with DO or AD."""
        flags, ancount, nscount, arcount, _ = self.layout
        state = self._hit
        # body_at's first test, inline: a hit within the second of the last one calls nothing.
        if state is not None and state.rendered_from <= now < state.rendered_until:
            body = state.rendered
        else:
            body = self.body_at(now)
        header = _HEADER.pack(
            msg_id,
            reply_header_flags(flags, query_flags, do),
            1,
            ancount,
            nscount,
            arcount + (1 if opt else 0),
        )
        return b"".join((header, question, body, opt))

    def stale_reply(
        self, msg_id: int, query_flags: int, question: bytes, opt: bytes, ttl: int, do: bool
    ) -> bytes:
        """As reply(), for an expired entry: every TTL is ttl (RFC 8767 4)."""
        flags, ancount, nscount, arcount, offsets = self.layout
        header = _HEADER.pack(
            msg_id,
            reply_header_flags(flags, query_flags, do),
            1,
            ancount,
            nscount,
            arcount + (1 if opt else 0),
        )
        body = bytearray(self.body)
        for offset in offsets:
            _U32.pack_into(body, offset, ttl)
        return b"".join((header, question, body, opt))


def reply_header_flags(entry_flags: int, query_flags: int, do: bool) -> int:
    """The flags of a reply served from an entry, the same for fresh, cached, prefetched and
    stale answers: the entry's, RD and CD echoed from the query, and AD kept only for a
    client that asked with DO or AD (RFC 6840 5.7); a client that did not gets AD clear."""
    flags = entry_flags | (query_flags & _ECHOED)
    if flags & _AD and not (do or query_flags & _AD):
        return flags & ~_AD
    return flags


class TtlPolicy(NamedTuple):
    min_ttl: int = 0
    max_ttl: int = 86400
    negative_max_ttl: int = 3600


_DEFAULT_TTLS = TtlPolicy()


def make_entry(
    wire: bytes, scan: ResponseScan, now: float, ttl_policy: TtlPolicy
) -> CacheEntry | None:
    """Turn a checked upstream response into a cache entry, or None when it must not be cached.

    The entry is also what serves the reply that is being forwarded right now, so a fresh
    answer and a cached one are built by the same code.
    """
    return _build_entry(wire, scan, now, ttl_policy, cacheable=True)


def make_passthrough(wire: bytes, scan: ResponseScan, now: float) -> CacheEntry:
    """An entry that only serves the reply being forwarded now (it is not cacheable)."""
    entry = _build_entry(wire, scan, now, _DEFAULT_TTLS, cacheable=False)
    assert entry is not None
    return entry


def _build_entry(
    wire: bytes, scan: ResponseScan, now: float, policy: TtlPolicy, cacheable: bool
) -> CacheEntry | None:
    records = scan.records
    rcode = scan.rcode
    # Records come in section order: an answer, if any, is the first one.
    negative = rcode == _NXDOMAIN or (
        rcode == _NOERROR and (not records or records[0].section != 1)
    )
    if cacheable:
        if scan.flags & _TC or rcode not in _CACHEABLE_RCODES:
            return None
        if negative:
            soa = next((r for r in records if r.section == 2 and r.rtype == _TYPE_SOA), None)
            if soa is None:
                return None
            try:
                minimum = soa_minimum(wire, soa)
            except FormatError:  # an SOA too short to hold a MINIMUM: forward, do not cache
                return None
            cap = min(soa.ttl, minimum, policy.negative_max_ttl)
            ttls = [min(r.ttl, cap) for r in records]
        else:
            low, high = policy.min_ttl, policy.max_ttl
            ttls = [min(max(r.ttl, low), high) for r in records]
        lifetime = min(ttls, default=0)
        if lifetime <= 0:
            return None
    else:
        ttls = [r.ttl for r in records]
        lifetime = 0

    counts = [0, 0, 0]
    offsets: list[int] = []
    opt = scan.opt
    if records and opt is not None and opt.start < records[-1].end:
        # An OPT amid the records (legal: RFC 6891 says only "in the additional section"):
        # the records after it cannot be joined to those before, as compression pointers
        # into them would land 11 octets off. The message is compressed afresh, OPT last
        # (dnslib: the rare path), and the records are the same, in the same order. The
        # resolver's answers come through scrub, which did this already; RefusedAnswer
        # when dnslib cannot read the message.
        wire, scan = repacked(wire)
        records = scan.records
    elif any(ref.end != after.start for ref, after in pairwise(records)):
        # Records left out between others (scrub packs its answers afresh, so only a direct
        # caller does this): a pointer past the gap would land off once the rest is joined,
        # so the kept records, in order, are compressed afresh too.
        starts = {ref.start for ref in records}
        every = scan_response(wire).records
        wire, scan = repacked(wire, {i for i, ref in enumerate(every) if ref.start in starts})
        records = scan.records
    # The records now sit back to back (the OPT, if any, after them): the body is one
    # slice, and only TTLs that a clamp changed need writing.
    body = b""
    if records:
        base = records[0].start
        clamped = False
        for ref, ttl in zip(records, ttls, strict=True):
            counts[ref.section - 1] += 1
            offsets.append(ref.ttl_offset - base)
            clamped = clamped or ttl != ref.ttl
        body = wire[base : records[-1].end]
        if clamped:
            body = _with_ttls(body, offsets, ttls)
    # The header is a resolver's, not the upstream's: RA set (the upstream may be an
    # authoritative server that clears it), AA never (we are not the authority, RFC 1035
    # 4.1.1), RD and CD echoed per client; of the upstream's bits only TC (a passthrough
    # reply) and AD (whether the upstream validated the answer) are kept. Z is cleared.
    flags = _QR | _RA | (scan.flags & (_TC | _AD)) | (rcode & 0xF)
    layout = _shared(Layout(flags, counts[0], counts[1], counts[2], tuple(offsets)))
    # The stored body carries the clamped TTLs: at age 0 it is its own rendering, and the
    # TTLs need no tuple of their own.
    if lifetime == 0:
        return CacheEntry(layout, body, now, now)
    return CacheEntry(layout, body, now, now + lifetime * PREFETCH_WINDOW)


def _with_ttls(body: bytes, offsets: list[int], ttls: list[int]) -> bytes:
    patched = bytearray(body)
    for offset, ttl in zip(offsets, ttls, strict=True):
        _U32.pack_into(patched, offset, ttl)
    return bytes(patched)


#: An eviction sweep frees this fraction of max_entries at once (at most _MAX_SWEEP), so the
#: walk from the oldest end of the dict, which steps over every slot freed since the dict
#: last resized, is paid once per batch rather than once per insertion.
_SWEEP_FRACTION = 64
_MAX_SWEEP = 1024


class AnswerCache:
    """A bounded map of CacheEntry by key; time comes from the caller.

    Eviction is CLOCK (second chance) over a plain dict in insertion order: a hit only
    marks its entry, and when the cache is full a sweep from the oldest end evicts the
    entries not hit since the sweep last passed them and moves the marked ones, unmarked,
    to the newest end. That keeps popular entries as LRU would, without the per-hit
    move-to-end and the per-key links of an OrderedDict (~75 bytes an entry).
    Expired entries are kept stale_max_age seconds more for get_stale (0: dropped at once).
    """

    def __init__(
        self, max_entries: int, ttl_policy: TtlPolicy = _DEFAULT_TTLS, stale_max_age: float = 0
    ) -> None:
        self.max_entries = max_entries
        self.ttl_policy = ttl_policy
        self.stale_max_age = stale_max_age
        self._entries: dict[Key, CacheEntry] = {}
        self._sweep_size = min(_MAX_SWEEP, max(1, max_entries // _SWEEP_FRACTION))
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.prefetches = 0  #: refreshes started before expiry (the resolver counts them)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key, now: float) -> CacheEntry | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        stored_at = entry.stored_at
        expires_at = stored_at + (entry.prefetch_at - stored_at) * LIFETIME_PER_WINDOW
        if now >= expires_at:
            if now >= expires_at + self.stale_max_age:
                del self._entries[key]
            self.misses += 1
            return None
        state = entry._hit
        if state is None:
            state = entry._hit_state()
        state.used = True
        self.hits += 1
        return entry

    def get_stale(self, key: Key, now: float) -> CacheEntry | None:
        """The entry, fresh or expired less than stale_max_age ago; counts nothing."""
        entry = self._entries.get(key)
        if entry is None or now >= entry.expires_at + self.stale_max_age:
            return None
        return entry

    def put(self, key: Key, entry: CacheEntry) -> None:
        """Store entry as the newest; a replaced entry makes no room, a new one may."""
        entries = self._entries
        if entries.pop(key, None) is None and len(entries) >= self.max_entries:
            self._sweep(len(entries) - self.max_entries + self._sweep_size)
        entries[key] = entry

    def _sweep(self, wanted: int) -> None:
        """Evict `wanted` entries, second chance first (see the class docstring)."""
        entries = self._entries
        while wanted > 0:  # a second round only when every entry had been hit
            victims: list[Key] = []
            kept: list[Key] = []
            for key, entry in entries.items():
                state = entry._hit
                if state is not None and state.used:
                    state.used = False
                    kept.append(key)
                else:
                    victims.append(key)
                    if len(victims) == wanted:
                        break
            for key in victims:
                del entries[key]
            for key in kept:
                entries[key] = entries.pop(key)
            self.evictions += len(victims)
            wanted -= len(victims)

    def clear(self) -> None:
        self._entries.clear()
