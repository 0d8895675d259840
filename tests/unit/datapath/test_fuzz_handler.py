"""Fuzz target for the whole datagram path: QueryHandler.handle, then Resolver.resolve with an
upstream that answers with fuzzed responses. No sockets: the client address is a value and
the upstream a one-method fake.

The invariants: handle() never raises; a reply it sends carries the query's ID with QR set;
resolve() never raises, whatever (well-formed enough to pass scan_response) answer comes back,
and its reply echoes the question. The handler's policy blocks a list (with CNAME and answer
address inspection), has a cache, and limits clients, so every stage sees the fuzz.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsfilter.config import RateLimitConfig, ServerConfig, parse_config
from dnsfilter.datapath.cache import AnswerCache
from dnsfilter.datapath.policy import Verdict, build_policy
from dnsfilter.datapath.resolver import Reply, Resolver, ZoneRouter
from dnsfilter.datapath.server import QueryHandler
from dnsfilter.datapath.upstream import UpstreamAnswer
from dnsfilter.datapath.wire import HEADER_LEN, Query, Transport, scan_response
from dnsfilter.errors import FormatError, UpstreamError
from dnsfilter.lists.model import BlockList, Category, DomainEntry, NetworkEntry
from dnsfilter.observe.metrics import QueryStats
from tests import dnsfuzz
from tests.unit.datapath.test_fuzz_wire import FUZZ, body, messages

CONFIG = parse_config(
    """
upstream: {servers: ["127.0.0.1:53"]}
networks:
  lan: ["192.0.2.0/24", "2001:db8::/32"]
  strict: ["198.51.100.0/24"]
lists: {apps: {file: apps.txt}}
policies:
  p: {networks: [lan], lists: [apps]}
  q: {networks: [strict], lists: [apps], mode: nxdomain}
