"""The compiled datapath against its reference: byte for byte, counter for counter.

Two worlds are built from the same config, lists and upstream: one answers every datagram
with QueryHandler.handle (the pure-Python path), the other with the compiled loop's
FastPath.answer_datagram, falling back to QueryHandler.handle where the loop hands a query
over, as drain() does. Both forward their misses to the same scripted upstream, so their
caches fill alike. After each datagram the replies, the query and blocked counters, the
blocked clients, the cache's contents and counters, the histogram counts and the audit
events must be equal. Hypothesis draws the lists (entries, exceptions, modes, allowlist),
the networks' policies, the clients, the queries (well-formed and fuzzed) and the clock.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import struct
from collections.abc import Iterator
from typing import Any

import dnslib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsfilter.config import RateLimitConfig, ServerConfig, parse_config
from dnsfilter.datapath import fastpath
from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.datapath.cache import AnswerCache
from dnsfilter.datapath.policy import build_policy
from dnsfilter.datapath.resolver import Resolver, ZoneRouter
from dnsfilter.datapath.server import QueryHandler
from dnsfilter.datapath.upstream import UpstreamAnswer
from dnsfilter.datapath.wire import Query, Transport, scan_response
from dnsfilter.lists.model import BlockList, Category, DomainEntry
from dnsfilter.observe.metrics import QueryStats
from dnsfilter.observe.querylog import AuditEvent
from tests.unit.datapath.test_fuzz_wire import messages

try:
    # The module itself, not fastpath.COMPILED: the DNSFILTER_PURE=1 run of the suite
    # compares the two paths too.
    from dnsfilter.datapath import _fastpath as COMPILED  # type: ignore[attr-defined]
except ImportError:
    if os.environ.get("CI"):
        raise AssertionError(f"CI must test the compiled datapath; {fastpath.DATAPATH}") from None
    pytestmark = pytest.mark.skip(reason=f"no compiled datapath: {fastpath.DATAPATH}")

EXAMPLES = int(os.environ.get("DNSFILTER_FUZZ_EXAMPLES", "150"))
DIFFERENTIAL = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="DNSFILTER_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

LABELS = ["www", "a", "c-name"]
ZONES = ["app.test", "ban.test", "a.ban.test", "other.test", "x.a.ban.test"]
NETWORKS = {
    "lan": ["192.0.2.0/24", "2001:db8::/32"],
    "guest": ["198.51.100.0/24"],
}
CLIENTS = ["192.0.2.1", "192.0.2.77", "198.51.100.9", "2001:db8::1", "192.0.2.1", "203.0.113.5"]


class ScriptedUpstream:
    """Answers from the query alone: an A, AAAA or 20 TXT records, a CNAME into ban.test
    for names starting with "c-name", NXDOMAIN under nx, AD set for names starting with
    "a."; TTLs 1-4 s from the name's length."""

    async def forward(self, q: Query) -> UpstreamAnswer:
        request = dnslib.DNSRecord.parse(q.wire)
        reply = request.reply()
        name = str(request.q.qname)
        ttl = 1 + len(name) % 4
        if name.startswith("nx."):
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
        elif name.startswith("c-name"):
            reply.add_answer(
                dnslib.RR(name, dnslib.QTYPE.CNAME, rdata=dnslib.CNAME("x.ban.test"), ttl=ttl)
            )
            reply.add_answer(
                dnslib.RR("x.ban.test", dnslib.QTYPE.A, rdata=dnslib.A("192.0.2.99"), ttl=ttl)
            )
        elif q.qtype == dnslib.QTYPE.AAAA:
            reply.add_answer(
                dnslib.RR(name, dnslib.QTYPE.AAAA, rdata=dnslib.AAAA("2001:db8::9"), ttl=ttl)
            )
        elif q.qtype == dnslib.QTYPE.TXT:
            # Twenty records: more than 512 octets, so a client without EDNS gets TC.
            for index in range(20):
                text = f"{index:02d}" + "x" * 38
                reply.add_answer(dnslib.RR(name, dnslib.QTYPE.TXT, rdata=dnslib.TXT(text), ttl=ttl))
        else:
            reply.add_answer(dnslib.RR(name, dnslib.QTYPE.A, rdata=dnslib.A("192.0.2.10"), ttl=ttl))
        if name.startswith("a."):
            reply.header.ad = 1  # kept in the entry; a client without DO or AD gets it clear
        wire = bytes(reply.pack())  # a socket's bytes, not dnslib's bytearray
        return UpstreamAnswer(wire, scan_response(wire), "scripted")


