"""The header bits of every kind of reply, on literal bytes (issue 13).

A resolver sets the header itself, whatever its upstream sent: RA set for every client in a
network (RFC 1035 4.1.1: recursion is available here, even when the upstream is an
authoritative server that clears it), AA never (we are not the authority for anything we
forward or cache), RD and CD copied from the query (RFC 1035 4.1.1, RFC 6840 5.9), the Z
bit clear, and AD only as the upstream set it and only for a client that asked with DO or
AD (RFC 6840 5.7). The same for fresh, cached, prefetched, stale, blocked and synthetic
replies: each test below asks the resolver the same five queries and compares the second
16-bit word of the reply with a literal.

The upstream's answer is literal bytes too: AA, AD and Z set, RA and CD clear, the worst
an authoritative server (or a broken one) can send.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from dnsfilter.config import parse_config
from dnsfilter.datapath.cache import AnswerCache
from dnsfilter.datapath.policy import Verdict, build_policy
from dnsfilter.datapath.resolver import Reply, ReplyKind, Resolver, ZoneRouter
from dnsfilter.datapath.upstream import UpstreamAnswer
from dnsfilter.datapath.wire import Query, Transport, parse_query, scan_response
from dnsfilter.errors import UpstreamTimeout
from dnsfilter.lists.model import BlockList, Category, DomainEntry

QUESTION = bytes.fromhex("03777777076578616d706c650474657374 00 0001 0001".replace(" ", ""))
#: www.example.test A 192.0.2.1, TTL 300; flags 0x8560: QR AA RD Z AD, RA and CD clear.
UPSTREAM_ANSWER = (
    bytes.fromhex("0000 8560 0001 0001 0000 0000".replace(" ", ""))
    + QUESTION
    + bytes.fromhex("c00c 0001 0001 0000012c 0004 c0000201".replace(" ", ""))
)
#: The same with the AD bit clear (flags 0x8540).
UPSTREAM_NO_AD = UPSTREAM_ANSWER[:2] + b"\x85\x40" + UPSTREAM_ANSWER[4:]

#: An OPT record: root owner, payload 1232, version 0, DO set / clear.
OPT_DO = bytes.fromhex("00 0029 04d0 00 00 8000 0000".replace(" ", ""))
OPT_NO_DO = bytes.fromhex("00 0029 04d0 00 00 0000 0000".replace(" ", ""))

#: (id, client flags word, OPT or b"") -> the reply flags word for a NOERROR answer that
#: the upstream validated (AD kept only for DO or AD), and for one it did not.
CASES = [
    pytest.param(0x0100, b"", 0x8180, 0x8180, id="rd"),
    pytest.param(0x0110, b"", 0x8190, 0x8190, id="rd-cd"),
    pytest.param(0x0120, b"", 0x81A0, 0x8180, id="rd-ad"),
    pytest.param(0x0100, OPT_DO, 0x81A0, 0x8180, id="rd-do"),
    pytest.param(0x0100, OPT_NO_DO, 0x8180, 0x8180, id="rd-edns-no-do"),
    pytest.param(0x0130, OPT_DO, 0x81B0, 0x8190, id="rd-cd-ad-do"),
    # The Z bit (0x0040) in a query is not echoed (RFC 1035 4.1.1: must be zero).
    pytest.param(0x0140, b"", 0x8180, 0x8180, id="rd-z"),
]

CONFIG = parse_config(
    """
upstream: {servers: ["127.0.0.1:53"]}
networks: {lan: ["127.0.0.0/8"]}
lists: {apps: {file: apps.yaml}}
policies: {p: {networks: [lan], lists: [apps]}}
""",
    "cfg.yaml",
    None,
)
APPS = BlockList(
    name="apps",
    source="apps.yaml",
    category=Category.SOCIAL,
    domains=(DomainEntry("blocked.test", 1),),
)
NOW = 1000.0
TTL = 300
_ids = itertools.count(1)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class LiteralUpstream:
    """Answers every query with `wire` under the query's question; or fails when wire is None."""

    def __init__(self, wire: bytes | None) -> None:
        self.wire = wire
        self.calls = 0

    async def forward(self, q: Query) -> UpstreamAnswer:
        self.calls += 1
        if self.wire is None:
            raise UpstreamTimeout("literal: no answer")
        wire = self.wire[:12] + q.question + self.wire[12 + len(QUESTION) :]
        return UpstreamAnswer(wire, scan_response(wire), "literal")


