"""dnsfilter.datapath.resolver: the chain's order, and the cache consulted before the lists only
when every network enforces the same lists."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from dnslib import QTYPE, RR, TXT, DNSRecord

from dnsfilter.config import HostPort, UpstreamServer, parse_config
from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.datapath.cache import AnswerCache
from dnsfilter.datapath.policy import Action, DomainTable, Verdict, build_policy
from dnsfilter.datapath.resolver import Reply, ReplyKind, Resolver, ZoneRouter, build_resolver
from dnsfilter.datapath.upstream import FirstTry, UpstreamAnswer, UpstreamGroup
from dnsfilter.datapath.wire import Query, Transport, parse_query, scan_response
from dnsfilter.errors import ConfigError, UpstreamError, UpstreamTimeout
from dnsfilter.lists.model import BlockList, Category, DomainEntry
from dnsfilter.observe.metrics import UpstreamStats

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


def _resolver(config_text: str, upstream: Upstream | CnameUpstream) -> Resolver:
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


# ---------------------------------------------------------------------------------------
# What the mutation run found untested in the chain (scripts/mutation.sh)


class FailingUpstream(Upstream):
    """Upstream, until failing is set: then every query times out."""

    failing = False

    async def forward(self, q: Query) -> UpstreamAnswer:
        if self.failing:
            self.calls += 1
            raise UpstreamTimeout("192.0.2.1:53: timed out")
        return await super().forward(q)


class CnameUpstream:
    """Answers every query with a CNAME to cdn.tok.example (a listed name) and its A."""

    def __init__(self) -> None:
        self.calls = 0

    async def forward(self, q: Query) -> UpstreamAnswer:
        self.calls += 1
        reply = DNSRecord.parse(q.wire).reply()
        reply.add_answer(*RR.fromZone(f"{q.qname}. 300 CNAME cdn.tok.example."))
        reply.add_answer(*RR.fromZone("cdn.tok.example. 300 A 192.0.2.1"))
        wire = bytes(reply.pack())
        return UpstreamAnswer(wire, scan_response(wire), "fake")


async def _reply(resolver: Resolver, q: Query) -> Reply:
    result = resolver.answer_now(q)
    if isinstance(result, Verdict):
        result = await resolver.resolve(q, result)
    assert isinstance(result, Reply)
    return result


@pytest.mark.asyncio
async def test_an_answer_cnamed_into_a_list_is_blocked_fresh_and_from_the_cache() -> None:
    """Staff, whose policy has the list, are blocked on the upstream answer and then on the
    cached one, by the list's name; guests (no lists) get the cached CNAME answer."""
    upstream = CnameUpstream()
    resolver = _resolver(SPLIT, upstream)
    staff = await _reply(resolver, _query(STAFF, "www.example.test"))
    assert staff.kind is ReplyKind.BLOCKED
    assert (staff.verdict.list_name, staff.verdict.entry) == ("apps", "cdn.tok.example")
    assert dns.message.from_wire(staff.wire).answer[0].to_text() == (
        "www.example.test. 60 IN A 0.0.0.0"
    )
    guest = await _reply(resolver, _query(GUEST, "www.example.test"))
    assert guest.kind is ReplyKind.CACHED
    assert dns.message.from_wire(guest.wire).answer[1].to_text() == (
        "cdn.tok.example. 300 IN A 192.0.2.1"
    )
    hit = await _reply(resolver, _query(STAFF, "www.example.test"))
    assert hit.kind is ReplyKind.BLOCKED
    assert (hit.verdict.list_name, hit.verdict.entry) == ("apps", "cdn.tok.example")
    assert hit.wire[2:] == staff.wire[2:]
    assert upstream.calls == 1


@pytest.mark.asyncio
async def test_an_entrys_own_mode_answers_its_names() -> None:
    """A list entry with its own mode (nxdomain) overrides the policy's (null)."""
    config = parse_config(SAME, "chain.yaml", None)
    entries = (DomainEntry("tok.example", 1, mode=BlockMode.NXDOMAIN),)
    apps = BlockList(name="apps", source="apps.yaml", domains=entries)
    resolver = Resolver(
        build_policy(config, [apps]), ZoneRouter(Upstream(), {}), AnswerCache(100), lambda: 50.0
    )
    reply = await _reply(resolver, _query(STAFF))
    assert reply.kind is ReplyKind.BLOCKED
    assert dns.message.from_wire(reply.wire).rcode() == dns.rcode.NXDOMAIN


