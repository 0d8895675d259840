"""Serve-stale (RFC 8767) and prefetch in the resolver, with a fake upstream and a fake clock.

The upstream is a one-method fake (the Upstream protocol): each test scripts whether it
answers, fails or waits. Time is a variable the test moves; only the client-timeout tests
wait on the event loop, for a few hundredths of a second, and none bounds how long
anything takes except ask()'s 5 s guard against a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from dnslib import QTYPE, RR, DNSRecord

from dnsfilter.config import parse_config
from dnsfilter.datapath.cache import AnswerCache
from dnsfilter.datapath.policy import Verdict, build_policy
from dnsfilter.datapath.resolver import Reply, ReplyKind, Resolver, ZoneRouter
from dnsfilter.datapath.upstream import UpstreamAnswer
from dnsfilter.datapath.wire import EdeCode, Query, Transport, parse_query, scan_response
from dnsfilter.errors import UpstreamError, UpstreamTimeout

NOW = 1000.0
TTL = 100
STALE_TTL = 30
MAX_AGE = 3600

CONFIG = parse_config(
    """
upstream: {servers: ["127.0.0.1:53"]}
networks: {lan: ["127.0.0.0/8"]}
policies: {p: {networks: [lan], lists: []}}
""",
    "cfg.yaml",
    None,
)

Handler = Callable[[Query], Awaitable[bytes]]


class FakeUpstream:
    """Answers through handler (bytes, or an UpstreamError raised); counts calls."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls = 0

    async def forward(self, q: Query) -> UpstreamAnswer:
        self.calls += 1
        wire = await self.handler(q)
        return UpstreamAnswer(wire, scan_response(wire), "fake")


def answer(address: str = "192.0.2.1", ttl: int = TTL) -> Handler:
    async def handler(q: Query) -> bytes:
        reply = DNSRecord.parse(q.wire).reply()
        reply.add_answer(RR(q.qname, QTYPE.A, rdata=RR.fromZone(f". 1 A {address}")[0].rdata))
        reply.rr[0].ttl = ttl
        return bytes(reply.pack())

    return handler


async def fail(q: Query) -> bytes:
    raise UpstreamTimeout("fake: no answer")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def make_resolver(
    upstream: FakeUpstream,
    clock: Clock,
    *,
    stale_ttl: int = STALE_TTL,
    max_age: int = MAX_AGE,
    client_timeout: float = 0.0,
    prefetch_min_hits: int = 0,
) -> Resolver:
    cache = AnswerCache(100, stale_max_age=max_age)
    return Resolver(
        build_policy(CONFIG, []),
        ZoneRouter(upstream, {}),
        cache,
        clock,
        stale_ttl=stale_ttl,
        stale_client_timeout=client_timeout,
        prefetch_min_hits=prefetch_min_hits,
    )


def query(qname: str = "www.example.test", edns: bool = False) -> Query:
    message = dns.message.make_query(qname, "A", use_edns=0 if edns else False)
    return parse_query(message.to_wire(), ("127.0.0.1", 5353), Transport.UDP)


async def ask(resolver: Resolver, q: Query) -> Reply:
    """What the server does: answer_now, then resolve on a miss."""
    result = resolver.answer_now(q)
    if isinstance(result, Reply):
        return result
    assert isinstance(result, Verdict)
    return await asyncio.wait_for(resolver.resolve(q, result), 5)


def ttls(reply: Reply) -> list[int]:
    return [rrset.ttl for rrset in dns.message.from_wire(reply.wire).answer]


def ede_codes(reply: Reply) -> list[int]:
    message = dns.message.from_wire(reply.wire)
    return [o.code for o in message.options if isinstance(o, dns.edns.EDEOption)]


