"""Per-client limits: ClientLimits on its own (a fake clock), then inside QueryHandler.handle.

The handler tests use a real Resolver whose upstream is a one-method fake, and call handle()
with literal client addresses: no sockets, so sources can be any address.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dnsfilter.config import RateLimitConfig, ServerConfig, parse_config
from dnsfilter.datapath.policy import build_policy
from dnsfilter.datapath.ratelimit import LIMITED_WINDOW, ClientLimits
from dnsfilter.datapath.resolver import Resolver, ZoneRouter
from dnsfilter.datapath.server import QueryHandler
from dnsfilter.datapath.upstream import UpstreamAnswer
from dnsfilter.datapath.wire import EdeCode, Query, Transport, make_query, scan_response
from dnsfilter.lists.model import BlockList, Category, DomainEntry
from dnsfilter.observe.metrics import QueryStats

NOW = 1000.0


def limits(
    rate: float = 10.0,
    burst: int = 5,
    max_inflight: int = 0,
    max_clients: int = 1000,
    exempt: tuple[str, ...] = (),
) -> ClientLimits:
    return ClientLimits(
        rate, burst, max_inflight, max_clients, [ipaddress.ip_network(n) for n in exempt]
    )


def allowed(lim: ClientLimits, address: str, count: int, now: float = NOW) -> int:
    key = lim.key(address)
    assert key is not None
    return sum(lim.allow(key, now) for _ in range(count))


# ---------------------------------------------------------------------------------------
# ClientLimits


def test_a_burst_then_nothing_until_tokens_come_back() -> None:
    lim = limits(rate=10, burst=5)
    assert allowed(lim, "192.0.2.1", 20) == 5
    assert allowed(lim, "192.0.2.1", 1, NOW + 0.05) == 0  # half a token
    assert allowed(lim, "192.0.2.1", 5, NOW + 0.1) == 1  # one token per 1/rate seconds
    assert allowed(lim, "192.0.2.1", 20, NOW + 10) == 5  # refilled, but never past burst


def test_a_steady_client_at_the_rate_is_never_limited() -> None:
    lim = limits(rate=10, burst=1)
    assert all(allowed(lim, "192.0.2.1", 1, NOW + i * 0.1) == 1 for i in range(100))


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        pytest.param("192.0.2.1", "192.0.2.2", False, id="ipv4-per-address"),
        pytest.param("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", True, id="ipv6-same-64"),
        pytest.param("2001:db8:1:2::1", "2001:db8:1:3::1", False, id="ipv6-other-64"),
        pytest.param("2001:db8:1:2::1", "2001:0DB8:1:2:0:0:0:7", True, id="ipv6-spelling"),
        pytest.param("fe80::1%eth0", "fe80::2%eth1", True, id="ipv6-scoped"),
    ],
)
def test_buckets_are_per_ipv4_address_and_per_ipv6_64(
    first: str, second: str, shared: bool
) -> None:
    lim = limits(rate=1, burst=3)
    assert allowed(lim, first, 3) == 3
    assert allowed(lim, second, 3) == (0 if shared else 3)


def test_exempt_networks_have_no_key() -> None:
    lim = limits(rate=1, burst=1, exempt=("10.0.0.0/8", "2001:db8::/32"))
    assert lim.key("10.9.8.7") is None
    assert lim.key("2001:db8::1") is None
    assert lim.key("11.0.0.1") == "11.0.0.1"
    assert lim.key("2001:db9::1") == bytes.fromhex("20010db900000000")


def test_idle_clients_are_forgotten_first_when_the_table_is_full() -> None:
    lim = limits(rate=1, burst=2, max_clients=4)
    assert allowed(lim, "192.0.2.1", 2) == 2  # busy: its bucket is empty
    for n in range(2, 5):
        allowed(lim, f"192.0.2.{n}", 1)
    # Later, the three light clients are full again (idle); the busy one is not.
    later = NOW + 1.5
    assert allowed(lim, "192.0.2.9", 1, later) == 1
    assert lim.tracked == 2
    assert allowed(lim, "192.0.2.1", 2, later) == 1  # still remembered: half a bucket


def test_a_table_full_of_busy_clients_forgets_its_oldest_quarter() -> None:
    lim = limits(rate=1, burst=1, max_clients=100)
    for n in range(100):
        allowed(lim, f"10.0.{n // 256}.{n % 256}", 1)
    assert allowed(lim, "192.0.2.1", 1) == 1  # a new client is never refused for room
    assert lim.tracked <= 76
    assert allowed(lim, "10.0.0.0", 1) == 1  # the oldest got a fresh bucket
    assert allowed(lim, "10.0.0.99", 1) == 0  # the newest did not


def test_memory_stays_bounded_under_a_flood_of_sources() -> None:
    lim = limits(rate=1, burst=1, max_clients=1000)
    for n in range(20_000):
        address = str(ipaddress.IPv4Address(0x0A000000 + n))
        allowed(lim, address, 2, NOW + n * 1e-6)
    assert lim.tracked <= 1000
    assert len(lim._keys) <= 1000
    assert len(lim.limited) <= 1000


def test_limited_clients_count_only_the_last_window() -> None:
    lim = limits(rate=1, burst=1)
    allowed(lim, "192.0.2.1", 2)
    allowed(lim, "192.0.2.2", 2, NOW + LIMITED_WINDOW / 2)
    allowed(lim, "192.0.2.3", 1, NOW + LIMITED_WINDOW / 2)  # within its rate
    assert lim.limited_clients(NOW + LIMITED_WINDOW / 2) == 2
    assert lim.limited_clients(NOW + LIMITED_WINDOW + 1) == 1


def test_inflight_counts_per_client() -> None:
    lim = limits(max_inflight=2)
    key = lim.key("192.0.2.1")
    assert key is not None
    lim.begin(key)
    assert not lim.over_inflight(key)
    lim.begin(key)
    assert lim.over_inflight(key)
    assert not lim.over_inflight("192.0.2.2")
    lim.end(key)
    lim.end(key)
    assert lim.inflight == {}


def test_rate_zero_and_max_inflight_zero_mean_no_limit() -> None:
    lim = limits(rate=0, max_inflight=0)
    key = lim.key("192.0.2.1")
    assert key is not None
    for _ in range(100):
        lim.begin(key)
    assert not lim.over_inflight(key)


# ---------------------------------------------------------------------------------------
# In the handler

CONFIG = parse_config(
    """
