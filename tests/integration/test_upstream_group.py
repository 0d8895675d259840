"""dnsfilter.datapath.upstream.UpstreamGroup: a first try by callbacks (start), then forward(q,
first).

In-process against ScriptedUpstream on loopback: the split between the callback-driven first
UDP try and the coroutine that goes on from it must ask each server exactly what a plain
forward(q) would have asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from dnsfilter.config import UpstreamServer, parse_config, parse_host_port
from dnsfilter.datapath.cache import AnswerCache, TtlPolicy
from dnsfilter.datapath.policy import build_policy
from dnsfilter.datapath.resolver import Resolver, ZoneRouter
from dnsfilter.datapath.upstream import FirstTry, UpstreamAnswer, UpstreamGroup
from dnsfilter.datapath.wire import QType, Query, Transport, make_query, parse_query
from dnsfilter.errors import UpstreamError
from dnsfilter.observe.metrics import UpstreamStats
from tests.fakes import ScriptedUpstream

TIMEOUT = 0.3
pytestmark = pytest.mark.asyncio


@pytest.fixture
def first() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        upstream.add("www.example.test", "A", "192.0.2.1")
        yield upstream


@pytest.fixture
def second() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        upstream.add("www.example.test", "A", "192.0.2.2")
        yield upstream


def _server(upstream: ScriptedUpstream) -> UpstreamServer:
    return UpstreamServer(parse_host_port(upstream.address, 53))


def _query(name: str = "www.example.test") -> Query:
    return parse_query(make_query(name, QType.A, 4321), ("127.0.0.1", 5353), Transport.UDP)


async def _start(group: UpstreamGroup, q: Query) -> tuple[UpstreamAnswer | None, FirstTry | None]:
    outcome: asyncio.Future[tuple[UpstreamAnswer | None, FirstTry | None]]
    outcome = asyncio.get_running_loop().create_future()
    assert group.start(q, lambda answer, tried: outcome.set_result((answer, tried)))
    return await asyncio.wait_for(outcome, 5)


def _address(answer: UpstreamAnswer) -> bytes:
    """The rdata of the answer's first record: which server answered (192.0.2.1 or .2)."""
    record = answer.scan.records[0]
    return answer.wire[record.rdata_start : record.end]


async def test_first_try_answers_without_forward(first: ScriptedUpstream) -> None:
    stats = UpstreamStats()
    group = UpstreamGroup([_server(first)], TIMEOUT, 30, stats=stats)
    answer, tried = await _start(group, _query())
    assert tried is None and answer is not None
    assert _address(answer) == bytes([192, 0, 2, 1])
    assert [c.transport for c in first.calls] == ["udp"]
    assert stats.requests == {(first.address, "NOERROR"): 1}


async def test_truncated_first_try_goes_on_over_tcp_only(first: ScriptedUpstream) -> None:
    first.truncate()
    stats = UpstreamStats()
    group = UpstreamGroup([_server(first)], TIMEOUT, 30, stats=stats)
    q = _query()
    answer, tried = await _start(group, q)
    assert answer is None and tried is not None and tried.failure == ""
    answer = await group.forward(q, tried)
    assert _address(answer) == bytes([192, 0, 2, 1])
    # One UDP query (start) and one TCP query (forward): no second UDP try.
    assert [c.transport for c in first.calls] == ["udp", "tcp"]
    assert stats.requests == {(first.address, "NOERROR"): 1}


async def test_silent_first_server_is_not_asked_again(
    first: ScriptedUpstream, second: ScriptedUpstream
) -> None:
    first.drop()
    stats = UpstreamStats()
    group = UpstreamGroup([_server(first), _server(second)], TIMEOUT, 30, stats=stats)
    q = _query()
    answer, tried = await _start(group, q)
    assert answer is None and tried is not None and "no answer over UDP" in tried.failure
    answer = await group.forward(q, tried)
    assert _address(answer) == bytes([192, 0, 2, 2])
    assert len(first.calls) == 1 and len(second.calls) == 1
    assert stats.requests == {(first.address, "timeout"): 1, (second.address, "NOERROR"): 1}
    # Dead for dead_time: the next query starts with the second server.
    answer, tried = await _start(group, _query())
    assert tried is None and answer is not None and answer.server == second.address


async def test_servfail_first_then_every_server_fails(
    first: ScriptedUpstream, second: ScriptedUpstream
) -> None:
    first.servfail()
    second.drop()
    group = UpstreamGroup([_server(first), _server(second)], TIMEOUT, 30)
    q = _query()
    answer, tried = await _start(group, q)
    assert answer is None and tried is not None
    assert tried.failure == f"{first.address}: SERVFAIL"
    with pytest.raises(UpstreamError) as failed:
        await group.forward(q, tried)
    # Both failures, in the order a plain forward() reports them; each server asked once.
    assert str(failed.value).startswith(f"{first.address}: SERVFAIL; {second.address}: ")
    assert len(first.calls) == 1 and len(second.calls) == 1


async def test_unreachable_first_server_fails_at_once(second: ScriptedUpstream) -> None:
    with ScriptedUpstream() as gone:
        closed = _server(gone)
    group = UpstreamGroup([closed, _server(second)], 5.0, 30)
    q = _query()
    # The ICMP error ends the try, long before the 5 s timeout.
    answer, tried = await asyncio.wait_for(_start(group, q), 2.5)
    assert answer is None and tried is not None and tried.failure
    answer = await group.forward(q, tried)
    assert _address(answer) == bytes([192, 0, 2, 2])


async def test_resolver_starts_by_callbacks_unless_an_expired_entry_waits(
    first: ScriptedUpstream,
) -> None:
    """Serve-stale on (the default): a name with nothing expired in the cache takes the
    callback path; one with an expired entry goes to resolve(), which weighs it."""
    config = parse_config(
        "networks: {lan: [127.0.0.0/8]}\npolicies: {p: {networks: [lan], lists: []}}\n",
        "cfg.yaml",
        None,
    )
    now = [1000.0]
    group = UpstreamGroup([_server(first)], TIMEOUT, 30)
    resolver = Resolver(
        build_policy(config, []),
        ZoneRouter(group, {}),
        AnswerCache(100, TtlPolicy(0, 86400, 3600), stale_max_age=3600),
        clock=lambda: now[0],
        groups=[group],
        stale_ttl=30,
    )

    async def start(q: Query) -> str:
        outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        verdict = resolver.policy.decide("127.0.0.1", q.qname)
        resolver.start(
            q,
            verdict,
            lambda reply: outcome.set_result(reply.kind.value),
            lambda tried: outcome.set_result("fallback"),
        )
        return await asyncio.wait_for(outcome, 5)

    assert await start(_query()) == "forwarded"
    assert len(first.calls) == 1
    now[0] += 301  # the scripted answer's TTL is 300: expired, still within stale_max_age
    assert await start(_query()) == "fallback"
    assert len(first.calls) == 1  # the fallback asked nothing yet: resolve() will
