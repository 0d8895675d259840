"""dnsfilter.resolver: the chain's order, and the cache consulted before the lists only
when every network enforces the same lists."""

from __future__ import annotations

import dns.message
import pytest
from dnslib import QTYPE, RR, DNSRecord

from dnsfilter.cache import AnswerCache
from dnsfilter.config import parse_config
from dnsfilter.lists.model import BlockList, Category, DomainEntry
from dnsfilter.policy import Action, DomainTable, Verdict, build_policy
from dnsfilter.resolver import Reply, ReplyKind, Resolver, ZoneRouter
from dnsfilter.upstream import UpstreamAnswer
from dnsfilter.wire import Query, Transport, parse_query, scan_response

APPS = BlockList(
    name="apps",
    source="apps.yaml",
    category=Category.SOCIAL,
    domains=(DomainEntry("tok.example", 1),),
)

SPLIT = """
lists: {apps: {file: apps.yaml}}
networks:
  staff: [10.1.0.0/16]
  guests: [10.2.0.0/16]
policies:
  strict: {networks: [staff], lists: [apps]}
  open: {networks: [guests], lists: []}
"""
SAME = """
lists: {apps: {file: apps.yaml}}
networks:
  staff: [10.1.0.0/16]
  guests: [10.2.0.0/16]
policies:
  strict: {networks: [staff, guests], lists: [apps]}
"""
STAFF, GUEST, OUTSIDER = "10.1.0.5", "10.2.0.5", "192.0.2.9"


class Upstream:
    """Answers every A query with 192.0.2.1 for 300 s; counts the queries."""

    def __init__(self) -> None:
        self.calls = 0

    async def forward(self, q: Query) -> UpstreamAnswer:
        self.calls += 1
        reply = DNSRecord.parse(q.wire).reply()
        rdata = RR.fromZone(". 300 A 192.0.2.1")[0].rdata
        reply.add_answer(RR(q.qname, QTYPE.A, ttl=300, rdata=rdata))
        wire = bytes(reply.pack())
        return UpstreamAnswer(wire, scan_response(wire), "fake")


def _resolver(config_text: str, upstream: Upstream) -> Resolver:
    config = parse_config(config_text, "chain.yaml", None)
    return Resolver(
        build_policy(config, [APPS]), ZoneRouter(upstream, {}), AnswerCache(100), lambda: 50.0
    )


def _query(client: str, qname: str = "www.tok.example") -> Query:
    wire = dns.message.make_query(qname, "A", use_edns=False).to_wire()
    return parse_query(wire, (client, 5353), Transport.UDP)


async def _answer(resolver: Resolver, q: Query) -> ReplyKind:
    result = resolver.answer_now(q)
    if isinstance(result, Verdict):
        assert result.action is Action.ALLOW
        result = await resolver.resolve(q, result)
    assert isinstance(result, Reply)
    return result.kind


@pytest.mark.asyncio
async def test_a_name_cached_for_one_network_stays_blocked_for_another() -> None:
    upstream = Upstream()
    resolver = _resolver(SPLIT, upstream)
    assert not resolver.policy.uniform
    assert await _answer(resolver, _query(GUEST)) is ReplyKind.FORWARDED
    assert await _answer(resolver, _query(GUEST)) is ReplyKind.CACHED
    assert await _answer(resolver, _query(STAFF)) is ReplyKind.BLOCKED
    assert await _answer(resolver, _query(OUTSIDER)) is ReplyKind.REFUSED
    assert upstream.calls == 1


@pytest.mark.asyncio
async def test_with_the_same_lists_everywhere_hits_skip_the_lists() -> None:
    upstream = Upstream()
    resolver = _resolver(SAME, upstream)
    assert resolver.policy.uniform
    assert await _answer(resolver, _query(STAFF, "www.example.test")) is ReplyKind.FORWARDED
    assert await _answer(resolver, _query(GUEST, "www.example.test")) is ReplyKind.CACHED
    assert await _answer(resolver, _query(GUEST)) is ReplyKind.BLOCKED
    assert await _answer(resolver, _query(OUTSIDER, "www.example.test")) is ReplyKind.REFUSED
    # A reload empties the cache, so an entry from before can never outlive a new block.
    resolver.swap_policy(resolver.policy)
    assert await _answer(resolver, _query(STAFF, "www.example.test")) is ReplyKind.FORWARDED
    assert upstream.calls == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("config_text", "walks"), [(SAME, 0), (SPLIT, 1)], ids=["same-lists", "lists-per-network"]
)
async def test_a_cache_hit_walks_the_lists_only_when_networks_differ(
    config_text: str, walks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The early probe is what saves the list walk: with the same lists everywhere a hit is
    answered before DomainTable.match runs; with lists per network it runs once, first."""
    walked: list[str] = []
    match = DomainTable.match

    def counting_match(table: DomainTable, qname: str, mask: int) -> tuple[int, str] | None:
        walked.append(qname)
        return match(table, qname, mask)

    monkeypatch.setattr(DomainTable, "match", counting_match)
    upstream = Upstream()
    resolver = _resolver(config_text, upstream)
    cache = resolver.cache
    assert cache is not None
    assert await _answer(resolver, _query(STAFF, "www.example.test")) is ReplyKind.FORWARDED
    assert walked == ["www.example.test"]
    walked.clear()
    hit = resolver.answer_now(_query(STAFF, "www.example.test"))
    assert isinstance(hit, Reply) and hit.kind is ReplyKind.CACHED
    assert hit.verdict.action is Action.ALLOW and hit.verdict.network == "staff"
    assert walked == ["www.example.test"] * walks
    assert (cache.hits, cache.misses, upstream.calls) == (1, 1, 1)


@pytest.mark.asyncio
async def test_cached_hit_carries_the_clients_network() -> None:
    resolver = _resolver(SAME, Upstream())
    await _answer(resolver, _query(STAFF, "www.example.test"))
    hit = resolver.answer_now(_query(GUEST, "www.example.test"))
    assert isinstance(hit, Reply) and hit.kind is ReplyKind.CACHED
    assert hit.verdict.network == "guests"


@pytest.mark.asyncio
@pytest.mark.parametrize("config_text", [SAME, SPLIT], ids=["same-lists", "lists-per-network"])
async def test_cache_counts_only_what_it_could_have_answered(config_text: str) -> None:
    """Blocked queries never reach the cache in either order: no hit, no miss."""
    resolver = _resolver(config_text, Upstream())
    cache = resolver.cache
    assert cache is not None
    await _answer(resolver, _query(STAFF))  # blocked
    assert (cache.hits, cache.misses) == (0, 0)
    await _answer(resolver, _query(STAFF, "www.example.test"))  # a miss, then forwarded
    await _answer(resolver, _query(STAFF, "www.example.test"))  # a hit
    assert (cache.hits, cache.misses) == (1, 1)