upstream: {servers: ["127.0.0.1:53"]}
networks: {lan: ["192.0.2.0/24", "2001:db8::/32"], ops: ["198.51.100.0/24"]}
policies: {p: {networks: [lan, ops], lists: []}}
""",
    "cfg.yaml",
    None,
)


class FakeUpstream:
    """Answers every query with NXDOMAIN after delay seconds; counts calls."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0

    async def forward(self, q: Query) -> UpstreamAnswer:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        reply = dns.message.make_response(dns.message.from_wire(q.wire))
        reply.set_rcode(dns.rcode.NXDOMAIN)
        wire = reply.to_wire()
        return UpstreamAnswer(wire, scan_response(wire), "fake")


def make_handler(
    upstream: FakeUpstream | None = None, server_inflight: int = 4096, **ratelimit: Any
) -> QueryHandler:
    """A handler whose ratelimit section is rate 10, burst 3, nothing exempt, and ratelimit."""
    resolver = Resolver(build_policy(CONFIG, []), ZoneRouter(upstream or FakeUpstream(), {}), None)
    settings: dict[str, Any] = {"rate": 10.0, "burst": 3, "exempt_networks": (), **ratelimit}
    return QueryHandler(
        resolver,
        ServerConfig(max_inflight=server_inflight),
        QueryStats(),
        ratelimit=RateLimitConfig(**settings),
    )


def spawn(handler: QueryHandler, result: object) -> asyncio.Task[None]:
    """What the UDP listener does with a query to resolve (the reply goes nowhere)."""
    assert isinstance(result, tuple)

    async def answer_later() -> None:
        await handler.resolve(*result)

    return handler.spawn(result[0], answer_later())


def send(
    handler: QueryHandler,
    client: str,
    qname: str = "www.example.test",
    qtype: str = "A",
    edns: bool = False,
    transport: Transport = Transport.UDP,
) -> object:
    message = dns.message.make_query(qname, qtype, use_edns=0 if edns else False)
    return handler.handle(message.to_wire(), (client, 5353), transport)


def ratelimited(handler: QueryHandler) -> int:
    return handler.stats.total("ratelimited")


def test_over_the_rate_is_dropped_and_counted() -> None:
    handler = make_handler()
    results = [send(handler, "192.0.2.1") for _ in range(5)]
    assert [r is None for r in results] == [False, False, False, True, True]
    assert ratelimited(handler) == 2
    assert handler.stats.queries[("lan", "udp", "A", "ratelimited")] == 2
    assert send(handler, "192.0.2.2") is not None  # another client is not affected
    assert handler.ratelimited_clients() == 1


@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
def test_action_refused_answers_refused_with_ede_0(edns: bool) -> None:
    handler = make_handler(burst=1, action="refused")
    send(handler, "192.0.2.1")
    wire = send(handler, "192.0.2.1", edns=edns)
    assert isinstance(wire, bytes)
    reply = dns.message.from_wire(wire)
    assert reply.rcode() == dns.rcode.REFUSED
    assert reply.question[0].name.to_text() == "www.example.test."
    options = [o for o in reply.options if isinstance(o, dns.edns.EDEOption)]
    if edns:
        assert [(int(o.code), o.text) for o in options] == [(EdeCode.OTHER, "rate limited")]
    else:
        assert reply.edns < 0
    assert ratelimited(handler) == 1