class Events:
    """An audit sink that keeps what it is given."""

    def __init__(self, log_allowed: bool) -> None:
        self.log_allowed = log_allowed
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)


@st.composite
def lists(draw: st.DrawFn) -> list[BlockList]:
    made = []
    for index in range(draw(st.integers(1, 3))):
        names = draw(
            st.lists(
                st.sampled_from([*ZONES, "b.app.test", "mail.other.test"]), max_size=4, unique=True
            )
        )
        modes = [
            draw(st.sampled_from([None, None, None, BlockMode.NXDOMAIN, BlockMode.REFUSED]))
            for _ in names
        ]
        exceptions = draw(
            st.lists(st.sampled_from([*ZONES, "b.a.ban.test"]), max_size=2, unique=True)
        )
        made.append(
            BlockList(
                name=f"list{index}",
                source=f"list{index}.txt",
                category=draw(st.sampled_from(list(Category))),
                domains=tuple(
                    DomainEntry(n, line, mode=m)
                    for line, (n, m) in enumerate(zip(names, modes, strict=True), 1)
                ),
                exceptions=tuple(DomainEntry(n, 100 + line) for line, n in enumerate(exceptions)),
            )
        )
    return made


@st.composite
def configs(draw: st.DrawFn, blocklists: list[BlockList]) -> str:
    names = [b.name for b in blocklists]

    def policy(network: str) -> str:
        chosen = draw(
            st.lists(st.sampled_from(names), min_size=0, max_size=len(names), unique=True)
        )
        mode = draw(st.sampled_from(["null", "nxdomain", "nodata", "refused", "sinkhole"]))
        sinkhole = ', sinkhole_ipv4: "192.0.2.53"' if mode == "sinkhole" else ""
        ttl = draw(st.integers(0, 600))
        return (
            f"  p{network}: {{networks: [{network}], lists: [{', '.join(chosen)}],"
            f" mode: {mode}, ttl: {ttl}{sinkhole}}}\n"
        )

    uniform = draw(st.booleans())
    text = 'upstream: {servers: ["127.0.0.1:53"]}\nnetworks:\n'
    for network, prefixes in NETWORKS.items():
        text += f"  {network}: [{', '.join(prefixes)}]\n"
    text += "lists:\n" + "".join(f"  {n}: {{file: {n}.txt}}\n" for n in names)
    text += "policies:\n"
    if uniform:
        text += f"  all: {{networks: [lan, guest], lists: [{', '.join(names)}]}}\n"
    else:
        text += policy("lan") + policy("guest")
    allowed = draw(st.lists(st.sampled_from(["b.app.test", "a.ban.test", "zzz.test"]), max_size=1))
    if allowed:
        text += f"allowlist: [{', '.join(allowed)}]\n"
    return text


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 14)) == 0:
        return draw(messages())
    labels = draw(st.lists(st.sampled_from(LABELS), min_size=0, max_size=1))
    zone = draw(st.sampled_from([*ZONES, "nx.other.test", "c-name.app.test", "free.test"]))
    name = ".".join([*labels, zone])
    if draw(st.booleans()):
        name = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    qtype = draw(st.sampled_from([1, 1, 1, 1, 28, 28, 16, 255, 252, 65]))
    qclass = draw(st.sampled_from([1] * 9 + [3]))
    flags = 0x0100 if draw(st.integers(0, 15)) else 0
    if draw(st.integers(0, 4)) == 0:
        flags |= 0x0010  # CD
    if draw(st.integers(0, 6)) == 0:
        flags |= 0x0020  # AD
    wire = struct.pack("!HHHHHH", draw(st.integers(0, 0xFFFF)), flags, 1, 0, 0, 0)
    wire += b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00"
    wire += struct.pack("!HH", qtype, qclass)
    if draw(st.booleans()):
        payload = draw(st.sampled_from([0, 512, 600, 1232, 4096]))
        flags_ttl = (draw(st.sampled_from([0, 0, 0, 1])) << 16) | (
            0x8000 if draw(st.booleans()) else 0
        )
        options = b"\x00\x0a\x00\x08" + bytes(8) if draw(st.booleans()) else b""
        wire = wire[:10] + b"\x00\x01" + wire[12:]
        wire += b"\x00" + struct.pack("!HHIH", 41, payload, flags_ttl, len(options)) + options
    return wire