class SizedUpstream:
    """Answers with one TXT record sized so that the reply is `size` octets long."""

    def __init__(self, size: int) -> None:
        self.size = size

    async def forward(self, q: Query) -> UpstreamAnswer:
        reply = DNSRecord.parse(q.wire).reply()
        rdlen = self.size - len(reply.pack()) - 2 - 10  # owner pointer, fixed fields
        strings = ["x" * 255, "y" * (rdlen - 256 - 1)]  # a length octet before each
        reply.add_answer(RR(q.qname, QTYPE.TXT, ttl=300, rdata=TXT(strings)))
        wire = bytes(reply.pack())
        assert len(wire) == self.size
        return UpstreamAnswer(wire, scan_response(wire), "fake")


@pytest.mark.asyncio
@pytest.mark.parametrize(("size", "truncated"), [(512, False), (513, True)])
async def test_a_forwarded_reply_of_512_octets_fits_udp(size: int, truncated: bool) -> None:
    """512 octets is the limit without EDNS, not past it (the chain's '>' before
    truncate_for is only a shortcut: truncate_for's own '<=' decides)."""
    resolver = Resolver(
        build_policy(parse_config(SAME, "chain.yaml", None), [APPS]),
        ZoneRouter(SizedUpstream(size), {}),
        None,
        lambda: 50.0,
    )
    reply = await _reply(resolver, _query(STAFF, "www.example.test"))
    assert reply.kind is ReplyKind.FORWARDED
    assert bool(dns.message.from_wire(reply.wire).flags & dns.flags.TC) is truncated
    assert len(reply.wire) == (size if not truncated else len(reply.wire))
    assert len(reply.wire) <= 512
    assert len(dns.message.from_wire(reply.wire).answer) == (0 if truncated else 1)


def _rd0_query(client: str, qname: str, edns: bool) -> Query:
    message = dns.message.make_query(qname, "A", use_edns=0 if edns else False)
    message.flags &= ~dns.flags.RD
    return parse_query(message.to_wire(), (client, 5353), Transport.UDP)


@pytest.mark.asyncio
@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
async def test_rd0_from_the_cache_policy(edns: bool) -> None:
    """non_recursive: cache answers RD=0 from the cache, blocks listed names, and refuses
    what is not cached with EDE 18 saying so (with EDNS)."""
    config = parse_config(
        SAME.replace("lists: [apps]}", "lists: [apps], non_recursive: cache}"), "c.yaml", None
    )
    resolver = Resolver(
        build_policy(config, [APPS]), ZoneRouter(Upstream(), {}), AnswerCache(100), lambda: 50.0
    )
    refused = await _reply(resolver, _rd0_query(STAFF, "www.example.test", edns))
    assert refused.kind is ReplyKind.REFUSED
    options = dns.message.from_wire(refused.wire).options
    if edns:
        assert [(o.code, o.text) for o in options] == [
            (dns.edns.EDECode.PROHIBITED, "RD=0 is answered from the cache only; not cached")
        ]
    else:
        assert list(options) == []
    blocked = await _reply(resolver, _rd0_query(STAFF, "www.tok.example", edns))
    assert (blocked.kind, blocked.verdict.list_name) == (ReplyKind.BLOCKED, "apps")
    await _reply(resolver, _query(STAFF, "www.example.test"))
    cached = await _reply(resolver, _rd0_query(STAFF, "www.example.test", edns))
    assert cached.kind is ReplyKind.CACHED
    assert dns.message.from_wire(cached.wire).answer[0].to_text() == (
        "www.example.test. 300 IN A 192.0.2.1"
    )


class HeldGroup:
    """A real UpstreamGroup (Resolver.start takes its callback path only for that exact
    type) whose first try is held: the test settles it with done() when it likes."""

    def __init__(self) -> None:
        self.group = UpstreamGroup([UpstreamServer(HostPort("192.0.2.1", 53))], 1.0, 30)
        self.tries: list[tuple[Query, Callable[[UpstreamAnswer | None, FirstTry | None], None]]]
        self.tries = []
        self.group.start = self._start  # type: ignore[method-assign]

    def _start(
        self, q: Query, done: Callable[[UpstreamAnswer | None, FirstTry | None], None]
    ) -> bool:
        self.tries.append((q, done))
        return True


def _held_resolver(held: HeldGroup) -> Resolver:
    config = parse_config(SAME, "chain.yaml", None)
    return Resolver(
        build_policy(config, [APPS]),
        ZoneRouter(cast(Any, held.group), {}),
        AnswerCache(100),
        lambda: 50.0,
        max_waiters=1,
    )


