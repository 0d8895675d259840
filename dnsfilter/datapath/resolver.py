"""The resolution chain: the one place that fixes the order of the stages.

`answer_now` runs synchronously inside the datagram callback and answers everything that
needs no network: refused clients, blocked names, cache hits. A miss goes to `start`, which
makes the first upstream try by callbacks, and from there, or directly when more is
needed (failover, TCP, TLS, a stale entry), to the asynchronous `resolve`; both forward,
cache and answer the same way.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, cast

from dnsfilter.config import Config, HostPort, UpstreamServer, read_resolv_conf
from dnsfilter.datapath.cache import (
    AnswerCache,
    CacheEntry,
    CacheKey,
    Key,
    TtlPolicy,
    make_entry,
    make_passthrough,
)
from dnsfilter.datapath.chase import MAX_CHASES, joined, target_query, unfinished_target
from dnsfilter.datapath.policy import REFUSE, Action, Inspection, Policy, Verdict, build_policy
from dnsfilter.datapath.scrub import Labels, RefusedAnswer, is_minimal_any, minimal_any, scrub
from dnsfilter.datapath.upstream import FirstTry, Upstream, UpstreamAnswer, UpstreamGroup
from dnsfilter.datapath.wire import (
    CLASS_IN,
    HEADER_LEN,
    EdeCode,
    QType,
    Query,
    Rcode,
    build_reply,
    ede_option,
    opt_record,
    parse_query,
    truncate_for,
)
from dnsfilter.errors import ConfigError, UpstreamError, UpstreamTimeout, WireError
from dnsfilter.lists.model import BlockList
from dnsfilter.names import plain_tail
from dnsfilter.observe.metrics import UpstreamStats

log = logging.getLogger(__name__)


class ReplyKind(enum.Enum):
    FORWARDED = "forwarded"
    CACHED = "cached"
    BLOCKED = "blocked"
    REFUSED = "refused"
    SERVFAIL = "servfail"
    FORMERR = "formerr"
    NOTIMP = "notimp"
    DROPPED = "dropped"
    STALE = "stale"  #: an expired cache entry, because no upstream answered (RFC 8767)
    RATELIMITED = "ratelimited"  #: over a per-client limit: dropped, or REFUSED by config
    MINIMAL = "minimal"  #: an ANY query answered with RFC 8482's synthetic HINFO
    NOTAUTH = "notauth"  #: a signed (TSIG, SIG(0)) query: we have no key to check it


class Reply(NamedTuple):
    wire: bytes
    kind: ReplyKind
    verdict: Verdict  #: the policy's decision: network, and the list of a block


# Module constants and tuple.__new__: the answer_now path runs for every query, and
# enum attribute lookups and NamedTuple.__new__ cost as much as the work itself.
_BLOCK = Action.BLOCK
_BLOCKED = ReplyKind.BLOCKED
_CACHED = ReplyKind.CACHED
_FORWARDED = ReplyKind.FORWARDED
_new_tuple = tuple.__new__
_PROHIBITED = ede_option(EdeCode.PROHIBITED, "client is not in a configured network")
_UNREACHABLE = ede_option(EdeCode.NETWORK_ERROR, "no upstream answered")
_NO_ANSWER = ede_option(EdeCode.NO_REACHABLE_AUTHORITY, "no upstream answered in time")
_STALE = ede_option(EdeCode.STALE_ANSWER, "no upstream answered")
#: Refreshes (prefetches, and resolutions that outlived their stale answer) at once; past
#: this, a prefetch is skipped and the entry simply expires.
_MAX_BACKGROUND = 256
_ANY = int(QType.ANY)  #: a plain int: an IntEnum member costs a lookup on every query
_MINIMAL = ReplyKind.MINIMAL
_RD = 0x0100
_NOT_RECURSIVE = ede_option(EdeCode.PROHIBITED, "recursion not desired (RD=0) is refused")
_NOT_CACHED = ede_option(EdeCode.PROHIBITED, "RD=0 is answered from the cache only; not cached")
_IXFR = int(QType.IXFR)
_AXFR = int(QType.AXFR)
_NO_TRANSFER = ede_option(EdeCode.NOT_SUPPORTED, "a resolver does not transfer zones")


#: What _store makes of an upstream answer: (answer, inspection, entry, time).
Stored = tuple[UpstreamAnswer, Inspection | None, CacheEntry | None, float]
#: Queries that may wait on one identical miss in flight (BIND's clients-per-query).
MAX_WAITERS = 100
_TOO_MANY = ede_option(EdeCode.OTHER, "too many identical queries waiting")


class _Flight:
    """One upstream resolution that identical misses wait on instead of asking again
    (unbound's mesh, BIND's clients-per-query): fewer queries in flight is also RFC 5452's
    defence against birthday spoofing. Its leader's outcome is shared with every waiter."""

    __slots__ = ("error", "leader", "policy", "stored", "waiters")

    def __init__(self, leader: Query) -> None:
        self.leader = leader
        self.waiters: list[Callable[[], None]] = []
        self.policy: Policy | None = None  #: the policy the answer was stored under
        self.stored: Stored | None = None  #: set when the leader got an answer
        self.error: UpstreamError | None = None  #: set when it failed