class World:
    def __init__(
        self,
        config_text: str,
        blocklists: list[BlockList],
        clock: list[float],
        ratelimit: RateLimitConfig | None,
        log_allowed: bool,
        prefetch_min_hits: int,
    ) -> None:
        config = parse_config(config_text, "cfg.yaml", None)
        resolver = Resolver(
            build_policy(config, blocklists),
            ZoneRouter(ScriptedUpstream(), {}),
            AnswerCache(50),
            lambda: clock[0],
            prefetch_min_hits=prefetch_min_hits,
        )
        self.events = Events(log_allowed)
        self.handler = QueryHandler(
            resolver, ServerConfig(max_inflight=64), QueryStats(), self.events, ratelimit=ratelimit
        )

    def state(self) -> dict[str, Any]:
        stats = self.handler.stats
        cache = self.handler.resolver.cache
        assert cache is not None
        return {
            "queries": dict(stats.queries),
            "blocked": dict(stats.blocked),
            "blocked_clients": {k: sorted(v) for k, v in stats.blocked_clients.items()},
            "cache": (cache.hits, cache.misses, cache.prefetches),
            "entries": sorted(
                (repr(key), entry.late_hits, entry.prefetching)
                for key, entry in cache._entries.items()
            ),
            "histograms": {k: sum(h.counts) for k, h in stats.durations.items()},
            "events": [e[1:] for e in self.events.events],
        }


def _finish(loop: asyncio.AbstractEventLoop, world: World, result: object) -> bytes | None:
    """What the UDP listener does with handle()'s result, awaited: the reply bytes."""
    if result is None or isinstance(result, bytes):
        return result
    assert isinstance(result, tuple)
    return loop.run_until_complete(world.handler.resolve(*result))


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _pair(
    config_text: str,
    blocklists: list[BlockList],
    clock: list[float],
    ratelimit: RateLimitConfig | None = None,
    log_allowed: bool = False,
    prefetch_min_hits: int = 0,
) -> tuple[World, World, Any]:
    settings = (config_text, blocklists, clock, ratelimit, log_allowed, prefetch_min_hits)
    reference = World(*settings)
    compiled = World(*settings)
    fast = COMPILED.FastPath(compiled.handler, None, -1, constants=fastpath.constants())
    return reference, compiled, fast


def _both(
    loop: asyncio.AbstractEventLoop,
    reference: World,
    compiled: World,
    fast: Any,
    data: bytes,
    client: str,
) -> str:
    addr = (client, 5300)
    expected = _finish(loop, reference, reference.handler.handle(data, addr, Transport.UDP))
    outcome, reply = fast.answer_datagram(data, addr)
    if outcome == "slow":
        reply = _finish(loop, compiled, compiled.handler.handle(data, addr, Transport.UDP))
    assert reply == expected, (outcome, data.hex())
    assert compiled.state() == reference.state(), (outcome, data.hex())
    REPLIES.append(expected)
    return str(outcome)


#: every reply _both saw the two worlds agree on, last one last
REPLIES: list[bytes | None] = []