def _a_answer(q: Query) -> UpstreamAnswer:
    reply = DNSRecord.parse(q.wire).reply()
    reply.add_answer(*RR.fromZone(f"{q.qname}. 300 A 192.0.2.1"))
    wire = bytes(reply.pack())
    return UpstreamAnswer(wire, scan_response(wire), "192.0.2.1:53")


def test_start_answers_by_callback_and_shares_the_answer_with_a_waiter() -> None:
    held = HeldGroup()
    resolver = _held_resolver(held)
    replies: list[tuple[str, Reply]] = []
    fallbacks: list[FirstTry | None] = []
    leader, waiter, third = (_query(STAFF, "www.example.test") for _ in range(3))

    def on_reply(name: str) -> Callable[[Reply], None]:
        return lambda reply: replies.append((name, reply))

    for name, q in (("leader", leader), ("waiter", waiter), ("third", third)):
        verdict = resolver.answer_now(q)
        assert isinstance(verdict, Verdict)
        resolver.start(q, verdict, on_reply(name), fallbacks.append)
    # One try upstream; the waiter joined; past max_waiters (1) the third got SERVFAIL.
    assert [q for q, _ in held.tries] == [leader]
    assert [(n, r.kind) for n, r in replies] == [("third", ReplyKind.SERVFAIL)]
    assert resolver._coalesced == {"joined": 1, "refused": 1}
    held.tries[0][1](_a_answer(leader), None)
    # The flight lands (waking its waiters) before the leader's own reply goes out.
    assert [(n, r.kind) for n, r in replies[1:]] == [
        ("waiter", ReplyKind.FORWARDED),
        ("leader", ReplyKind.FORWARDED),
    ]
    for (_, reply), q in zip(replies[1:], (waiter, leader), strict=True):
        message = dns.message.from_wire(reply.wire)
        assert message.id == q.id
        assert message.answer[0].to_text() == "www.example.test. 300 IN A 192.0.2.1"
        assert reply.verdict.network == "staff"
    assert fallbacks == []
    hit = resolver.answer_now(_query(STAFF, "www.example.test"))
    assert isinstance(hit, Reply) and hit.kind is ReplyKind.CACHED


def test_start_hands_an_unsettled_first_try_to_the_fallback() -> None:
    held = HeldGroup()
    resolver = _held_resolver(held)
    q = _query(STAFF, "www.example.test")
    verdict = resolver.answer_now(q)
    assert isinstance(verdict, Verdict)
    replies: list[Reply] = []
    fallbacks: list[FirstTry | None] = []
    resolver.start(q, verdict, replies.append, fallbacks.append)
    first = FirstTry(held.group.servers[0], 1.0, "192.0.2.1:53: SERVFAIL")
    held.tries[0][1](None, first)
    assert replies == []
    assert fallbacks == [first]


BUILT = """
upstream: {servers: ["192.0.2.53:53"]}
forward_zones: {corp.test: ["192.0.2.54:53"]}
lists: {apps: {file: apps.yaml}}
networks: {staff: [10.1.0.0/16]}
policies: {strict: {networks: [staff], lists: [apps]}}
cache: {serve_stale: SERVE, stale_max_age: 600, stale_ttl: 20}
"""


@pytest.mark.parametrize(
    ("serve_stale", "stale_max_age", "stale_ttl"), [("true", 600, 20), ("false", 0, 0)]
)
def test_build_resolver_wires_the_config_and_the_stats_in(
    serve_stale: str, stale_max_age: int, stale_ttl: int
) -> None:
    config = parse_config(BUILT.replace("SERVE", serve_stale), "built.yaml", None)
    stats = UpstreamStats()
    resolver = build_resolver(config, [APPS], upstream_stats=stats)
    assert resolver.cache is not None
    assert (resolver.cache.stale_max_age, resolver.stale_ttl) == (stale_max_age, stale_ttl)
    assert [str(group) for group in resolver.groups] == ["192.0.2.53:53", "192.0.2.54:53"]
    assert all(group.stats is stats for group in resolver.groups)
    assert resolver._coalesced is stats.coalesced
    assert resolver.router.upstream_for("a.corp.test") is resolver.groups[1]
    assert resolver.router.upstream_for("a.example.test") is resolver.groups[0]


