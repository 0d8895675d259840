"""dnsfilter.datapath.resolver: identical misses wait on one upstream query and share its
outcome."""

from __future__ import annotations

import asyncio

import dns.message
import dns.rcode
import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from dnsfilter.config import parse_config
from dnsfilter.datapath.cache import AnswerCache, CacheKey
from dnsfilter.datapath.policy import Action, Verdict, build_policy
from dnsfilter.datapath.resolver import Reply, ReplyKind, Resolver, ZoneRouter
from dnsfilter.datapath.upstream import UpstreamAnswer
from dnsfilter.datapath.wire import Query, Transport, parse_query, scan_response
from dnsfilter.errors import UpstreamTimeout
from dnsfilter.observe.metrics import UpstreamStats

pytestmark = pytest.mark.asyncio

CONFIG = """
networks: {everyone: [10.0.0.0/8]}
policies: {open: {networks: [everyone], lists: []}}
"""


class HeldUpstream:
    """Answers (or fails) only when released, so a test decides when the flight lands."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.fail = fail

    async def forward(self, q: Query) -> UpstreamAnswer:
        self.calls += 1
        await self.release.wait()
        if self.fail:
            raise UpstreamTimeout("held upstream gave up")
        reply = DNSRecord.parse(q.wire).reply()
        reply.add_answer(RR(q.qname, QTYPE.A, rdata=A("192.0.2.5"), ttl=300))
        wire = bytes(reply.pack())
        return UpstreamAnswer(wire, scan_response(wire), "held")


def _resolver(
    upstream: HeldUpstream, clock: list[float], stale_ttl: int = 0, max_waiters: int = 100
) -> Resolver:
    config = parse_config(CONFIG, "coalesce.yaml", None)
    return Resolver(
        build_policy(config, []),
        ZoneRouter(upstream, {}),
        AnswerCache(100, stale_max_age=3600),
        lambda: clock[0],
        stats=UpstreamStats(),
        stale_ttl=stale_ttl,
        max_waiters=max_waiters,
    )


def _query(msg_id: int, edns: bool = False, name: str = "www.example.test") -> Query:
    message = dns.message.make_query(name, "A", use_edns=0 if edns else False)
    message.id = msg_id
    return parse_query(message.to_wire(), (f"10.0.0.{msg_id % 200 + 1}", 5353), Transport.UDP)


async def _resolve_all(
    resolver: Resolver, queries: list[Query], release: asyncio.Event
) -> list[Reply]:
    async def one(q: Query) -> Reply:
        verdict = resolver.answer_now(q)
        assert isinstance(verdict, Verdict)
        return await resolver.resolve(q, verdict)

    tasks = [asyncio.create_task(one(q)) for q in queries]
    for _ in range(5):  # every task reaches its await: the leader upstream, the rest waiting
        await asyncio.sleep(0)
    release.set()
    return await asyncio.gather(*tasks)


async def test_waiters_share_the_answer_under_their_own_id_and_edns() -> None:
    upstream = HeldUpstream()
    stats_resolver = _resolver(upstream, [10.0])
    queries = [_query(100 + n, edns=n % 2 == 1) for n in range(6)]
    replies = await _resolve_all(stats_resolver, queries, upstream.release)
    assert upstream.calls == 1
    for q, reply in zip(queries, replies, strict=True):
        message = dns.message.from_wire(reply.wire)
        assert message.id == q.id
        assert (message.edns >= 0) == q.edns
        assert [rr.to_text() for rrset in message.answer for rr in rrset] == ["192.0.2.5"]
        assert reply.kind is ReplyKind.FORWARDED
    assert stats_resolver._coalesced == {"joined": 5}


async def test_a_failed_leader_fails_its_waiters_with_servfail() -> None:
    upstream = HeldUpstream(fail=True)
    resolver = _resolver(upstream, [10.0])
    replies = await _resolve_all(resolver, [_query(n) for n in range(4)], upstream.release)
    assert upstream.calls == 1
    assert [dns.message.from_wire(r.wire).rcode() for r in replies] == [dns.rcode.SERVFAIL] * 4
    # The flight is over: the next miss asks the upstream again.
    upstream.fail = False
    replies = await _resolve_all(resolver, [_query(9)], upstream.release)
    assert upstream.calls == 2
    assert replies[0].kind is ReplyKind.FORWARDED


async def test_waiters_of_a_failed_refresh_get_the_stale_answer() -> None:
    upstream = HeldUpstream()
    clock = [10.0]
    resolver = _resolver(upstream, clock, stale_ttl=30)
    upstream.release.set()
    await _resolve_all(resolver, [_query(1)], upstream.release)
    assert resolver.cache is not None
    clock[0] += 400  # the entry expired, and is kept for serve-stale
    upstream.release = asyncio.Event()
    upstream.fail = True
    replies = await _resolve_all(resolver, [_query(n) for n in range(3)], upstream.release)
    assert upstream.calls == 2
    assert [r.kind for r in replies] == [ReplyKind.STALE] * 3
    # Each waiter's reply carries its own verdict, as the leader's does.
    assert [r.verdict.action for r in replies] == [Action.ALLOW] * 3


@pytest.mark.parametrize("max_waiters", [1, 3])
async def test_past_max_waiters_a_query_gets_servfail_at_once(max_waiters: int) -> None:
    upstream = HeldUpstream()
    resolver = _resolver(upstream, [10.0], max_waiters=max_waiters)
    replies = await _resolve_all(resolver, [_query(n) for n in range(6)], upstream.release)
    kinds = [r.kind for r in replies]
    assert kinds.count(ReplyKind.FORWARDED) == 1 + max_waiters
    assert kinds.count(ReplyKind.SERVFAIL) == 5 - max_waiters
    assert resolver._coalesced == {"joined": max_waiters, "refused": 5 - max_waiters}


async def test_other_names_and_types_do_not_wait() -> None:
    upstream = HeldUpstream()
    resolver = _resolver(upstream, [10.0])
    queries = [_query(1), _query(2, name="www.Example.TEST"), _query(3, name="mail.example.test")]
    await _resolve_all(resolver, queries, upstream.release)
    assert upstream.calls == 2  # the case of a name is no other name
    assert CacheKey("www.example.test", 1, 1, False, False) == "www.example.test"