def make_query(flags: int, opt: bytes, qname: bytes = b"\x03www\x07example\x04test\x00") -> Query:
    wire = (
        next(_ids).to_bytes(2, "big")
        + flags.to_bytes(2, "big")
        + b"\x00\x01\x00\x00\x00\x00"
        + (b"\x00\x01" if opt else b"\x00\x00")
        + qname
        + b"\x00\x01\x00\x01"
        + opt
    )
    return parse_query(wire, ("127.0.0.1", 5353), Transport.UDP)


def resolver_for(upstream: LiteralUpstream, clock: Clock, **options: int) -> Resolver:
    cache = AnswerCache(100, stale_max_age=3600)
    return Resolver(
        build_policy(CONFIG, [APPS]),
        ZoneRouter(upstream, {}),
        cache,
        clock,
        stale_ttl=options.get("stale_ttl", 30),
        prefetch_min_hits=options.get("prefetch_min_hits", 0),
    )


async def ask(resolver: Resolver, q: Query) -> Reply:
    result = resolver.answer_now(q)
    if isinstance(result, Reply):
        return result
    assert isinstance(result, Verdict)
    return await asyncio.wait_for(resolver.resolve(q, result), 5)


def flags_word(reply: Reply) -> int:
    return int.from_bytes(reply.wire[2:4], "big")


async def settle(resolver: Resolver) -> None:
    while resolver._background:
        await asyncio.wait_for(asyncio.gather(*resolver._background), 5)


@pytest.mark.parametrize(("flags", "opt", "validated", "unvalidated"), CASES)
@pytest.mark.parametrize("upstream_ad", [True, False], ids=["upstream-ad", "upstream-no-ad"])
@pytest.mark.asyncio
async def test_forwarded_then_cached(
    flags: int, opt: bytes, validated: int, unvalidated: int, upstream_ad: bool
) -> None:
    upstream = LiteralUpstream(UPSTREAM_ANSWER if upstream_ad else UPSTREAM_NO_AD)
    resolver = resolver_for(upstream, Clock())
    expected = validated if upstream_ad else unvalidated
    fresh = await ask(resolver, make_query(flags, opt))
    assert fresh.kind is ReplyKind.FORWARDED
    assert f"{flags_word(fresh):#06x}" == f"{expected:#06x}"
    cached = await ask(resolver, make_query(flags, opt))
    assert cached.kind is ReplyKind.CACHED
    assert f"{flags_word(cached):#06x}" == f"{expected:#06x}"
    assert upstream.calls == 1


@pytest.mark.parametrize(("flags", "opt", "validated", "unvalidated"), CASES)
@pytest.mark.asyncio
async def test_stale(flags: int, opt: bytes, validated: int, unvalidated: int) -> None:
    upstream, clock = LiteralUpstream(UPSTREAM_ANSWER), Clock()
    resolver = resolver_for(upstream, clock)
    await ask(resolver, make_query(flags, opt))
    upstream.wire = None
    clock.now = NOW + TTL + 5
    stale = await ask(resolver, make_query(flags, opt))
    assert stale.kind is ReplyKind.STALE
    assert f"{flags_word(stale):#06x}" == f"{validated:#06x}"


@pytest.mark.parametrize(("flags", "opt", "validated", "unvalidated"), CASES)
@pytest.mark.asyncio
async def test_prefetched(flags: int, opt: bytes, validated: int, unvalidated: int) -> None:
    upstream, clock = LiteralUpstream(UPSTREAM_ANSWER), Clock()
    resolver = resolver_for(upstream, clock, prefetch_min_hits=1)
    await ask(resolver, make_query(flags, opt))
    clock.now = NOW + TTL * 0.95
    assert (await ask(resolver, make_query(flags, opt))).kind is ReplyKind.CACHED
    await settle(resolver)
    assert upstream.calls == 2, "the late hit refreshed the entry"
    clock.now = NOW + TTL + 1  # the first entry would have expired: this is the prefetched one
    refreshed = await ask(resolver, make_query(flags, opt))
    assert refreshed.kind is ReplyKind.CACHED
    assert upstream.calls == 2
    assert f"{flags_word(refreshed):#06x}" == f"{validated:#06x}"


