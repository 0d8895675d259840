"""Forwarding end to end: real nsd upstream, cache, TTLs, truncation, failover, spoofing."""

from __future__ import annotations

import time
from collections.abc import Callable

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import rdata_texts
from tests.nsd import NEGATIVE_TTL, NsdServer

pytestmark = pytest.mark.integration


def test_forwards_to_nsd_and_caches(
    start_dnsfilter: StartDnsFilter, nsd_upstream: NsdServer
) -> None:
    server = start_dnsfilter(base_config([nsd_upstream.address]))
    first = server.udp("www.example.test", "A")
    assert rdata_texts(first) == ["192.0.2.10"]
    assert not first.flags & dns.flags.AA, "a forwarder's answers are not authoritative"
    alias = server.udp("alias.example.test", "A", edns=True)
    assert [r.rdtype for r in alias.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert rdata_texts(server.udp("www.example.test", "AAAA"), "AAAA") == ["2001:db8::10"]
    wild = server.udp("anything.wild.example.test", "A")
    assert rdata_texts(wild) == ["192.0.2.99"]


def test_cache_hit_makes_no_upstream_call_and_ttl_counts_down(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.add("www.example.test", "A", "192.0.2.10", ttl=100)
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    sent = time.monotonic()  # before the query: the entry is at most this old
    first = server.udp("www.example.test")
    cached = time.monotonic()  # after the answer: the entry is at least this old
    assert first.answer[0].ttl == 100
    time.sleep(2.1)
    asked = time.monotonic()
    second = server.udp("WWW.example.test", edns=True)
    answered = time.monotonic()
    assert rdata_texts(second) == ["192.0.2.10"]
    # Aged by what the clock says passed, however long a loaded machine took to get here.
    # (whole seconds, rounded either way).
    assert 100 - (answered - sent) - 1 <= second.answer[0].ttl <= 100 - int(asked - cached)
    assert second.question[0].name.to_text() == "WWW.example.test."
    assert second.edns == 0, "an EDNS client gets an OPT even from an entry cached without"
    assert len(scripted_upstream.calls) == 1


def test_cache_key_includes_do_bit(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    server.udp("www.example.test", edns=True)
    server.udp("www.example.test", edns=True, want_dnssec=True)
    server.udp("www.example.test", edns=True, want_dnssec=True)
    assert [c.do for c in scripted_upstream.calls] == [False, True]


def test_negative_answers_cached_for_soa_minimum(
    start_dnsfilter: StartDnsFilter, nsd_upstream: NsdServer
) -> None:
    server = start_dnsfilter(base_config([nsd_upstream.address]))
    first = server.udp("missing.example.test")
    assert first.rcode() == dns.rcode.NXDOMAIN
    assert first.authority[0].ttl == NEGATIVE_TTL
    time.sleep(1.1)
    second = server.udp("missing.example.test")
    assert second.rcode() == dns.rcode.NXDOMAIN
    assert second.authority[0].ttl < NEGATIVE_TTL, "served from the cache, aged"


def test_servfail_is_not_cached(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    scripted_upstream.servfail(name="www.example.test")
    assert server.udp("www.example.test").rcode() == dns.rcode.SERVFAIL
    scripted_upstream.behave(name="www.example.test")
    assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.10"]


def test_large_answer_truncated_for_udp_client_and_whole_over_tcp(
    start_dnsfilter: StartDnsFilter, nsd_upstream: NsdServer
) -> None:
    server = start_dnsfilter(base_config([nsd_upstream.address]))
    small = server.udp("big.example.test", "A")  # no EDNS: 512 bytes at most
    assert small.flags & dns.flags.TC
    assert small.answer == []
    edns = server.udp("big.example.test", "A", edns=True, payload=1232)
    assert not edns.flags & dns.flags.TC
    assert len(rdata_texts(edns)) == 40
    txt = server.udp("big.example.test", "TXT", edns=True, payload=4096)
    assert txt.flags & dns.flags.TC, "replies are capped at server.udp_payload_size (1232)"
    whole = server.tcp("big.example.test", "TXT")
    assert len(whole.answer[0]) == 40


def test_upstream_truncation_retried_over_tcp(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.add("www.example.test", "A", "192.0.2.10").truncate()
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.10"]
    assert [c.transport for c in scripted_upstream.calls] == ["udp", "tcp"]


def test_random_ids_and_source_ports_per_upstream_query(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    for i in range(20):
        server.udp(f"n{i}.example.test")
    calls = scripted_upstream.calls
    assert len(calls) == 20
    assert len({c.id for c in calls}) >= 18
    assert len({c.src[1] for c in calls}) >= 18


def test_timeout_fails_over_then_remembers_dead_upstream(
    start_dnsfilter: StartDnsFilter,
) -> None:
    with ScriptedUpstream() as dead, ScriptedUpstream() as alive:
        dead.drop()
        alive.add("www.example.test", "A", "192.0.2.10")
        alive.add("mail.example.test", "A", "192.0.2.25")
        # A timeout of 2.5 s: a query that waits for it stands out from one that does not,
        # on any machine; the harness's client waits up to 5 s.
        config = base_config([dead.address, alive.address], upstream={"timeout": 2.5})
        server = start_dnsfilter(config)
        started = time.monotonic()
        assert rdata_texts(server.udp("www.example.test", wait=5.0)) == ["192.0.2.10"]
        took = time.monotonic() - started
        assert 2.0 < took < 2 * 2.5, "the dead one was given its timeout first, once"
        # Its one query, and the retries within its timeout (0.4 s, then backing off).
        retried = server.metric("dnsfilter_upstream_retries_total", upstream=dead.address)
        assert len(dead.calls) == 1 + int(retried or 0)
        # The dead upstream is skipped for dead_time: the next miss goes straight through.
        started = time.monotonic()
        assert rdata_texts(server.udp("mail.example.test", wait=5.0)) == ["192.0.2.25"]
        assert time.monotonic() - started < 1.25, "not the dead one first (2.5 s)"
        assert len(dead.calls) == 1 + int(retried or 0)


def test_all_upstreams_failing_gives_servfail(start_dnsfilter: StartDnsFilter) -> None:
    with ScriptedUpstream() as first, ScriptedUpstream() as second:
        first.drop()
        second.refused()
        server = start_dnsfilter(base_config([first.address, second.address]))
        reply = server.udp("www.example.test", edns=True)
        assert reply.rcode() == dns.rcode.SERVFAIL
        retried = server.metric("dnsfilter_upstream_retries_total", upstream=first.address)
        assert len(first.calls) == 1 + int(retried or 0)
        assert len(second.calls) == 1  # it answered (REFUSED): nothing to retry
        assert server.udp("banned.example.test").rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize(
    ("misbehave", "answers"),
    [
        pytest.param(lambda up: up.wrong_id(then_correct=True), ["192.0.2.10"], id="wrong-id"),
        pytest.param(
            lambda up: up.wrong_question(then_correct=True), ["192.0.2.10"], id="wrong-question"
        ),
        pytest.param(lambda up: up.wrong_id(), None, id="only-wrong-id"),
        pytest.param(lambda up: up.garbage(keep_id=True), None, id="garbage-same-id"),
    ],
)
def test_non_matching_replies_are_ignored(
    start_dnsfilter: StartDnsFilter,
    scripted_upstream: ScriptedUpstream,
    misbehave: Callable[[ScriptedUpstream], object],
    answers: list[str] | None,
) -> None:
    scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    misbehave(scripted_upstream)
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    reply = server.udp("www.example.test")
    if answers is None:  # nothing acceptable arrived before the timeout
        assert reply.rcode() == dns.rcode.SERVFAIL
    else:
        assert rdata_texts(reply) == answers


def test_conditional_forwarding(
    start_dnsfilter: StartDnsFilter, nsd_upstream: NsdServer, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.add("www.example.test", "A", "192.0.2.200")
    config = base_config(
        [scripted_upstream.address], forward_zones={"corp.test": [nsd_upstream.address]}
    )
    server = start_dnsfilter(config)
    assert rdata_texts(server.udp("intranet.corp.test")) == ["10.1.2.3"]
    assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.200"]
    assert [c.qname for c in scripted_upstream.calls] == ["www.example.test"]
