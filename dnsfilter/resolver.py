"""The resolution chain: the one place that fixes the order of the stages.

`answer_now` runs synchronously inside the datagram callback and answers everything that
needs no network: refused clients, blocked names, cache hits. Only a miss reaches the
asynchronous `resolve`, which forwards, caches and answers.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from dnsfilter.cache import AnswerCache, CacheKey, TtlPolicy, make_entry, make_passthrough
from dnsfilter.config import Config, HostPort, UpstreamServer, read_resolv_conf
from dnsfilter.errors import ConfigError, UpstreamError
from dnsfilter.lists.model import BlockList
from dnsfilter.metrics import UpstreamStats
from dnsfilter.policy import Action, Policy, Verdict, build_policy
from dnsfilter.upstream import Upstream, UpstreamGroup
from dnsfilter.wire import EdeCode, Query, Rcode, build_reply, ede_option, opt_record, truncate_for

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


class Reply(NamedTuple):
    wire: bytes
    kind: ReplyKind
    verdict: Verdict  #: the policy's decision: network, and the list of a block


_PROHIBITED = ede_option(EdeCode.PROHIBITED, "client is not in a configured network")
_UNREACHABLE = ede_option(EdeCode.NETWORK_ERROR, "no upstream answered")


class ZoneRouter:
    """Picks the upstreams for a name: the most specific forward zone, else the default."""

    def __init__(self, default: Upstream, zones: dict[str, Upstream]) -> None:
        self.default = default
        self.zones = zones

    def upstream_for(self, qname: str) -> Upstream:
        zones = self.zones
        if zones:
            name = qname
            while True:
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
    ) -> None:
        self.policy = policy
        self.router = router
        self.cache = cache
        self.clock = clock
        self.groups = tuple(groups)  #: every upstream group, for health checks

    def answer_now(self, q: Query) -> Reply | Verdict:
        """A reply when no network is needed; else the ALLOW verdict to hand to resolve()."""
        # 1. Policy: the client's network picks its lists; outside every network, REFUSED,
        #    so the resolver is never open to the world.
        verdict = self.policy.decide(q.client[0], q.qname)
        if verdict.action is Action.REFUSE:
            ede = _PROHIBITED if q.edns else b""
            return Reply(build_reply(q, Rcode.REFUSED, ede=ede), ReplyKind.REFUSED, verdict)
        # 2. Blocklists: a blocked name is answered from the policy's mode, never forwarded.
        if verdict.action is Action.BLOCK:
            return self._blocked(q, verdict)
        # 3. Cache: a fresh entry is served with its TTLs counted down.
        cache = self.cache
        if cache is not None:
            entry = cache.get(CacheKey(q.qname, q.qtype, q.qclass, q.do, q.cd), self.clock())
            if entry is not None:
                # The answer was inspected when it was cached; this client's policy decides.
                if entry.inspection is not None and verdict.rule is not None:
                    blocked = self.policy.blocked_answer(verdict.rule, entry.inspection)
                    if blocked is not None:
                        return self._blocked(q, blocked)
                opt = opt_record(q.do) if q.edns else b""
                wire = entry.reply(q.id, q.flags, q.question, opt, self.clock())
                return Reply(truncate_for(q, wire), ReplyKind.CACHED, verdict)
        return verdict

    def _blocked(self, q: Query, verdict: Verdict) -> Reply:
        assert verdict.rule is not None
        wire = verdict.rule.answers.reply(q, verdict.list_name, verdict.mode)
        return Reply(truncate_for(q, wire), ReplyKind.BLOCKED, verdict)

    def swap_policy(self, policy: Policy) -> None:
        """Put a new policy in force at once; cached inspections belong to the old lists."""
        self.policy = policy
        if self.cache is not None:
            self.cache.clear()

    async def resolve(self, q: Query, verdict: Verdict) -> Reply:
        """Answer a query that answer_now could not: forward it and cache the answer."""
        policy = self.policy
        # 4. Forward: a conditional zone's own upstreams, else the default group.
        try:
            answer = await self.router.upstream_for(q.qname).forward(q)
        except UpstreamError as exc:
            log.debug("SERVFAIL for %s: %s", q.qname, exc)
            ede = _UNREACHABLE if q.edns else b""
            return Reply(build_reply(q, Rcode.SERVFAIL, ede=ede), ReplyKind.SERVFAIL, verdict)
        # 5. Inspect the answer: a CNAME into a blocked name, or an address inside a
        #    list's networks, blocks it for policies that ask for it.
        inspection = policy.inspect(answer.wire, answer.scan) if policy.inspects else None
        # 6. Cache what may be cached (unless a reload swapped the lists meanwhile); the
        #    reply is served from the same entry either way.
        now = self.clock()
        cache = self.cache
        entry = None
        if cache is not None:
            entry = make_entry(answer.wire, answer.scan, now, cache.ttl_policy)
            if entry is not None:
                entry.inspection = inspection
                if self.policy is policy:
                    cache.put(CacheKey(q.qname, q.qtype, q.qclass, q.do, q.cd), entry)
        if inspection is not None and verdict.rule is not None:
            blocked = policy.blocked_answer(verdict.rule, inspection)
            if blocked is not None:
                return self._blocked(q, blocked)
        if entry is None:
            entry = make_passthrough(answer.wire, answer.scan, now)
        opt = opt_record(q.do) if q.edns else b""
        wire = entry.reply(q.id, q.flags, q.question, opt, now)
        return Reply(truncate_for(q, wire), ReplyKind.FORWARDED, verdict)


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
    cache = None
    if config.cache.enabled:
        c = config.cache
        cache = AnswerCache(c.max_entries, TtlPolicy(c.min_ttl, c.max_ttl, c.negative_max_ttl))
    return Resolver(policy, ZoneRouter(groups[0], zones), cache, groups=groups)


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
