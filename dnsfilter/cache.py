"""The answer cache: upstream responses kept as bytes, served with aged TTLs.

Entries hold the response body after the question, without its OPT record, and the
offsets of every TTL field. Serving a hit patches those TTLs (once per second of age,
then reuses the rendering), puts the client's own question and ID in front and appends
a fresh OPT when the client sent EDNS. Nothing is re-packed through a DNS library.

What is cached follows CoreDNS and RFC 2308: NOERROR answers for their smallest TTL,
negative answers (NXDOMAIN, NODATA) for min(SOA TTL, SOA MINIMUM) only when they carry
an SOA; truncated responses and every other rcode are never cached.

Serve-stale (RFC 8767): an expired entry stays (unless the LRU pushes it out) for
`stale_max_age` seconds more. `get` never returns it, so hits cost nothing extra;
`get_stale` finds it for the resolver when no upstream answers, and `stale_reply` serves
it with every TTL set to the short stale TTL.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from typing import TYPE_CHECKING, NamedTuple

from dnsfilter.errors import FormatError
from dnsfilter.wire import QType, Rcode, ResponseScan, soa_minimum

if TYPE_CHECKING:
    from dnsfilter.policy import Inspection

_HEADER = struct.Struct("!HHHHHH")
_U32 = struct.Struct("!I")
_TC = 0x0200
_AA = 0x0400
_RD = 0x0100


class CacheKey(NamedTuple):
    qname: str
    qtype: int
    qclass: int
    do: bool
    cd: bool


class CacheEntry:
    """One cached response. Its bytes are never mutated; rendering makes new ones."""

    __slots__ = (
        "_rendered",
        "_rendered_age",
        "ancount",
        "arcount",
        "body",
        "expires_at",
        "flags",
        "inspection",
        "late_hits",
        "nscount",
        "prefetch_at",
        "prefetching",
        "stale_until",
        "stored_at",
        "ttl_offsets",
        "ttls",
    )

    def __init__(
        self,
        flags: int,
        counts: tuple[int, int, int],
        body: bytes,
        ttl_offsets: tuple[int, ...],
        ttls: tuple[int, ...],
        stored_at: float,
        lifetime: int,
    ) -> None:
        self.flags = flags
        self.ancount, self.nscount, self.arcount = counts
        self.body = body
        self.ttl_offsets = ttl_offsets
        self.ttls = ttls
        self.stored_at = stored_at
        self.expires_at = stored_at + lifetime
        #: the last tenth of the lifetime: hits from here on may refresh the entry early
        self.prefetch_at = stored_at + lifetime * PREFETCH_WINDOW
        self.late_hits = 0  #: hits since prefetch_at
        self.prefetching = False  #: a refresh was started (at most one per entry)
        #: after a failed refresh, the stale entry is served without asking until then
        self.stale_until = 0.0
        self._rendered_age: int | None = 0
        self._rendered = body
        #: What the policy found in the answer (CNAME targets, addresses), set on fill, so
        #: a hit is checked against the asking client's policy with two ANDs.
        self.inspection: Inspection | None = None

    def body_at(self, now: float) -> bytes:
        """The body with every TTL counted down by the entry's age in whole seconds."""
        age = int(now - self.stored_at)
        if age == self._rendered_age:
            return self._rendered
        out = bytearray(self.body)
        for offset, ttl in zip(self.ttl_offsets, self.ttls, strict=True):
            _U32.pack_into(out, offset, ttl - age if ttl > age else 0)
        rendered = bytes(out)
        self._rendered, self._rendered_age = rendered, age
        return rendered

    def reply(
        self, msg_id: int, query_flags: int, question: bytes, opt: bytes, now: float
    ) -> bytes:
        """The full reply for a client: its ID, RD bit and question; our OPT if it sent EDNS."""
        flags = (self.flags & ~_RD) | (query_flags & _RD)
        header = _HEADER.pack(
            msg_id, flags, 1, self.ancount, self.nscount, self.arcount + (1 if opt else 0)
        )
        return header + question + self.body_at(now) + opt

    def stale_reply(
        self, msg_id: int, query_flags: int, question: bytes, opt: bytes, ttl: int
    ) -> bytes:
        """As reply(), for an expired entry: every TTL is ttl (RFC 8767 4)."""
        flags = (self.flags & ~_RD) | (query_flags & _RD)
        header = _HEADER.pack(
            msg_id, flags, 1, self.ancount, self.nscount, self.arcount + (1 if opt else 0)
        )
        body = bytearray(self.body)
        for offset in self.ttl_offsets:
            _U32.pack_into(body, offset, ttl)
        return header + question + bytes(body) + opt


