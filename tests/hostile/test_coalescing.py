"""Identical misses in flight share one upstream query (issue 16, item 4).

A burst of the same question for one uncached name is what a cache-busting flood and a
birthday-spoofing attack (RFC 5452 section 5) both look like: every extra query in flight is
one more chance for a spoofed reply to match. The real server is played with a burst over UDP
and TCP against a real DNS server on loopback that answers slowly and counts what it gets.
"""

from __future__ import annotations

import selectors
import socket

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import TIMEOUT, DnsFilter, rdata_texts, wait_until

pytestmark = pytest.mark.integration

NAME = "slow.example.test"
#: Long enough that every query of the burst arrives while the first is still upstream.
UPSTREAM_DELAY = 1.5


def burst(port: int, count: int, dnssec_ok: tuple[bool, ...] = (False,)) -> list[bytes]:
    """Send count questions for NAME (each its own socket and ID) at once, the DO bit of
    each taken from dnssec_ok in turn; the replies."""
    selector = selectors.DefaultSelector()
    sockets = []
    expected: dict[socket.socket, int] = {}
    for number in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        want_dnssec = dnssec_ok[number % len(dnssec_ok)]
        query = dns.message.make_query(NAME, "A", use_edns=0, want_dnssec=want_dnssec)
        query.id = 1000 + number
        expected[sock] = query.id
        sock.sendto(query.to_wire(), ("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_READ)
        sockets.append(sock)
    replies: list[bytes] = []
    try:
        while len(replies) < count:
            ready = selector.select(UPSTREAM_DELAY + TIMEOUT * 2)
            if not ready:
                break
            for key, _ in ready:
                answered = key.fileobj
                assert isinstance(answered, socket.socket)
                data = answered.recv(4096)
                assert int.from_bytes(data[:2], "big") == expected[answered]
                replies.append(data)
                selector.unregister(answered)
    finally:
        for sock in sockets:
            sock.close()
    return replies


@pytest.fixture
def slow_upstream(scripted_upstream: ScriptedUpstream) -> ScriptedUpstream:
    scripted_upstream.add(NAME, "A", "192.0.2.44", ttl=300).delay(UPSTREAM_DELAY, name=NAME)
    return scripted_upstream


def retries(server: DnsFilter, upstream: ScriptedUpstream) -> int:
    """UDP tries sent again to the slow upstream: each flight's retransmissions (issue 17)
    reach it too, and are the only other queries it may see."""
    value = server.metric("dnsfilter_upstream_retries_total", upstream=upstream.address)
    return int(value or 0)


def _config(upstream: ScriptedUpstream, **server: object) -> dict[str, object]:
    return base_config(
        [upstream.address],
        upstream={"timeout": UPSTREAM_DELAY + 2},
        ratelimit={"enabled": False},
        **({"server": server} if server else {}),
    )


def test_a_burst_of_one_question_is_one_upstream_query(
    start_dnsfilter: StartDnsFilter, slow_upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(_config(slow_upstream))
    replies = burst(server.port, 100)
    assert len(replies) == 100
    for data in replies:
        message = dns.message.from_wire(data)
        assert message.rcode() == dns.rcode.NOERROR
        assert rdata_texts(message) == ["192.0.2.44"]
    assert len(slow_upstream.calls_for(NAME)) == 1 + retries(server, slow_upstream)
    assert server.metric("dnsfilter_coalesced_queries_total", outcome="joined") == 99
    assert server.metric("dnsfilter_coalesced_queries_total", outcome="refused") == 0


def test_tcp_queries_wait_on_the_same_flight(
    start_dnsfilter: StartDnsFilter, slow_upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(_config(slow_upstream))
    first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    first.sendto(dns.message.make_query(NAME, "A").to_wire(), ("127.0.0.1", server.port))
    assert wait_until(lambda: len(slow_upstream.calls_for(NAME)) >= 1)
    tcp = dns.query.tcp(
        dns.message.make_query(NAME, "A"), "127.0.0.1", port=server.port, timeout=TIMEOUT * 2
    )
    first.close()
    assert rdata_texts(tcp) == ["192.0.2.44"]
    assert len(slow_upstream.calls_for(NAME)) == 1 + retries(server, slow_upstream)
    assert server.metric("dnsfilter_coalesced_queries_total", outcome="joined") == 1


def test_different_dnssec_ok_bits_are_different_flights(
    start_dnsfilter: StartDnsFilter, slow_upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(_config(slow_upstream))
    assert len(burst(server.port, 6, dnssec_ok=(False, True))) == 6
    assert len(slow_upstream.calls_for(NAME)) == 2 + retries(server, slow_upstream)
    assert server.metric("dnsfilter_coalesced_queries_total", outcome="joined") == 4


def test_waiters_past_the_cap_get_servfail(
    start_dnsfilter: StartDnsFilter, slow_upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(_config(slow_upstream, max_waiters=10))
    replies = burst(server.port, 30)
    rcodes = sorted(dns.message.from_wire(data).rcode() for data in replies)
    assert rcodes == [dns.rcode.NOERROR] * 11 + [dns.rcode.SERVFAIL] * 19
    assert len(slow_upstream.calls_for(NAME)) == 1 + retries(server, slow_upstream)
    assert server.metric("dnsfilter_coalesced_queries_total", outcome="joined") == 10
    assert server.metric("dnsfilter_coalesced_queries_total", outcome="refused") == 19