@pytest.mark.asyncio
async def test_a_stale_answer_carries_the_clients_verdict() -> None:
    """Served stale after a failed refresh, and again within stale_ttl without asking."""
    now = [50.0]
    upstream = FailingUpstream()
    resolver = Resolver(
        build_policy(parse_config(SAME, "chain.yaml", None), [APPS]),
        ZoneRouter(upstream, {}),
        AnswerCache(100, stale_max_age=600),
        lambda: now[0],
        stale_ttl=20,
    )
    assert (await _reply(resolver, _query(STAFF, "www.example.test"))).kind is ReplyKind.FORWARDED
    now[0] += 400
    upstream.failing = True
    for _ in range(2):
        reply = await _reply(resolver, _query(GUEST, "www.example.test"))
        assert reply.kind is ReplyKind.STALE
        assert reply.verdict.network == "guests"
        assert dns.message.from_wire(reply.wire).answer[0].ttl == 20
    assert upstream.calls == 2


class RaisingUpstream:
    def __init__(self, error: UpstreamError) -> None:
        self.error = error

    async def forward(self, q: Query) -> UpstreamAnswer:
        raise self.error


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("error", "code", "text"),
    [
        pytest.param(
            UpstreamTimeout("192.0.2.1:53: timed out"),
            dns.edns.EDECode.NO_REACHABLE_AUTHORITY,
            "no upstream answered in time",
            id="timeout",
        ),
        pytest.param(
            UpstreamError("192.0.2.1:53: REFUSED"),
            dns.edns.EDECode.NETWORK_ERROR,
            "no upstream answered",
            id="refused",
        ),
    ],
)
@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
async def test_servfail_says_why_with_edns(
    error: UpstreamError, code: dns.edns.EDECode, text: str, edns: bool
) -> None:
    resolver = Resolver(
        build_policy(parse_config(SAME, "chain.yaml", None), [APPS]),
        ZoneRouter(RaisingUpstream(error), {}),
        AnswerCache(100),
        lambda: 50.0,
    )
    wire = dns.message.make_query("www.example.test", "A", use_edns=0 if edns else False)
    reply = await _reply(resolver, parse_query(wire.to_wire(), (STAFF, 5353), Transport.UDP))
    assert reply.kind is ReplyKind.SERVFAIL
    message = dns.message.from_wire(reply.wire)
    assert message.rcode() == dns.rcode.SERVFAIL
    options = [(o.code, o.text) for o in message.options]
    assert options == ([(code, text)] if edns else [])


RESOLV = """
upstream: {resolv_conf: PATH}
server: {listen: ["127.0.0.1:53"]}
lists: {apps: {file: apps.yaml}}
networks: {staff: [10.1.0.0/16]}
policies: {strict: {networks: [staff], lists: [apps]}}
"""


def test_without_servers_the_upstreams_come_from_resolv_conf_but_never_ourselves(
    tmp_path: Path,
) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 127.0.0.1\nnameserver 192.0.2.7\nsearch example.test\n")
    config = parse_config(RESOLV.replace("PATH", str(path)), "r.yaml", None)
    assert [str(group) for group in build_resolver(config, [APPS]).groups] == ["192.0.2.7:53"]
    path.write_text("nameserver 127.0.0.1\n")
    with pytest.raises(ConfigError) as only_us:
        build_resolver(config, [APPS])
    assert only_us.value.problems == [
        f"{path}: no usable nameserver (none, or only ourselves); "
        "set upstream.servers or --upstream"
    ]
    path.unlink()
    with pytest.raises(ConfigError) as missing:
        build_resolver(config, [APPS])
    assert missing.value.problems == [
        f"{path}: cannot read (No such file or directory); set upstream.servers or --upstream"
    ]