async def settle(resolver: Resolver, timeout: float = 5.0) -> None:
    """Until the background refreshes are done (they need no time, only loop turns)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while resolver._background:
        assert loop.time() < deadline, "background refresh did not finish"
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------
# Stale answers


@pytest.mark.parametrize("edns", [False, True], ids=["no-edns", "edns"])
@pytest.mark.asyncio
async def test_expired_entry_answers_when_upstream_fails(edns: bool) -> None:
    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock)
    assert (await ask(resolver, query(edns=edns))).kind is ReplyKind.FORWARDED
    clock.now = NOW + TTL + 5
    upstream.handler = fail
    reply = await ask(resolver, query(edns=edns))
    assert reply.kind is ReplyKind.STALE
    assert ttls(reply) == [STALE_TTL]
    assert ede_codes(reply) == ([EdeCode.STALE_ANSWER] if edns else [])
    assert dns.message.from_wire(reply.wire).rcode() == dns.rcode.NOERROR
    assert upstream.calls == 2


@pytest.mark.asyncio
async def test_failed_name_is_served_stale_without_asking_for_stale_ttl() -> None:
    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock)
    await ask(resolver, query())
    upstream.handler = fail
    clock.now = NOW + TTL + 1
    assert (await ask(resolver, query())).kind is ReplyKind.STALE
    assert upstream.calls == 2
    clock.now += STALE_TTL - 1
    assert (await ask(resolver, query())).kind is ReplyKind.STALE
    assert upstream.calls == 2, "within stale_ttl of a failure the upstream is not asked"
    clock.now += 1
    upstream.handler = answer("192.0.2.2")
    fresh = await ask(resolver, query())
    assert fresh.kind is ReplyKind.FORWARDED
    assert upstream.calls == 3
    assert ttls(fresh) == [TTL]
    assert (await ask(resolver, query())).kind is ReplyKind.CACHED


@pytest.mark.parametrize(
    ("age", "kind"),
    [
        pytest.param(MAX_AGE - 1, ReplyKind.STALE, id="inside-max-age"),
        pytest.param(MAX_AGE, ReplyKind.SERVFAIL, id="at-max-age"),
    ],
)
@pytest.mark.asyncio
async def test_stale_max_age(age: int, kind: ReplyKind) -> None:
    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock)
    await ask(resolver, query())
    upstream.handler = fail
    clock.now = NOW + TTL + age
    assert (await ask(resolver, query())).kind is kind


@pytest.mark.asyncio
async def test_serve_stale_off_gives_servfail() -> None:
    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock, stale_ttl=0)
    await ask(resolver, query())
    upstream.handler = fail
    clock.now = NOW + TTL + 1
    assert (await ask(resolver, query())).kind is ReplyKind.SERVFAIL


@pytest.mark.asyncio
async def test_no_entry_gives_servfail() -> None:
    resolver = make_resolver(FakeUpstream(fail), Clock())
    assert (await ask(resolver, query())).kind is ReplyKind.SERVFAIL


@pytest.mark.asyncio
async def test_servfail_from_every_upstream_is_a_failure_too() -> None:
    async def servfail(q: Query) -> bytes:
        raise UpstreamError("fake: SERVFAIL")

    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock)
    await ask(resolver, query())
    upstream.handler = servfail
    clock.now = NOW + TTL
    assert (await ask(resolver, query())).kind is ReplyKind.STALE


@pytest.mark.asyncio
async def test_client_timeout_answers_stale_and_refreshes_in_background() -> None:
    release = asyncio.Event()

    async def slow(q: Query) -> bytes:
        await release.wait()
        return await answer("192.0.2.2")(q)

    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock, client_timeout=0.05)
    await ask(resolver, query())
    upstream.handler = slow
    clock.now = NOW + TTL + 1
    reply = await ask(resolver, query())
    assert reply.kind is ReplyKind.STALE
    assert ttls(reply) == [STALE_TTL]
    # While the refresh is under way the stale answer comes at once, not after the client
    # timeout: with that timeout now a minute, waiting it would trip ask()'s 5 s bound.
    resolver.stale_client_timeout = 60.0
    again = await ask(resolver, query())
    assert again.kind is ReplyKind.STALE, "at once while the refresh is under way"
    assert upstream.calls == 2, "no second refresh"
    release.set()
    await settle(resolver)
    refreshed = await ask(resolver, query())
    assert refreshed.kind is ReplyKind.CACHED, "the late answer refreshed the cache"
    assert upstream.calls == 2


@pytest.mark.asyncio
async def test_client_timeout_not_reached_gives_the_fresh_answer() -> None:
    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock, client_timeout=5.0)
    await ask(resolver, query())
    clock.now = NOW + TTL + 1
    upstream.handler = answer("192.0.2.2")
    reply = await ask(resolver, query())
    assert reply.kind is ReplyKind.FORWARDED
    assert not resolver._background


@pytest.mark.asyncio
async def test_background_failure_after_client_timeout_holds_off_retries() -> None:
    release = asyncio.Event()

    async def slow_fail(q: Query) -> bytes:
        await release.wait()
        raise UpstreamTimeout("fake: late failure")

    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock, client_timeout=0.02)
    await ask(resolver, query())
    upstream.handler = slow_fail
    clock.now = NOW + TTL + 1
    assert (await ask(resolver, query())).kind is ReplyKind.STALE
    release.set()
    await settle(resolver)
    assert (await ask(resolver, query())).kind is ReplyKind.STALE
    assert upstream.calls == 2, "the failure started the stale_ttl hold-off"


# ---------------------------------------------------------------------------------------
# Prefetch


@pytest.mark.asyncio
async def test_popular_entry_is_prefetched_once_in_its_last_tenth() -> None:
    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock, prefetch_min_hits=2)
    cache = resolver.cache
    assert cache is not None
    await ask(resolver, query())
    clock.now = NOW + TTL * 0.9 - 0.1
    for _ in range(5):  # before the window: no prefetch however popular
        assert (await ask(resolver, query())).kind is ReplyKind.CACHED
    assert not resolver._background
    clock.now = NOW + TTL * 0.9
    assert (await ask(resolver, query())).kind is ReplyKind.CACHED
    assert not resolver._background, "one late hit is not enough"
    assert (await ask(resolver, query())).kind is ReplyKind.CACHED
    assert len(resolver._background) == 1
    assert (await ask(resolver, query())).kind is ReplyKind.CACHED
    assert len(resolver._background) == 1, "at most one refresh per entry"
    await settle(resolver)
    assert (upstream.calls, cache.prefetches) == (2, 1)
    clock.now = NOW + TTL + 1  # the old entry would have expired by now
    reply = await ask(resolver, query())
    assert reply.kind is ReplyKind.CACHED
    assert ttls(reply) == [int(TTL - (TTL * 0.1 + 1))]


@pytest.mark.asyncio
async def test_failed_prefetch_is_not_repeated_and_entry_expires() -> None:
    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock, prefetch_min_hits=1)
    cache = resolver.cache
    assert cache is not None
    await ask(resolver, query())
    upstream.handler = fail
    clock.now = NOW + TTL * 0.95
    await ask(resolver, query())
    await settle(resolver)
    await ask(resolver, query())
    await settle(resolver)
    assert (upstream.calls, cache.prefetches) == (2, 1)
    clock.now = NOW + TTL + 1
    assert (await ask(resolver, query())).kind is ReplyKind.STALE


@pytest.mark.asyncio
async def test_prefetch_off() -> None:
    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock, prefetch_min_hits=0)
    await ask(resolver, query())
    clock.now = NOW + TTL * 0.99
    for _ in range(5):
        await ask(resolver, query())
    assert not resolver._background
    assert upstream.calls == 1


def test_answer_now_outside_an_event_loop_skips_the_prefetch() -> None:
    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock, prefetch_min_hits=1)
    asyncio.run(ask(resolver, query()))
    clock.now = NOW + TTL * 0.95
    assert isinstance(resolver.answer_now(query()), Reply)
    assert not resolver._background


@pytest.mark.asyncio
async def test_close_cancels_background_refreshes() -> None:
    never = asyncio.Event()

    async def hang(q: Query) -> bytes:
        await never.wait()
        raise AssertionError("unreachable")

    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock, prefetch_min_hits=1)
    await ask(resolver, query())
    upstream.handler = hang
    clock.now = NOW + TTL * 0.95
    await ask(resolver, query())
    (task,) = resolver._background
    await resolver.close()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert task.cancelled()


@pytest.mark.asyncio
@pytest.mark.parametrize(("busy", "prefetched"), [(255, 1), (256, 0)])
async def test_prefetch_waits_while_256_background_tasks_run(busy: int, prefetched: int) -> None:
    """Refreshes are bounded: with _MAX_BACKGROUND (256) tasks already running, a late hit
    starts none (the entry is still served, and refreshed when it expires)."""
    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock, prefetch_min_hits=1)
    cache = resolver.cache
    assert cache is not None
    await ask(resolver, query())
    hold = asyncio.Event()
    for _ in range(busy):
        resolver._in_background(asyncio.get_running_loop().create_task(hold.wait()))
    clock.now = NOW + TTL * 0.9
    assert (await ask(resolver, query())).kind is ReplyKind.CACHED
    assert cache.prefetches == prefetched
    assert len(resolver._background) == busy + prefetched
    hold.set()
    await settle(resolver)
    assert upstream.calls == 1 + prefetched


@pytest.mark.asyncio
async def test_a_stale_answer_keeps_the_clients_do_bit() -> None:
    """RFC 8767 answers carry EDE 3 in an OPT whose DO bit echoes the client's (RFC 3225)."""

    async def fail(q: Query) -> bytes:
        raise UpstreamTimeout("fake: no answer")

    def with_do() -> Query:
        message = dns.message.make_query("www.example.test", "A", want_dnssec=True)
        return parse_query(message.to_wire(), ("127.0.0.1", 5353), Transport.UDP)

    upstream, clock = FakeUpstream(answer()), Clock()
    resolver = make_resolver(upstream, clock)
    await ask(resolver, with_do())
    upstream.handler = fail
    clock.now = NOW + TTL + 1
    reply = await ask(resolver, with_do())
    assert reply.kind is ReplyKind.STALE
    message = dns.message.from_wire(reply.wire)
    assert message.ednsflags & dns.flags.DO
    assert [option.code for option in message.options] == [dns.edns.EDECode.STALE_ANSWER]