def test_exempt_networks_and_disabled_limits_are_never_limited() -> None:
    handler = make_handler(burst=1, exempt_networks=(ipaddress.ip_network("198.51.100.0/24"),))
    assert all(send(handler, "198.51.100.7") is not None for _ in range(50))
    disabled = make_handler(burst=1, enabled=False)
    assert all(send(disabled, "192.0.2.1") is not None for _ in range(50))
    assert ratelimited(handler) == ratelimited(disabled) == 0


def test_malformed_queries_are_not_charged() -> None:
    handler = make_handler(burst=1)
    for _ in range(5):
        assert handler.handle(b"\x00" * 11, ("192.0.2.1", 53), Transport.UDP) is None
    assert send(handler, "192.0.2.1") is not None


@pytest.mark.asyncio
async def test_one_client_cannot_take_every_inflight_slot() -> None:
    upstream = FakeUpstream(delay=0.05)
    handler = make_handler(upstream, server_inflight=10, rate=0, max_inflight=4)
    tasks = []
    for n in range(8):
        result = send(handler, "192.0.2.1", f"n{n}.example.test")
        if isinstance(result, tuple):
            tasks.append(spawn(handler, result))
    assert len(tasks) == 4
    assert ratelimited(handler) == 4
    # Another client still gets slots, and the TCP client over its share gets SERVFAIL.
    other = send(handler, "192.0.2.2", "other.example.test")
    assert isinstance(other, tuple)
    tcp = send(handler, "192.0.2.1", "tcp.example.test", transport=Transport.TCP)
    assert isinstance(tcp, bytes)
    assert dns.message.from_wire(tcp).rcode() == dns.rcode.SERVFAIL
    await asyncio.gather(*tasks)
    assert handler.limits is not None and handler.limits.inflight == {}
    assert isinstance(send(handler, "192.0.2.1", "again.example.test"), tuple)


@pytest.mark.asyncio
async def test_the_server_wide_cap_drops_udp_and_servfails_tcp() -> None:
    handler = make_handler(FakeUpstream(delay=0.05), server_inflight=2, rate=0)
    tasks = []
    for n in range(2):
        tasks.append(spawn(handler, send(handler, f"192.0.2.{n + 1}", f"n{n}.example.test")))
    assert handler.inflight_count() == 2
    assert send(handler, "192.0.2.9", "x.example.test") is None
    tcp = send(handler, "192.0.2.9", "y.example.test", transport=Transport.TCP)
    assert isinstance(tcp, bytes)
    assert dns.message.from_wire(tcp).rcode() == dns.rcode.SERVFAIL
    assert handler.stats.total("dropped") == 2
    await asyncio.gather(*tasks)
    assert handler.inflight_count() == 0


@pytest.mark.asyncio
async def test_a_task_cancelled_before_it_ran_gives_its_slot_back() -> None:
    handler = make_handler(FakeUpstream(), rate=0, max_inflight=1)
    task = spawn(handler, send(handler, "192.0.2.1"))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert handler.limits is not None and handler.limits.inflight == {}
    assert handler.inflight_count() == 0


def test_ipv6_clients_share_their_64() -> None:
    handler = make_handler(burst=2)
    assert send(handler, "2001:db8:0:1::1") is not None
    assert send(handler, "2001:db8:0:1::2") is not None
    assert send(handler, "2001:db8:0:1::3") is None
    assert send(handler, "2001:db8:0:2::1") is not None


# ---------------------------------------------------------------------------------------
# ANY (RFC 8482)


def test_any_of_a_blocked_name_is_blocked() -> None:
    config = parse_config(
        """
upstream: {servers: ["127.0.0.1:53"]}
networks: {lan: ["192.0.2.0/24"]}
lists: {apps: {file: apps.txt}}
policies: {p: {networks: [lan], lists: [apps], mode: nxdomain}}
""",
        "cfg.yaml",
        None,
    )
    blocklist = BlockList(
        name="apps",
        source="apps.txt",
        category=Category.OTHER,
        domains=(DomainEntry("banned.example.test", 1),),
    )
    resolver = Resolver(build_policy(config, [blocklist]), ZoneRouter(FakeUpstream(), {}), None)
    handler = QueryHandler(resolver, ServerConfig())
    wire = handler.handle(make_query("banned.example.test", 255), ("192.0.2.1", 1), Transport.UDP)
    assert isinstance(wire, bytes)
    assert dns.message.from_wire(wire).rcode() == dns.rcode.NXDOMAIN