def test_a_bug_while_storing_an_answer_costs_one_servfail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An answer that breaks _store (here: no scan) is a bug: logged, and SERVFAIL."""
    held = HeldGroup()
    resolver = _held_resolver(held)
    q = _query(STAFF, "www.example.test")
    verdict = resolver.answer_now(q)
    assert isinstance(verdict, Verdict)
    replies: list[Reply] = []
    resolver.start(q, verdict, replies.append, lambda first: None)
    broken = UpstreamAnswer(_a_answer(q).wire, cast(Any, None), "192.0.2.1:53")
    held.tries[0][1](broken, None)
    assert [r.kind for r in replies] == [ReplyKind.SERVFAIL]
    message = dns.message.from_wire(replies[0].wire)
    assert (message.id, message.rcode()) == (q.id, dns.rcode.SERVFAIL)
    assert message.question[0].to_text() == "www.example.test. IN A"
    assert [r.getMessage() for r in caplog.records] == ["resolving www.example.test failed"]


@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
def test_a_client_outside_every_network_is_refused_with_ede_18(edns: bool) -> None:
    """REFUSED says why with EDNS (EDE 18, prohibited); without EDNS it carries no OPT."""
    resolver = _resolver(SAME, Upstream())
    wire = dns.message.make_query("www.example.test", "A", use_edns=0 if edns else False)
    q = parse_query(wire.to_wire(), (OUTSIDER, 5353), Transport.UDP)
    reply = resolver.answer_now(q)
    assert isinstance(reply, Reply) and reply.kind is ReplyKind.REFUSED
    message = dns.message.from_wire(reply.wire)
    assert message.rcode() == dns.rcode.REFUSED
    if edns:
        assert [(o.code, o.text) for o in message.options] == [
            (dns.edns.EDECode.PROHIBITED, "client is not in a configured network")
        ]
    else:
        assert message.edns == -1


@pytest.mark.asyncio
async def test_build_resolver_caps_negative_answers_at_negative_max_ttl() -> None:
    """cache.negative_max_ttl reaches the cache: an NXDOMAIN with a day-long SOA is kept
    (and counted down) from the cap, not from the SOA."""
    config = parse_config(
        BUILT.replace("SERVE", "false").replace("stale_ttl: 20}", "negative_max_ttl: 30}"),
        "built.yaml",
        None,
    )
    resolver = build_resolver(config, [APPS])
    q = _query(STAFF, "gone.example.test")
    reply = DNSRecord.parse(q.wire).reply()
    reply.header.rcode = 3
    soa = "example.test. 86400 IN SOA ns.example.test. h.example.test. 1 2 3 4 86400"
    reply.add_auth(RR.fromZone(soa)[0])
    wire = bytes(reply.pack())

    async def forward(query: Query) -> UpstreamAnswer:
        return UpstreamAnswer(wire, scan_response(wire), "fake")

    resolver.router = ZoneRouter(cast(Any, type("U", (), {"forward": staticmethod(forward)})), {})
    verdict = resolver.answer_now(q)
    assert isinstance(verdict, Verdict)
    first = await resolver.resolve(q, verdict)
    assert dns.message.from_wire(first.wire).authority[0].ttl == 30


class ChainEndUpstream:
    """An authority that stops at its zone's edge: a CNAME to web.cdn.test and nothing
    more; or, for cdn.test names, their A. Keeps every query it is asked."""

    def __init__(self) -> None:
        self.asked: list[Query] = []

    async def forward(self, q: Query) -> UpstreamAnswer:
        self.asked.append(q)
        reply = DNSRecord.parse(q.wire).reply()
        if q.qname.endswith(".cdn.test"):
            reply.add_answer(*RR.fromZone(f"{q.qname}. 300 A 192.0.2.77"))
        else:
            reply.add_answer(*RR.fromZone(f"{q.qname}. 300 CNAME web.cdn.test."))
        wire = bytes(reply.pack())
        return UpstreamAnswer(wire, scan_response(wire), "fake")


@pytest.mark.asyncio
@pytest.mark.parametrize("do", [False, True], ids=["no-do", "do"])
async def test_the_chase_asks_for_the_target_where_the_router_sends_it_with_the_clients_do(
    do: bool,
) -> None:
    office, cdn = ChainEndUpstream(), ChainEndUpstream()
    resolver = Resolver(
        build_policy(parse_config(SAME, "chain.yaml", None), [APPS]),
        ZoneRouter(office, {"cdn.test": cdn}),
        AnswerCache(100),
        lambda: 50.0,
    )
    wire = dns.message.make_query("www.office.test", "A", want_dnssec=do).to_wire()
    reply = await _reply(resolver, parse_query(wire, (STAFF, 5353), Transport.UDP))
    assert [rrset.to_text() for rrset in dns.message.from_wire(reply.wire).answer] == [
        "www.office.test. 300 IN CNAME web.cdn.test.",
        "web.cdn.test. 300 IN A 192.0.2.77",
    ]
    assert [(q.qname, q.do) for q in office.asked] == [("www.office.test", do)]
    assert [(q.qname, q.qtype, q.do) for q in cdn.asked] == [("web.cdn.test", 1, do)]


@pytest.mark.asyncio
async def test_resolve_goes_on_from_the_first_try_start_handed_over() -> None:
    """The fallback's resolve(q, verdict, first) hands the tried server to the group, which
    fails over from there, and the answer is forwarded and cached."""
    held = HeldGroup()
    resolver = _held_resolver(held)
    q = _query(STAFF, "www.example.test")
    verdict = resolver.answer_now(q)
    assert isinstance(verdict, Verdict)
    fallbacks: list[FirstTry | None] = []
    resolver.start(q, verdict, lambda reply: None, fallbacks.append)
    first = FirstTry(held.group.servers[0], 1.0, "192.0.2.1:53: SERVFAIL")
    held.tries[0][1](None, first)
    handed: list[FirstTry | None] = []

    async def forward(q: Query, first: FirstTry | None = None) -> UpstreamAnswer:
        handed.append(first)
        return _a_answer(q)

    held.group.forward = forward  # type: ignore[method-assign]
    reply = await resolver.resolve(q, verdict, fallbacks[0])
    assert reply.kind is ReplyKind.FORWARDED
    assert handed == [first]
    hit = resolver.answer_now(_query(STAFF, "www.example.test"))
    assert isinstance(hit, Reply) and hit.kind is ReplyKind.CACHED


@pytest.mark.asyncio
async def test_a_chain_start_left_unfinished_is_chased_in_a_task_and_answered_by_callback() -> None:
    held = HeldGroup()
    cdn = ChainEndUpstream()
    resolver = Resolver(
        build_policy(parse_config(SAME, "chain.yaml", None), [APPS]),
        ZoneRouter(cast(Any, held.group), {"cdn.test": cdn}),
        AnswerCache(100),
        lambda: 50.0,
    )
    q = _query(STAFF, "www.office.test")
    verdict = resolver.answer_now(q)
    assert isinstance(verdict, Verdict)
    replies: list[Reply] = []
    fallbacks: list[FirstTry | None] = []
    resolver.start(q, verdict, replies.append, fallbacks.append)
    reply = DNSRecord.parse(q.wire).reply()
    reply.add_answer(*RR.fromZone("www.office.test. 300 CNAME web.cdn.test."))
    wire = bytes(reply.pack())
    held.tries[0][1](UpstreamAnswer(wire, scan_response(wire), "192.0.2.1:53"), None)
    assert replies == []  # the chase needs another query: a task's work
    while resolver._background:
        await asyncio.gather(*resolver._background)
    assert [r.kind for r in replies] == [ReplyKind.FORWARDED]
    assert [rrset.to_text() for rrset in dns.message.from_wire(replies[0].wire).answer] == [
        "www.office.test. 300 IN CNAME web.cdn.test.",
        "web.cdn.test. 300 IN A 192.0.2.77",
    ]
    assert [x.qname for x in cdn.asked] == ["web.cdn.test"]
    assert fallbacks == []


class ReferralStyleUpstream(Upstream):
    """Answers with its zone's NS in authority and their addresses in additional."""

    async def forward(self, q: Query) -> UpstreamAnswer:
        self.calls += 1
        reply = DNSRecord.parse(q.wire).reply()
        reply.add_answer(*RR.fromZone(f"{q.qname}. 300 A 192.0.2.1"))
        reply.add_auth(*RR.fromZone("example.test. 300 NS ns.example.test."))
        reply.add_ar(*RR.fromZone("ns.example.test. 300 A 192.0.2.53"))
        wire = bytes(reply.pack())
        return UpstreamAnswer(wire, scan_response(wire), "fake")


@pytest.mark.asyncio
async def test_responses_are_minimal_unless_configured_otherwise() -> None:
    """A Resolver's default is minimal_responses: the answer only, no NS or glue."""
    reply = await _reply(
        _resolver(SAME, ReferralStyleUpstream()), _query(STAFF, "www.example.test")
    )
    message = dns.message.from_wire(reply.wire)
    assert [rrset.to_text() for rrset in message.answer] == ["www.example.test. 300 IN A 192.0.2.1"]
    assert (message.authority, message.additional) == ([], [])


@pytest.mark.asyncio
async def test_a_servfail_carries_the_clients_verdict() -> None:
    """Metrics and the audit log count a SERVFAIL under the client's network."""
    upstream = FailingUpstream()
    upstream.failing = True
    reply = await _reply(_resolver(SAME, upstream), _query(GUEST, "www.example.test"))
    assert reply.kind is ReplyKind.SERVFAIL
    assert reply.verdict.network == "guests"