#: Replies dnsfilter makes itself: never AA, never AD; RA, RD and CD as for any other.
SYNTHETIC = [
    pytest.param(0x0100, b"", 0x8180, id="rd"),
    pytest.param(0x0110, b"", 0x8190, id="rd-cd"),
    pytest.param(0x0120, b"", 0x8180, id="rd-ad"),
    pytest.param(0x0130, OPT_DO, 0x8190, id="rd-cd-ad-do"),
    pytest.param(0x0140, b"", 0x8180, id="rd-z"),
]


@pytest.mark.parametrize(("flags", "opt", "expected"), SYNTHETIC)
@pytest.mark.asyncio
async def test_blocked(flags: int, opt: bytes, expected: int) -> None:
    upstream = LiteralUpstream(UPSTREAM_ANSWER)
    resolver = resolver_for(upstream, Clock())
    blocked = await ask(resolver, make_query(flags, opt, b"\x07blocked\x04test\x00"))
    assert blocked.kind is ReplyKind.BLOCKED
    assert f"{flags_word(blocked):#06x}" == f"{expected:#06x}"
    assert upstream.calls == 0


@pytest.mark.parametrize(("flags", "opt", "expected"), SYNTHETIC)
@pytest.mark.asyncio
async def test_servfail(flags: int, opt: bytes, expected: int) -> None:
    resolver = resolver_for(LiteralUpstream(None), Clock())
    failed = await ask(resolver, make_query(flags, opt))
    assert failed.kind is ReplyKind.SERVFAIL
    assert f"{flags_word(failed):#06x}" == f"{expected | 2:#06x}"


@pytest.mark.parametrize(("flags", "opt", "expected"), SYNTHETIC)
@pytest.mark.asyncio
async def test_any_minimal(flags: int, opt: bytes, expected: int) -> None:
    resolver = resolver_for(LiteralUpstream(UPSTREAM_ANSWER), Clock())
    wire = make_query(flags, opt).wire
    any_query = parse_query(
        wire[: 12 + len(QUESTION) - 4] + b"\x00\xff\x00\x01" + wire[12 + len(QUESTION) :],
        ("127.0.0.1", 5353),
        Transport.UDP,
    )
    reply = await ask(resolver, any_query)
    assert reply.kind is ReplyKind.MINIMAL
    # The synthetic HINFO stands for the upstream's records: AD as the upstream said it.
    assert f"{flags_word(reply) & ~0x0020:#06x}" == f"{expected:#06x}"


@pytest.mark.parametrize("blocked", [False, True], ids=["allowed", "blocked"])
@pytest.mark.asyncio
async def test_rd0_refused(blocked: bool) -> None:
    """RD=0 (cache snooping) is REFUSED, RA set, RD left clear (issue 17)."""
    upstream = LiteralUpstream(UPSTREAM_ANSWER)
    resolver = resolver_for(upstream, Clock())
    name = b"\x07blocked\x04test\x00" if blocked else QUESTION[:-4]
    reply = await ask(resolver, make_query(0x0000, b"", name))
    assert reply.kind is ReplyKind.REFUSED
    assert f"{flags_word(reply):#06x}" == "0x8085"
    assert upstream.calls == 0


@pytest.mark.parametrize("qtype", [251, 252], ids=["ixfr", "axfr"])
@pytest.mark.parametrize("opt", [b"", OPT_NO_DO], ids=["plain", "edns"])
@pytest.mark.asyncio
async def test_zone_transfer_refused_without_an_upstream_query(qtype: int, opt: bytes) -> None:
    """AXFR and IXFR are REFUSED by the resolver itself, RA set, RD echoed, EDE 21 Not
    Supported for a client with EDNS; the upstream is never asked (issue 13)."""
    upstream = LiteralUpstream(UPSTREAM_ANSWER)
    resolver = resolver_for(upstream, Clock())
    q = make_query(0x0100, opt)
    q = parse_query(
        q.wire[: q.question_end - 4] + qtype.to_bytes(2, "big") + q.wire[q.question_end - 2 :],
        ("127.0.0.1", 5353),
        Transport.UDP,
    )
    reply = await ask(resolver, q)
    assert reply.kind is ReplyKind.REFUSED
    assert f"{flags_word(reply):#06x}" == "0x8185"
    assert upstream.calls == 0
    ede = b"\x00\x0f" + (2 + 34).to_bytes(2, "big") + b"\x00\x15"
    assert (ede + b"a resolver does not transfer zones" in reply.wire) == bool(opt)