""",
    "cfg.yaml",
    None,
)
APPS = BlockList(
    name="apps",
    source="apps.txt",
    category=Category.SOCIAL,
    domains=(DomainEntry("banned.example.test", 1), DomainEntry("f", 2)),
    networks=(NetworkEntry(ipaddress.ip_network("203.0.113.0/24"), 3),),
)
CLIENTS = st.sampled_from(
    ["192.0.2.1", "192.0.2.2", "198.51.100.9", "2001:db8::1", "2001:db8:0:1::5", "10.0.0.1"]
)


class FuzzedUpstream:
    """Answers q with its own question and fuzzed records; what does not scan is not an answer
    (the real upstream ignores such datagrams until it times out)."""

    def __init__(self) -> None:
        self.records = b""
        self.flags = 0x8180
        self.counts = (1, 0, 0)

    async def forward(self, q: Query) -> UpstreamAnswer:
        wire = (
            struct.pack("!HHHHHH", q.id, self.flags, 1, *self.counts)
            + q.wire[HEADER_LEN : q.question_end]
            + self.records
        )
        try:
            return UpstreamAnswer(wire, scan_response(wire), "fuzz")
        except FormatError:
            raise UpstreamError("fuzz: unusable answer") from None


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def make_handler(upstream: FuzzedUpstream, action: str = "drop") -> QueryHandler:
    resolver = Resolver(
        build_policy(CONFIG, [APPS]), ZoneRouter(upstream, {}), AnswerCache(1000), lambda: 1000.0
    )
    limits = RateLimitConfig(rate=50, burst=20, max_inflight=4, action=action, exempt_networks=())
    return QueryHandler(resolver, ServerConfig(max_inflight=64), QueryStats(), ratelimit=limits)


UPSTREAM = FuzzedUpstream()
HANDLERS = {action: make_handler(UPSTREAM, action) for action in ("drop", "refused")}


def _check_handle(
    loop: asyncio.AbstractEventLoop,
    handler: QueryHandler,
    data: bytes,
    client: str,
    transport: Transport,
) -> None:
    result = handler.handle(data, (client, 4242), transport)
    if result is None:
        return
    if isinstance(result, bytes):
        assert len(result) >= HEADER_LEN
        assert result[:2] == data[:2]
        assert result[2] & 0x80  # QR
        return
    q, verdict, _started = result
    assert isinstance(q, Query) and isinstance(verdict, Verdict)
    reply = loop.run_until_complete(handler.resolver.resolve(q, verdict))
    _check_reply(q, reply)


def _check_reply(q: Query, reply: Reply) -> None:
    wire = reply.wire
    assert wire[:2] == q.wire[:2]
    assert wire[HEADER_LEN : q.question_end] == q.question
    assert len(wire) <= q.max_size


@FUZZ
@given(messages(), CLIENTS, st.sampled_from(Transport), st.sampled_from(["drop", "refused"]))
def test_handle_never_raises_on_dns_shaped_input(
    loop: asyncio.AbstractEventLoop, data: bytes, client: str, transport: Transport, action: str
) -> None:
    _check_handle(loop, HANDLERS[action], data, client, transport)


@FUZZ
@given(st.randoms(use_true_random=False), CLIENTS, st.sampled_from(Transport))
def test_handle_never_raises_on_hostile_kinds(
    loop: asyncio.AbstractEventLoop, rng: random.Random, client: str, transport: Transport
) -> None:
    for make in dnsfuzz.KINDS.values():
        _check_handle(loop, HANDLERS["refused"], make(rng), client, transport)


#: Answer records: owners that point at the question (or anywhere), chosen types, rdata whose
#: length may or may not match what the type needs.
answer_rr = st.tuples(
    st.sampled_from([b"\xc0\x0c", b"\x00", b"\x01f\x00", b"\xc0\x10", b"\x03www\xc0\x0c"]),
    st.sampled_from([1, 5, 28, 6, 39, 65, 64, 2, 16]),
    st.integers(0, 0xFFFFFFFF),
    st.one_of(
        st.binary(min_size=4, max_size=4),
        st.binary(min_size=16, max_size=16),
        st.sampled_from([b"\xc0\x0c", b"\x06banned\x07example\x04test\x00", b"\x01f\x00"]),
        body,
    ),
).map(lambda r: r[0] + struct.pack("!HHIH", r[1], 1, r[2], len(r[3])) + r[3])


@FUZZ
@given(
    st.lists(answer_rr, max_size=6),
    st.integers(0, 3),
    st.sampled_from([0x8180, 0x8183, 0x8380, 0x8182, 0x818F]),
    CLIENTS,
    st.sampled_from(["www.example.test", "x.f", "banned.example.test", "ok.test"]),
    st.sampled_from([1, 28, 5, 65, 6]),
)
def test_resolve_never_raises_on_fuzzed_answers(
    loop: asyncio.AbstractEventLoop,
    records: list[bytes],
    in_authority: int,
    flags: int,
    client: str,
    qname: str,
    qtype: int,
) -> None:
    upstream = FuzzedUpstream()
    handler = make_handler(upstream)
    answers = len(records) - min(in_authority, len(records))
    upstream.records = b"".join(records)
    upstream.counts = (answers, len(records) - answers, 0)
    upstream.flags = flags
    data = dnsfuzz.query(qname, qtype, edns=len(records) % 2 == 0)
    _check_handle(loop, handler, data, client, Transport.UDP)
    # Once more: the answer may now come from the cache.
    _check_handle(loop, handler, data, client, Transport.TCP)


def test_found_a_short_soa_in_a_negative_answer_is_forwarded_not_cached(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Found by test_resolve_never_raises_on_fuzzed_answers: NXDOMAIN whose SOA has 4 octets
    of rdata made make_entry raise FormatError (a traceback and SERVFAIL for every such query)."""
    upstream = FuzzedUpstream()
    upstream.flags = 0x8183  # NXDOMAIN
    upstream.counts = (0, 1, 0)
    upstream.records = b"\xc0\x0c" + struct.pack("!HHIH", 6, 1, 60, 4) + bytes(4)
    handler = make_handler(upstream)
    result = handler.handle(dnsfuzz.query(), ("192.0.2.1", 53), Transport.UDP)
    assert isinstance(result, tuple)
    reply = loop.run_until_complete(handler.resolver.resolve(result[0], result[1]))
    assert reply.kind.value == "forwarded"
    assert reply.wire[3] & 0xF == 3  # NXDOMAIN, as the upstream said
    assert handler.resolver.cache is not None and len(handler.resolver.cache) == 0