@DIFFERENTIAL
@given(st.data(), lists())
def test_compiled_and_python_paths_answer_and_count_alike(
    loop: asyncio.AbstractEventLoop, data: st.DataObject, blocklists: list[BlockList]
) -> None:
    config_text = data.draw(configs(blocklists))
    clock = [1000.0]
    limited = data.draw(st.booleans())
    ratelimit = (
        RateLimitConfig(
            rate=0.001,  # no token comes back during a run: the two worlds cannot part on time
            burst=20,
            action=data.draw(st.sampled_from(["drop", "refused"])),
            exempt_networks=(),
        )
        if limited
        else RateLimitConfig(enabled=False)
    )
    reference, compiled, fast = _pair(
        config_text,
        blocklists,
        clock,
        ratelimit,
        data.draw(st.booleans()),
        data.draw(st.sampled_from([0, 0, 1, 3])),
    )
    # A few queries asked again and again, as clients do: so the cache is hit, and hit again
    # within the second its TTLs were rendered in, where the compiled loop serves it.
    asked = data.draw(st.lists(queries(), min_size=1, max_size=6))
    for _ in range(data.draw(st.integers(1, 60))):
        if data.draw(st.integers(0, 11)) == 0:
            clock[0] += data.draw(st.sampled_from([0.3, 1.0, 2.5, 10.0]))
        query = (
            data.draw(st.sampled_from(asked))
            if data.draw(st.integers(0, 4))
            else data.draw(queries())
        )
        _both(loop, reference, compiled, fast, query, data.draw(st.sampled_from(CLIENTS)))


BLOCKING = """
upstream: {servers: ["127.0.0.1:53"]}
networks: {lan: ["192.0.2.0/24", "2001:db8::/32"]}
lists: {list0: {file: list0.txt}}
policies: {p: {networks: [lan], lists: [list0]}}
"""
BANNED = BlockList(
    name="list0",
    source="list0.txt",
    category=Category.SOCIAL,
    domains=(DomainEntry("ban.test", 1),),
)


def _query(name: str, qtype: int = 1, msg_id: int = 7) -> bytes:
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    return (
        struct.pack("!HHHHHH", msg_id, 0x0100, 1, 0, 0, 0)
        + labels
        + struct.pack("!BHH", 0, qtype, 1)
    )