def bug_reply(q: Query, verdict: Verdict) -> Reply:
    """SERVFAIL for a query whose resolution raised: a bug must cost one query, not the
    server. Call it from an exception handler: it logs the exception, loudly."""
    log.exception("resolving %s failed", q.qname)
    return Reply(truncate_for(q, build_reply(q, Rcode.SERVFAIL)), ReplyKind.SERVFAIL, verdict)


class ZoneRouter:
    """Picks the upstreams for a name: the most specific forward zone, else the default."""

    def __init__(self, default: Upstream, zones: dict[str, Upstream]) -> None:
        self.default = default
        self.zones = zones

    def upstream_for(self, qname: str) -> Upstream:
        zones = self.zones
        if zones:
            # Zones are plain names: an escaped label's dots are no label boundaries.
            name = plain_tail(qname) if "\\" in qname else qname
            while name:
                upstream = zones.get(name)
                if upstream is not None:
                    return upstream
                dot = name.find(".")
                if dot < 0:
                    break
                name = name[dot + 1 :]
        return self.default


class Resolver:
    def __init__(
        self,
        policy: Policy,
        router: ZoneRouter,
        cache: AnswerCache | None,
        clock: Callable[[], float] = time.monotonic,
        groups: Sequence[UpstreamGroup] = (),
        *,
        stale_ttl: int = 0,
        stale_client_timeout: float = 0.0,
        prefetch_min_hits: int = 0,
        minimal_responses: bool = True,
        max_waiters: int = MAX_WAITERS,
        stats: UpstreamStats | None = None,
    ) -> None:
        self.policy = policy
        self.router = router
        self.cache = cache
        self.clock = clock
        self.groups = tuple(groups)  #: every upstream group, for health checks
        #: TTL of stale answers (RFC 8767); 0: never serve stale
        self.stale_ttl = stale_ttl if cache is not None and cache.stale_max_age > 0 else 0
        #: seconds a query with a stale entry waits for the upstreams; 0: until they fail
        self.stale_client_timeout = stale_client_timeout
        #: hits in an entry's last tenth of life that refresh it early; 0: no prefetch
        self.prefetch_min_hits = prefetch_min_hits
        #: authority records only for negative answers, no additional ones (scrub)
        self.minimal_responses = minimal_responses
        self.max_waiters = max_waiters
        self._coalesced = (stats if stats is not None else UpstreamStats()).coalesced
        self._background: set[asyncio.Task[object]] = set()
        self._flights: dict[Key, _Flight] = {}

    def answer_now(self, q: Query) -> Reply | Verdict:
        """A reply when no network is needed; else the ALLOW verdict to hand to resolve()."""
        policy = self.policy
        cache = self.cache
        # 1. Policy: the client's network picks its lists; outside every network, REFUSED,
        #    so the resolver is never open to the world.
        allow = policy.client_verdict(q.client[0])
        if allow is REFUSE:
            ede = _PROHIBITED if q.edns else b""
            return Reply(build_reply(q, Rcode.REFUSED, ede=ede), ReplyKind.REFUSED, allow)
        # 1b. RD=0 asks what the cache holds, which is how one client learns the names the
        #     others resolve (cache snooping): REFUSED, or from the cache alone if allowed.
        if not q.flags & _RD:
            return self._non_recursive(q, allow)
        # 1c. A zone transfer is an authority's to give, and never over UDP (RFC 5936 4.2):
        #     REFUSED here, as unbound does, rather than an upstream's NOTIMP passed on.
        if _IXFR <= q.qtype <= _AXFR:
            wire = build_reply(q, Rcode.REFUSED, ede=_NO_TRANSFER if q.edns else b"")
            return Reply(wire, ReplyKind.REFUSED, allow)
        # 2. Cache, first when every network enforces the same lists: an entry was allowed
        #    when it was fetched and a reload empties the cache, so a hit needs no list walk.
        probed = cache is not None and policy.uniform
        if probed:
            assert cache is not None
            cached = self._cached(q, allow, cache)
            if cached is not None:
                return cached
        # 3. Blocklists: a blocked name is answered from the policy's mode, never forwarded.
        verdict = policy.judge(allow, q.qname)
        if verdict.action is _BLOCK:
            if probed:
                self._not_a_miss()
            return self._blocked(q, verdict)
        # 4. Cache, when networks differ in their lists: only now is the name allowed here.
        if cache is not None and not policy.uniform:
            cached = self._cached(q, verdict, cache)
            if cached is not None:
                return cached
        return verdict

    def _non_recursive(self, q: Query, allow: Verdict) -> Reply:
        """RD=0: REFUSED with EDE 18, or where the policy says non_recursive: cache, the
        blocked answer or a fresh cache entry; never a new upstream query (nor a prefetch)."""
        assert allow.rule is not None
        ede = _NOT_RECURSIVE
        verdict = allow
        if allow.rule.non_recursive_cache:
            verdict = self.policy.judge(allow, q.qname)
            if verdict.action is _BLOCK:
                return self._blocked(q, verdict)
            if self.cache is not None:
                cached = self._cached(q, verdict, self.cache, prefetch=False)
                if cached is not None:
                    return cached
            ede = _NOT_CACHED
        wire = build_reply(q, Rcode.REFUSED, ede=ede if q.edns else b"")
        return Reply(wire, ReplyKind.REFUSED, verdict)

    def _not_a_miss(self) -> None:
        """Take back the miss the early probe counted: the name is answered without the
        cache, as it would have been before the lists were walked (dnsfilter_cache_misses
        counts queries that need an upstream for want of a fresh entry)."""
        assert self.cache is not None
        self.cache.misses -= 1

    def _cached(
        self, q: Query, verdict: Verdict, cache: AnswerCache, prefetch: bool = True
    ) -> Reply | None:
        """A fresh entry, served with its TTLs counted down; None when there is none."""
        now = self.clock()
        entry = cache.get(CacheKey(q.qname, q.qtype, q.qclass, q.do, q.cd), now)
        if entry is None:
            return None
        # In its last tenth of life a popular entry is refreshed in the background.
        if now >= entry.prefetch_at and self.prefetch_min_hits and prefetch:
            self._late_hit(q, entry)
        # The answer was inspected when it was cached; this client's policy decides.
        if entry.inspection is not None and verdict.rule is not None:
            blocked = self.policy.blocked_answer(verdict.rule, entry.inspection)
            if blocked is not None:
                return self._blocked(q, blocked)
        opt = opt_record(q.do) if q.edns else b""
        wire = entry.reply(q.id, q.flags, q.wire[HEADER_LEN : q.question_end], opt, now, q.do)
        if len(wire) > q.max_size:
            wire = truncate_for(q, wire)
        return _new_tuple(Reply, (wire, _CACHED, verdict))

    def _late_hit(self, q: Query, entry: CacheEntry) -> None:
        """Count a hit near expiry; the prefetch_min_hits-th starts one refresh of the entry."""
        entry.late_hits += 1
        if entry.prefetching or entry.late_hits < self.prefetch_min_hits:
            return
        if len(self._background) >= _MAX_BACKGROUND:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # answer_now called outside the server (tests, explain)
            return
        entry.prefetching = True
        assert self.cache is not None
        self.cache.prefetches += 1
        self._in_background(loop.create_task(self._prefetch(q)))

    async def _prefetch(self, q: Query) -> None:
        try:
            await self._fetch(q, self.policy)
        except UpstreamError as exc:
            log.debug("prefetch of %s failed: %s", q.qname, exc)

    def _in_background(self, task: asyncio.Task[object]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _stale(self, q: Query, verdict: Verdict, entry: CacheEntry) -> Reply:
        """An expired entry with the stale TTL and EDE 3 (RFC 8767), if the policy allows it."""
        if entry.inspection is not None and verdict.rule is not None:
            blocked = self.policy.blocked_answer(verdict.rule, entry.inspection)
            if blocked is not None:
                return self._blocked(q, blocked)
        opt = opt_record(q.do, options=_STALE) if q.edns else b""
        wire = entry.stale_reply(q.id, q.flags, q.question, opt, self.stale_ttl, q.do)
        return Reply(truncate_for(q, wire), ReplyKind.STALE, verdict)

    async def close(self) -> None:
        """Stop background refreshes and close the connections kept to upstreams."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*(group.close() for group in self.groups))

    def _blocked(self, q: Query, verdict: Verdict) -> Reply:
        assert verdict.rule is not None
        wire = verdict.rule.answers.reply(q, verdict.list_name, verdict.mode)
        if len(wire) > q.max_size:  # truncate_for's test, inlined: blocked replies are small
            wire = truncate_for(q, wire)
        return _new_tuple(Reply, (wire, _BLOCKED, verdict))

    def swap_policy(self, policy: Policy) -> None:
        """Put a new policy in force at once; cached inspections belong to the old lists."""
        self.policy = policy
        if self.cache is not None:
            self.cache.clear()

    def start(
        self,
        q: Query,
        verdict: Verdict,
        on_reply: Callable[[Reply], None],
        on_fallback: Callable[[FirstTry | None], None],
    ) -> None:
        """Begin resolving without a task where that is the whole story: no expired entry
        to weigh (serve-stale), and a first server reached over plain UDP
        (UpstreamGroup.start). The reply goes to on_reply; whatever needs more (failover,
        TCP, TLS, stale answers) goes to on_fallback, which must run
        resolve(q, verdict, first) with what was tried."""
        key = CacheKey(q.qname, q.qtype, q.qclass, q.do, q.cd)
        flight = self._flights.get(key)
        if flight is not None:
            self._join(flight, q, verdict, on_reply)
            return
        upstream = self.router.upstream_for(q.qname)
        if type(upstream) is not UpstreamGroup or self._expired_entry(q, self.clock()):
            on_fallback(None)
            return
        policy = self.policy
        flight = self._flights[key] = _Flight(q)

        def done(answer: UpstreamAnswer | None, first: FirstTry | None) -> None:
            if answer is None:
                on_fallback(first)  # resolve(q, ...) leads the flight from here
                return
            try:
                unfinished = unfinished_target(answer.wire, answer.scan) is not None
            except Exception as exc:  # a bug, settled as one: a SERVFAIL, logged
                on_reply(self._settle_started(q, verdict, policy, answer, key, flight, exc))
                return
            if unfinished:
                # The chain needs more upstream queries: a task's work from here.
                chase = self._chase_started(q, verdict, policy, answer, key, flight, on_reply)
                self._in_background(asyncio.get_running_loop().create_task(chase))
                return
            on_reply(self._settle_started(q, verdict, policy, answer, key, flight))

        if not upstream.start(q, done):
            on_fallback(None)

    def _settle_started(
        self,
        q: Query,
        verdict: Verdict,
        policy: Policy,
        answer: UpstreamAnswer,
        key: Key,
        flight: _Flight,
        failure: Exception | None = None,
    ) -> Reply:
        """The reply to a query start() began, from its (finished) upstream answer, or from
        the failure that finishing it met."""
        try:
            if failure is not None:
                raise failure
            flight.stored = stored = self._store(q, policy, answer)
            flight.policy = policy
            reply = self._forwarded(q, verdict, policy, *stored)
        except UpstreamError as exc:
            flight.error = exc
            reply = self._failed(q, verdict, exc, self._expired_entry(q, self.clock()))
        except Exception:
            reply = bug_reply(q, verdict)
        self._land(key, flight)
        return reply

    async def _chase_started(
        self,
        q: Query,
        verdict: Verdict,
        policy: Policy,
        answer: UpstreamAnswer,
        key: Key,
        flight: _Flight,
        on_reply: Callable[[Reply], None],
    ) -> None:
        failure = None
        try:
            answer = await self._chased(q, policy, answer)
        except Exception as exc:
            failure = exc
        on_reply(self._settle_started(q, verdict, policy, answer, key, flight, failure))

    async def _chased(self, q: Query, policy: Policy, answer: UpstreamAnswer) -> UpstreamAnswer:
        """answer with its CNAME/DNAME chain finished: while it ends at a name with nothing
        of the question's type and no negative proof (an authoritative upstream stops at
        its zone's edge), ask for that name where the router sends it and join the answers,
        as a recursive resolver does (RFC 1034 5.3.3). At most MAX_CHASES names, each once.
        A name every network blocks the chain into is not asked for: inspection blocks the
        answer as it stands, and the banned name never reaches an upstream.

        Raises UpstreamError when a target's upstream fails: half a chain is no answer."""
        asked: set[Labels] = set()
        for _ in range(MAX_CHASES):
            target = unfinished_target(answer.wire, answer.scan)
            if target is None or target in asked:
                break
            asked.add(target)
            wire = target_query(q.wire, q.question_end, target, q.do)
            try:
                then_q = parse_query(wire, q.client, q.transport)
            except WireError:  # not a name a query can carry: the answer stands
                break
            if policy.inspects and policy.blocks_every_chain_into(then_q.qname):
                break
            then = await self.router.upstream_for(then_q.qname).forward(then_q)
            wire, scan = joined(answer.wire, then.wire)
            answer = _new_tuple(UpstreamAnswer, (wire, scan, answer.server))
        return answer

    def _expired_entry(self, q: Query, now: float) -> CacheEntry | None:
        """An expired entry for q that may still be served (RFC 8767); None when serve-stale
        is off, or there is none, or it was refilled meanwhile (forward as for any miss)."""
        if not self.stale_ttl:
            return None
        assert self.cache is not None
        stale = self.cache.get_stale(CacheKey(q.qname, q.qtype, q.qclass, q.do, q.cd), now)
        return stale if stale is not None and now >= stale.expires_at else None

    async def resolve(self, q: Query, verdict: Verdict, first: FirstTry | None = None) -> Reply:
        """Answer a query that answer_now could not: forward it and cache the answer, or
        wait for an identical query that is being forwarded already.

        first: the try start() made already, when it did not settle the query."""
        key = CacheKey(q.qname, q.qtype, q.qclass, q.do, q.cd)
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = _Flight(q)
        elif flight.leader is not q:
            return await self._wait(flight, q, verdict)
        try:
            return await self._lead(q, verdict, first, flight)
        finally:
            self._land(key, flight)

    async def _lead(
        self, q: Query, verdict: Verdict, first: FirstTry | None, flight: _Flight
    ) -> Reply:
        policy = self.policy
        # 4. Stale entry (RFC 8767): an expired answer kept for when no upstream answers;
        #    after a failed refresh it is served at once for stale_ttl seconds.
        now = self.clock()
        stale = self._expired_entry(q, now)
        if stale is not None and now < stale.stale_until:
            return self._stale(q, verdict, stale)
        # 5. Forward: a conditional zone's own upstreams, else the default group; then
        #    inspect and cache the answer (_fetch).
        try:
            if stale is not None and self.stale_client_timeout > 0:
                fetched = await self._fetch_or_stale(q, policy, stale, first)
                if fetched is None:
                    return self._stale(q, verdict, stale)
            else:
                fetched = await self._fetch(q, policy, first)
        except UpstreamError as exc:
            flight.error = exc
            return self._failed(q, verdict, exc, stale)
        flight.stored, flight.policy = fetched, policy
        return self._forwarded(q, verdict, policy, *fetched)

    def _failed(
        self, q: Query, verdict: Verdict, exc: UpstreamError, stale: CacheEntry | None
    ) -> Reply:
        """The reply when no usable answer came: the stale entry (served at once for
        stale_ttl seconds from now on), else SERVFAIL saying why."""
        if stale is not None:
            log.debug("stale answer for %s: %s", q.qname, exc)
            stale.stale_until = self.clock() + self.stale_ttl
            return self._stale(q, verdict, stale)
        log.debug("SERVFAIL for %s: %s", q.qname, exc)
        return self._servfail(q, verdict, exc)

    def _servfail(self, q: Query, verdict: Verdict, exc: UpstreamError | None) -> Reply:
        ede = b""
        if q.edns:
            # EDE 0 with the reason for an answer refused on its content, 22 when every
            # upstream stayed silent, else 23: some refused, failed or could not be reached.
            if isinstance(exc, RefusedAnswer):
                ede = ede_option(EdeCode.OTHER, str(exc))
            elif isinstance(exc, UpstreamTimeout):
                ede = _NO_ANSWER
            else:
                ede = _UNREACHABLE
        return Reply(build_reply(q, Rcode.SERVFAIL, ede=ede), ReplyKind.SERVFAIL, verdict)

    # -- Coalescing: misses that wait on an identical one --------------------------------

    def _join(
        self, flight: _Flight, q: Query, verdict: Verdict, on_reply: Callable[[Reply], None]
    ) -> None:
        """Wait, by callback, for flight's outcome; SERVFAIL at once if it has too many."""
        if len(flight.waiters) >= self.max_waiters:
            self._coalesced["refused"] += 1
            on_reply(self._too_many(q, verdict))
            return
        self._coalesced["joined"] += 1

        def wake() -> None:
            try:
                reply = self._settled(q, verdict, flight)
            except Exception:
                reply = bug_reply(q, verdict)
            on_reply(reply)

        flight.waiters.append(wake)

    async def _wait(self, flight: _Flight, q: Query, verdict: Verdict) -> Reply:
        """As _join, for a query resolved by a task (TCP, or a first try that fell back)."""
        if len(flight.waiters) >= self.max_waiters:
            self._coalesced["refused"] += 1
            return self._too_many(q, verdict)
        self._coalesced["joined"] += 1
        landed = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not landed.done():
                landed.set_result(None)

        flight.waiters.append(wake)
        await landed
        return self._settled(q, verdict, flight)

    def _settled(self, q: Query, verdict: Verdict, flight: _Flight) -> Reply:
        """A waiter's own reply from its flight's outcome: the shared answer under its own
        ID, question and EDNS; when there was none, stale as its leader was, or SERVFAIL."""
        if flight.stored is not None:
            assert flight.policy is not None
            return self._forwarded(q, verdict, flight.policy, *flight.stored)
        stale = self._expired_entry(q, self.clock())
        if stale is not None:
            return self._stale(q, verdict, stale)
        return self._servfail(q, verdict, flight.error)

    def _too_many(self, q: Query, verdict: Verdict) -> Reply:
        ede = _TOO_MANY if q.edns else b""
        return Reply(build_reply(q, Rcode.SERVFAIL, ede=ede), ReplyKind.SERVFAIL, verdict)

    def _land(self, key: Key, flight: _Flight) -> None:
        """End flight: later misses start their own, and every waiter gets its reply."""
        if self._flights.get(key) is flight:
            del self._flights[key]
        waiters, flight.waiters = flight.waiters, []
        for wake in waiters:
            try:
                wake()
            except Exception:
                log.exception("answering a query that waited on %s failed", flight.leader.qname)

    def _forwarded(
        self,
        q: Query,
        verdict: Verdict,
        policy: Policy,
        answer: UpstreamAnswer,
        inspection: Inspection | None,
        entry: CacheEntry | None,
        now: float,
    ) -> Reply:
        """The reply to q from its upstream answer, as _store left it."""
        if inspection is not None and verdict.rule is not None:
            blocked = policy.blocked_answer(verdict.rule, inspection)
            if blocked is not None:
                return self._blocked(q, blocked)
        if entry is None:
            entry = make_passthrough(answer.wire, answer.scan, now)
        opt = opt_record(q.do) if q.edns else b""
        wire = entry.reply(q.id, q.flags, q.wire[HEADER_LEN : q.question_end], opt, now, q.do)
        if len(wire) > q.max_size:
            wire = truncate_for(q, wire)
        kind = _MINIMAL if q.qtype == _ANY and is_minimal_any(entry.body) else _FORWARDED
        return _new_tuple(Reply, (wire, kind, verdict))

    async def _fetch(self, q: Query, policy: Policy, first: FirstTry | None = None) -> Stored:
        """Forward q, inspect the answer and cache it: (answer, inspection, entry, time)."""
        upstream = self.router.upstream_for(q.qname)
        if first is None:
            answer = await upstream.forward(q)
        else:  # only an UpstreamGroup makes first tries
            answer = await cast(UpstreamGroup, upstream).forward(q, first)
        if unfinished_target(answer.wire, answer.scan) is not None:
            answer = await self._chased(q, policy, answer)
        return self._store(q, policy, answer)

    def _store(self, q: Query, policy: Policy, answer: UpstreamAnswer) -> Stored:
        """Scrub, inspect and cache an upstream answer: (answer, inspection, entry, time).

        Raises RefusedAnswer for an answer no client may get (a CNAME loop)."""
        # Scrub: only the question's name and its CNAME/DNAME chain, and what the zone that
        # answered says about them, may reach a client or the cache.
        wire, scan = scrub(answer.wire, answer.scan, self.minimal_responses)
        # ANY (RFC 8482): a name that has records gets one synthetic HINFO in their stead;
        # what the upstream says of a name without any (NXDOMAIN, NODATA, a CNAME) stands.
        if q.qtype == _ANY and q.qclass == CLASS_IN:
            wire, scan = minimal_any(wire, scan)
        if scan is not answer.scan:
            answer = _new_tuple(UpstreamAnswer, (wire, scan, answer.server))
        # Inspect the answer: a CNAME into a blocked name, or an address inside a list's
        # networks, blocks it for policies that ask for it.
        inspection = policy.inspect(answer.wire, answer.scan) if policy.inspects else None
        # Cache what may be cached (unless a reload swapped the lists meanwhile); the
        # reply is served from the same entry either way.
        now = self.clock()
        cache = self.cache
        entry = None
        if cache is not None:
            entry = make_entry(answer.wire, answer.scan, now, cache.ttl_policy)
            if entry is not None:
                # Most answers hit no list: keep nothing for them (one object fewer each).
                if inspection is not None and (inspection.cname_bits or inspection.address_bits):
                    entry.inspection = inspection
                if self.policy is policy:
                    cache.put(CacheKey(q.qname, q.qtype, q.qclass, q.do, q.cd), entry)
        return answer, inspection, entry, now

    async def _fetch_or_stale(
        self, q: Query, policy: Policy, stale: CacheEntry, first: FirstTry | None
    ) -> Stored | None:
        """_fetch, or None after stale_client_timeout: the stale entry answers meanwhile and
        the resolution goes on in the background, refreshing the cache when it succeeds."""
        task = asyncio.get_running_loop().create_task(self._fetch(q, policy, first))
        self._in_background(task)  # held (and cancelled by close()) whatever this query does
        waiting = True

        def done(task: asyncio.Task[object]) -> None:
            stale.stale_until = 0.0  # refreshed (or not cacheable): ask again next time
            if task.cancelled():
                return
            exc = task.exception()
            if isinstance(exc, UpstreamError):
                stale.stale_until = self.clock() + self.stale_ttl
            elif exc is not None and not waiting:  # else the query's own handler logs it
                log.error("refreshing %s failed", q.qname, exc_info=exc)

        task.add_done_callback(done)
        try:
            async with asyncio.timeout(self.stale_client_timeout):
                return await asyncio.shield(task)
        except TimeoutError:
            if task.done():  # finished as the timer fired
                return task.result()
        finally:
            waiting = False
        # Until the refresh ends, other queries for the name get the stale answer at once.
        stale.stale_until = math.inf
        return None


def build_resolver(
    config: Config,
    lists: Sequence[BlockList],
    upstream_stats: UpstreamStats | None = None,
) -> Resolver:
    """The resolver for a validated config; upstreams from resolv.conf when none are set."""
    policy = build_policy(config, lists)
    up = config.upstream
    stats = upstream_stats if upstream_stats is not None else UpstreamStats()
    servers = up.servers or _resolv_conf_servers(up.resolv_conf, config.server.listen)
    groups = [UpstreamGroup(servers, up.timeout, up.dead_time, stats=stats)]
    zones: dict[str, Upstream] = {}
    for zone in config.forward_zones:
        group = UpstreamGroup(zone.servers, up.timeout, up.dead_time, stats=stats)
        zones[zone.zone] = group
        groups.append(group)
    c = config.cache
    cache = None
    if c.enabled:
        cache = AnswerCache(
            c.max_entries,
            TtlPolicy(c.min_ttl, c.max_ttl, c.negative_max_ttl),
            stale_max_age=c.stale_max_age if c.serve_stale else 0,
        )
    return Resolver(
        policy,
        ZoneRouter(groups[0], zones),
        cache,
        groups=groups,
        stale_ttl=c.stale_ttl if c.serve_stale else 0,
        stale_client_timeout=c.stale_client_timeout,
        prefetch_min_hits=c.prefetch_min_hits if c.prefetch else 0,
        minimal_responses=config.server.minimal_responses,
        max_waiters=config.server.max_waiters,
        stats=stats,
    )


def _resolv_conf_servers(path: str, listen: Sequence[HostPort]) -> tuple[UpstreamServer, ...]:
    try:
        found = read_resolv_conf(path)
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read ({exc.strerror}); set upstream.servers or --upstream"]
        ) from None
    # Forwarding to ourselves would loop every query until it timed out.
    servers = tuple(UpstreamServer(s) for s in found if s not in listen)
    if not servers:
        raise ConfigError(
            [
                f"{path}: no usable nameserver (none, or only ourselves); "
                "set upstream.servers or --upstream"
            ]
        )
    return servers