#: Where in an entry's lifetime the prefetch window starts (unbound prefetches at 90% too).
PREFETCH_WINDOW = 0.9


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
    rcode = scan.rcode
    negative = rcode == Rcode.NXDOMAIN or (
        rcode == Rcode.NOERROR and not any(r.section == 1 for r in scan.records)
    )
    if cacheable:
        if scan.flags & _TC or rcode not in (Rcode.NOERROR, Rcode.NXDOMAIN):
            return None
        if negative:
            soa = next((r for r in scan.records if r.section == 2 and r.rtype == QType.SOA), None)
            if soa is None:
                return None
            try:
                minimum = soa_minimum(wire, soa)
            except FormatError:  # an SOA too short to hold a MINIMUM: forward, do not cache
                return None
            cap = min(soa.ttl, minimum, policy.negative_max_ttl)
            ttls = tuple(min(r.ttl, cap) for r in scan.records)
        else:
            ttls = tuple(min(max(r.ttl, policy.min_ttl), policy.max_ttl) for r in scan.records)
        lifetime = min(ttls, default=0)
        if lifetime <= 0:
            return None
    else:
        ttls = tuple(r.ttl for r in scan.records)
        lifetime = 0

    counts = [0, 0, 0]
    parts: list[bytes] = []
    offsets: list[int] = []
    length = 0
    for ref in scan.records:
        counts[ref.section - 1] += 1
        offsets.append(length + ref.ttl_offset - ref.start)
        parts.append(wire[ref.start : ref.end])
        length += ref.end - ref.start
    flags = (scan.flags & ~(_AA | 0xF)) | (rcode & 0xF)
    body = bytearray().join(parts)
    # The stored body carries the clamped TTLs, so at age 0 it is its own rendering and
    # an entry that is never hit again holds one copy of its bytes, not two.
    for offset, ttl in zip(offsets, ttls, strict=True):
        _U32.pack_into(body, offset, ttl)
    return CacheEntry(
        flags,
        (counts[0], counts[1], counts[2]),
        bytes(body),
        tuple(offsets),
        ttls,
        now,
        lifetime,
    )


class AnswerCache:
    """A bounded LRU of CacheEntry by CacheKey; time comes from the caller.

    Expired entries are kept stale_max_age seconds more for get_stale (0: dropped at once).
    """

    def __init__(
        self, max_entries: int, ttl_policy: TtlPolicy = _DEFAULT_TTLS, stale_max_age: float = 0
    ) -> None:
        self.max_entries = max_entries
        self.ttl_policy = ttl_policy
        self.stale_max_age = stale_max_age
        self._entries: OrderedDict[CacheKey, CacheEntry] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.prefetches = 0  #: refreshes started before expiry (the resolver counts them)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey, now: float) -> CacheEntry | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if now >= entry.expires_at:
            if now >= entry.expires_at + self.stale_max_age:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def get_stale(self, key: CacheKey, now: float) -> CacheEntry | None:
        """The entry, fresh or expired less than stale_max_age ago; counts nothing."""
        entry = self._entries.get(key)
        if entry is None or now >= entry.expires_at + self.stale_max_age:
            return None
        return entry

    def put(self, key: CacheKey, entry: CacheEntry) -> None:
        entries = self._entries
        entries[key] = entry
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
            self.evictions += 1

    def clear(self) -> None:
        self._entries.clear()