def test_blocked_and_cached_queries_are_answered_inside_the_loop(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The differential test above would pass with a loop that hands every query over:
    here a blocked query, and a cached one after its first hit, must not be."""
    clock = [1000.0]
    reference, compiled, fast = _pair(BLOCKING, [BANNED], clock)
    assert _both(loop, reference, compiled, fast, _query("www.ban.test"), "192.0.2.1") == "sent"
    assert (
        _both(loop, reference, compiled, fast, _query("www.ban.test", 28), "2001:db8::1") == "sent"
    )
    assert (
        _both(loop, reference, compiled, fast, _query("free.test"), "192.0.2.1") == "slow"
    )  # a miss
    assert (
        _both(loop, reference, compiled, fast, _query("free.test"), "192.0.2.1") == "slow"
    )  # renders
    assert (
        _both(loop, reference, compiled, fast, _query("free.test", msg_id=9), "192.0.2.1") == "sent"
    )
    assert compiled.handler.stats.queries[("lan", "udp", "A", "cached")] == 2
    assert fast.answered == 3


def test_a_reload_is_seen_by_the_next_datagram(loop: asyncio.AbstractEventLoop) -> None:
    clock = [1000.0]
    reference, compiled, fast = _pair(BLOCKING, [BANNED], clock)
    assert _both(loop, reference, compiled, fast, _query("ban.test"), "192.0.2.1") == "sent"
    unbanned = BlockList(name="list0", source="list0.txt", domains=(DomainEntry("other.test", 1),))
    for world in (reference, compiled):
        world.handler.resolver.swap_policy(
            build_policy(parse_config(BLOCKING, "cfg.yaml", None), [unbanned])
        )
    assert _both(loop, reference, compiled, fast, _query("ban.test"), "192.0.2.1") == "slow"
    assert _both(loop, reference, compiled, fast, _query("x.other.test"), "192.0.2.1") == "sent"


def test_the_domain_table_hash_is_str_hash() -> None:
    assert COMPILED.hash_matches_str()


def test_the_datapath_in_force_is_the_compiled_one_unless_refused() -> None:
    pure = os.environ.get("DNSFILTER_PURE", "") not in ("", "0")
    assert fastpath.DATAPATH.startswith("pure Python" if pure else "compiled")
    assert (fastpath.COMPILED is None) == pure


def test_addresses_outside_every_network_are_the_python_path_s(
    loop: asyncio.AbstractEventLoop,
) -> None:
    clock = [1000.0]
    reference, compiled, fast = _pair(BLOCKING, [BANNED], clock)
    assert _both(loop, reference, compiled, fast, _query("ban.test"), "203.0.113.1") == "slow"
    assert ipaddress.ip_address("203.0.113.1")


def test_a_client_over_its_rate_is_limited_by_the_loop_as_by_python(
    loop: asyncio.AbstractEventLoop,
) -> None:
    clock = [1000.0]
    for action, over in (("drop", "dropped"), ("refused", "sent")):
        limits = RateLimitConfig(rate=0.001, burst=2, action=action, exempt_networks=())
        reference, compiled, fast = _pair(BLOCKING, [BANNED], clock, limits)
        outcomes = [
            _both(loop, reference, compiled, fast, _query("ban.test", msg_id=n), "192.0.2.1")
            for n in range(4)
        ]
        assert outcomes == ["sent", "sent", over, over]
        assert compiled.handler.stats.queries[("lan", "udp", "A", "ratelimited")] == 2


def test_ad_from_the_upstream_reaches_only_clients_that_ask_for_it(
    loop: asyncio.AbstractEventLoop,
) -> None:
    clock = [1000.0]
    reference, compiled, fast = _pair(BLOCKING, [BANNED], clock)
    for msg_id in range(3):  # a miss, the hit that renders the TTLs, then the loop's hit
        _both(loop, reference, compiled, fast, _query("a.free.test", msg_id=msg_id), "192.0.2.1")
    asking = bytearray(_query("a.free.test", msg_id=9))
    asking[3] |= 0x20  # AD
    for query, ad in ((_query("a.free.test", msg_id=8), 0), (bytes(asking), 0x20)):
        assert _both(loop, reference, compiled, fast, query, "192.0.2.1") == "sent"
        reply = REPLIES[-1]
        assert reply is not None and reply[3] & 0x20 == ad


def test_a_hit_in_the_prefetch_window_is_counted_by_the_python_path(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The last tenth of an entry's life: every hit counts towards a prefetch (late_hits),
    which only the Python path keeps, so the loop hands such hits over."""
    clock = [1000.0]
    reference, compiled, fast = _pair(BLOCKING, [BANNED], clock, prefetch_min_hits=3)
    query = _query("www.free.test")  # TTL 3 from ScriptedUpstream: the window is 2.7-3.0 s
    assert _both(loop, reference, compiled, fast, query, "192.0.2.1") == "slow"  # the miss
    clock[0] += 2.8
    assert _both(loop, reference, compiled, fast, query, "192.0.2.1") == "slow"  # renders
    assert _both(loop, reference, compiled, fast, query, "192.0.2.1") == "slow"
    cache = compiled.handler.resolver.cache
    assert cache is not None and [e.late_hits for e in cache._entries.values()] == [2]


def test_an_answer_that_cnames_into_a_blocked_name_is_blocked_from_the_cache_too(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The entry keeps what inspection found; the asking client's rule decides in Python."""
    clock = [1000.0]
    reference, compiled, fast = _pair(BLOCKING, [BANNED], clock)
    query = _query("c-name.free.test")  # CNAME x.ban.test from ScriptedUpstream
    outcomes = [_both(loop, reference, compiled, fast, query, "192.0.2.1") for _ in range(3)]
    assert outcomes == ["slow"] * 3
    assert compiled.handler.stats.blocked[("lan", "list0", "social")] == 3


def test_a_blocked_reply_larger_than_the_client_takes_is_truncated_by_python(
    loop: asyncio.AbstractEventLoop,
) -> None:
    long_list = "l" * 200
    config = BLOCKING.replace("list0", long_list).replace("lists: [", "mode: nxdomain, lists: [")
    banned = BlockList(name=long_list, source="x.txt", domains=(DomainEntry("ban.test", 1),))
    reference, compiled, fast = _pair(config, [banned], [1000.0])
    name = ".".join(["a" * 60] * 4) + ".ban.test"
    edns = bytearray(_query(name))
    edns[11] = 1  # ARCOUNT: an OPT asking for 512 octets at most
    query = bytes(edns) + b"\x00" + struct.pack("!HHIH", 41, 512, 0, 0)
    assert _both(loop, reference, compiled, fast, query, "192.0.2.1") == "slow"
    reply = REPLIES[-1]
    assert reply is not None and len(reply) <= 512 and reply[2] & 0x02  # TC
