"""Upstream faults, end to end: `dnsfilter serve` against two ScriptedUpstreams on loopback.

The primary upstream (A) answers 192.0.2.1x, the secondary (B) 192.0.2.2x, so every answer
says who gave it. Each test breaks A (and then B) in one way — stopped, flapping, late,
garbage, wrong ID, SERVFAIL — and checks that dnsfilter keeps answering: from B while A is
broken, then from its expired cache entries (RFC 8767 stale answers) while both are, and
from A again once it is back. Upstream tries time out after 0.3 s, a failed server is tried
last for 1 s, stale answers carry TTL 1 and hold off retries of that name for 1 s, so each
test finishes in a few seconds; every query has the harness's 3 s timeout. Sleeps here only
make sure a time has passed (an expiry, a hold-off); no test bounds how fast a step is but
by a margin of seconds, or by counting the tries an upstream got.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import dns.edns
import dns.message
import dns.rcode
import pytest

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import DnsFilter, rdata_texts, wait_until

pytestmark = pytest.mark.integration

TIMEOUT = 0.3
STALE_TTL = 1
TTL = 1  #: of the records: they expire (and go stale) one second after they are cached


@pytest.fixture
def upstream_a() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        upstream.add("www.example.test", "A", "192.0.2.10", ttl=TTL)
        upstream.add("*.wild.example.test", "A", "192.0.2.11", ttl=TTL)
        yield upstream
        assert upstream.errors == []


@pytest.fixture
def upstream_b() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        upstream.add("www.example.test", "A", "192.0.2.20", ttl=TTL)
        upstream.add("*.wild.example.test", "A", "192.0.2.21", ttl=TTL)
        yield upstream
        assert upstream.errors == []


def fault_config(upstreams: list[str], **cache: Any) -> dict[str, Any]:
    return base_config(
        upstreams,
        upstream={"timeout": TIMEOUT, "dead_time": 1},
        cache={"stale_ttl": STALE_TTL, "stale_max_age": 60, "stale_client_timeout": 0, **cache},
    )


def ede_codes(reply: dns.message.Message) -> list[int]:
    return [o.code for o in reply.options if isinstance(o, dns.edns.EDEOption)]


def assert_stale(reply: dns.message.Message, address: str) -> None:
    assert reply.rcode() == dns.rcode.NOERROR
    assert rdata_texts(reply) == [address]
    assert [rrset.ttl for rrset in reply.answer] == [STALE_TTL]
    assert ede_codes(reply) == [3], "EDE 3 Stale Answer"


def count(server: DnsFilter, result: str) -> float:
    return server.metric("dnsfilter_queries_total", result=result, qtype="A") or 0.0


def up(server: DnsFilter, upstream: ScriptedUpstream) -> float | None:
    return server.metric("dnsfilter_upstream_up", upstream=upstream.address)


def requests(server: DnsFilter, upstream: ScriptedUpstream) -> float:
    """Tries sent to the upstream, whatever their outcome (a stopped one counts none)."""
    return server.metric_sum("dnsfilter_upstream_requests_total", upstream=upstream.address)


def test_upstream_dies_then_all_fail_then_recover(
    start_dnsfilter: StartDnsFilter, upstream_a: ScriptedUpstream, upstream_b: ScriptedUpstream
) -> None:
    server = start_dnsfilter(fault_config([upstream_a.address, upstream_b.address]))
    assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.10"]

    # A dies: B answers, new names and expired ones alike.
    upstream_a.stop()
    assert rdata_texts(server.udp("one.wild.example.test")) == ["192.0.2.21"]
    time.sleep(TTL + 0.1)
    assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.20"]
    assert up(server, upstream_a) == 0.0 and up(server, upstream_b) == 1.0

    # B dies too: expired entries are served stale, names never seen get SERVFAIL.
    # (Stale after both tries, within the client's 3 s: no waiting beyond them.)
    upstream_b.stop()
    time.sleep(TTL + 0.1)
    assert_stale(server.udp("www.example.test", edns=True), "192.0.2.20")
    asked = requests(server, upstream_a) + requests(server, upstream_b)
    assert_stale(server.udp("www.example.test", edns=True), "192.0.2.20")
    assert requests(server, upstream_a) + requests(server, upstream_b) == asked, (
        "within stale_ttl of a failure: no retry"
    )
    plain = server.udp("one.wild.example.test")  # without EDNS: no OPT, so no EDE
    assert rdata_texts(plain) == ["192.0.2.21"] and plain.answer[0].ttl == STALE_TTL
    never_seen = server.udp("two.wild.example.test", edns=True)
    assert never_seen.rcode() == dns.rcode.SERVFAIL
    assert ede_codes(never_seen) == [23]
    assert count(server, "stale") == 3
    assert up(server, upstream_a) == 0.0 and up(server, upstream_b) == 0.0

    # A comes back (same port): fresh answers again, once the stale hold-off has passed.
    upstream_a.start()
    time.sleep(STALE_TTL + 0.1)
    fresh = server.udp("www.example.test", edns=True)
    assert rdata_texts(fresh) == ["192.0.2.10"]
    assert ede_codes(fresh) == []
    assert up(server, upstream_a) == 1.0
    assert rdata_texts(server.udp("two.wild.example.test")) == ["192.0.2.11"]


class Flapper:
    """Switches an upstream between dropping everything and answering, every period."""

    def __init__(self, upstream: ScriptedUpstream, period: float) -> None:
        self.upstream = upstream
        self.period = period
        self.flips = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Flapper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.upstream.behave()

    def _run(self) -> None:
        dropping = False
        while not self._stop.wait(self.period):
            dropping = not dropping
            if dropping:
                self.upstream.drop()
            else:
                self.upstream.behave()
            self.flips += 1


def test_flapping_upstream_never_costs_an_answer(
    start_dnsfilter: StartDnsFilter, upstream_a: ScriptedUpstream, upstream_b: ScriptedUpstream
) -> None:
    server = start_dnsfilter(fault_config([upstream_a.address, upstream_b.address]))
    answers: dict[str, int] = {}
    deadline = time.monotonic() + 4.0
    with Flapper(upstream_a, period=0.4) as flapper:
        index = 0
        while time.monotonic() < deadline:
            reply = server.udp(f"q{index}.wild.example.test")
            assert reply.rcode() == dns.rcode.NOERROR, f"query {index} failed"
            (address,) = rdata_texts(reply)
            answers[address] = answers.get(address, 0) + 1
            index += 1
            time.sleep(0.05)
    assert flapper.flips >= 6
    assert set(answers) == {"192.0.2.11", "192.0.2.21"}, "both served while A flapped"
    assert count(server, "servfail") == 0
    timeouts = server.metric(
        "dnsfilter_upstream_requests_total", upstream=upstream_a.address, rcode="timeout"
    )
    assert timeouts is not None and timeouts >= 1
    # Steady again: A answers and is up.
    assert wait_until(lambda: rdata_texts(server.udp("w.wild.example.test")) == ["192.0.2.11"])
    assert up(server, upstream_a) == 1.0


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        pytest.param("late", "timeout", id="answers-after-the-timeout"),
        pytest.param("garbage", "timeout", id="garbage"),
        pytest.param("wrong_id", "timeout", id="wrong-id"),
        pytest.param("wrong_question", "timeout", id="wrong-question"),
        pytest.param("servfail", "SERVFAIL", id="servfail"),
    ],
)
def test_misbehaving_upstream_fails_over_then_stale_then_recovers(
    start_dnsfilter: StartDnsFilter,
    upstream_a: ScriptedUpstream,
    upstream_b: ScriptedUpstream,
    fault: str,
    outcome: str,
) -> None:
    server = start_dnsfilter(fault_config([upstream_a.address, upstream_b.address]))
    assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.10"]
    {
        "late": lambda: upstream_a.delay(2 * TIMEOUT),
        "garbage": upstream_a.garbage,
        "wrong_id": upstream_a.wrong_id,
        "wrong_question": upstream_a.wrong_question,
        "servfail": upstream_a.servfail,
    }[fault]()

    # A misbehaves: B's answer, never anything from A.
    time.sleep(TTL + 0.1)
    assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.20"]
    assert rdata_texts(server.udp("new.wild.example.test")) == ["192.0.2.21"]
    tries = server.metric(
        "dnsfilter_upstream_requests_total", upstream=upstream_a.address, rcode=outcome
    )
    assert tries is not None and tries >= 1

    # B goes too: stale answers from the cache.
    upstream_b.stop()
    time.sleep(TTL + 0.1)
    assert_stale(server.udp("www.example.test", edns=True), "192.0.2.20")
    if fault == "late":
        time.sleep(2 * TIMEOUT)  # A's late answers arrive now, to a socket long closed

    # A behaves again: fresh answers (after the stale hold-off), and A is up.
    upstream_a.behave()
    time.sleep(STALE_TTL + 0.1)
    fresh = server.udp("www.example.test", edns=True)
    assert rdata_texts(fresh) == ["192.0.2.10"] and ede_codes(fresh) == []
    assert up(server, upstream_a) == 1.0
    assert "Traceback" not in server.log


def test_slow_upstream_gets_a_stale_answer_in_time_then_refreshes(
    start_dnsfilter: StartDnsFilter, upstream_a: ScriptedUpstream
) -> None:
    """RFC 8767's client response timer: a stale answer after 0.3 s, the refresh later.

    The upstream is 4 s late (its timeout 5 s): past the client's 3 s, so an answer that
    waited for it fails the test, and 2 s apart from the 0.3 s the answer should take."""
    config = fault_config([upstream_a.address], stale_client_timeout=0.3)
    config["upstream"]["timeout"] = 5.0
    upstream_a.add("slow.example.test", "A", "192.0.2.30", ttl=60)
    server = start_dnsfilter(config)
    upstream_a.add("www.example.test", "A", "192.0.2.10", ttl=TTL)
    assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.10"]
    time.sleep(TTL + 0.1)
    upstream_a.remove("www.example.test").add("www.example.test", "A", "192.0.2.12", ttl=60)
    upstream_a.delay(4.0)
    started = time.monotonic()
    assert_stale(server.udp("www.example.test", edns=True), "192.0.2.10")
    assert time.monotonic() - started < 2.0, "answered at the client timeout, not at 4 s"
    upstream_a.wait_for_calls(2)
    upstream_a.behave()
    # The resolution went on in the background and refreshed the entry (at its next retry).
    assert wait_until(lambda: rdata_texts(server.udp("www.example.test")) == ["192.0.2.12"], 10)
    assert count(server, "cached") >= 1
    # The fill, the refresh, and the refresh's UDP retries while the upstream was slow.
    retried = server.metric("dnsfilter_upstream_retries_total", upstream=upstream_a.address)
    assert len(upstream_a.calls_for("www.example.test")) == 2 + int(retried or 0)


def test_popular_entry_is_prefetched_before_it_expires(
    start_dnsfilter: StartDnsFilter, upstream_a: ScriptedUpstream
) -> None:
    """TTL 10 s: the two hits have the last second (the prefetch window) to arrive in."""
    upstream_a.add("hot.example.test", "A", "192.0.2.40", ttl=10)
    server = start_dnsfilter(fault_config([upstream_a.address], prefetch_min_hits=2))
    started = time.monotonic()  # the entry is younger than this
    assert rdata_texts(server.udp("hot.example.test")) == ["192.0.2.40"]
    cached = time.monotonic()  # ...and older than this
    time.sleep(max(0.0, cached + 9.05 - time.monotonic()))  # into the last 10% of 10 s
    server.udp("hot.example.test")
    server.udp("hot.example.test")
    hit = time.monotonic()
    assert hit - started < 10.0, f"the hits came {hit - started:.2f} s on, after the window"
    assert wait_until(lambda: len(upstream_a.calls_for("hot.example.test")) == 2)
    assert server.metric("dnsfilter_cache_prefetches_total") == 1.0
    time.sleep(max(0.0, cached + 10.2 - time.monotonic()))  # the first answer has expired
    reply = server.udp("hot.example.test")
    assert rdata_texts(reply) == ["192.0.2.40"]
    assert reply.answer[0].ttl >= 4, "served from the refreshed entry"
    assert len(upstream_a.calls_for("hot.example.test")) == 2, "no miss at expiry"
    assert count(server, "forwarded") == 1
