"""CNAME chains that an authoritative upstream leaves unfinished are finished by dnsfilter
(issue 13): two real nsd servers, each authoritative for one zone, the second reached
through forward_zones. nsd answers only from its own zone, so a CNAME into the other zone
arrives alone; a recursive resolver asks again for the target (RFC 1034 5.3.3), as unbound
does as a forwarder (tests/conformance: outside.conf.test)."""

from __future__ import annotations

from collections.abc import Iterator

import dns.rcode
import dns.rdatatype
import pytest

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import DnsFilter
from tests.nsd import NsdServer

pytestmark = pytest.mark.integration

_SOA = "@ IN SOA ns1 hostmaster 1 3600 900 604800 {minimum}\n@ IN NS ns1\nns1 IN A 192.0.2.1\n"
OFFICE_ZONE = (
    "$ORIGIN office.test.\n$TTL 300\n"
    + _SOA.format(minimum=60)
    + """\
www     IN CNAME web.cdn.test.
gone    IN CNAME nothing.cdn.test.
twice   IN CNAME hop.cdn.test.
bounce  IN CNAME back.cdn.test.
again   IN CNAME www
tracker IN CNAME t.banned.example.test.
"""
)
CDN_ZONE = (
    "$ORIGIN cdn.test.\n$TTL 300\n"
    + _SOA.format(minimum=120)
    + """\
web     IN A     192.0.2.77
web     IN AAAA  2001:db8::77
hop     IN CNAME www.office.test.
back    IN CNAME bounce.office.test.
"""
)


@pytest.fixture(scope="module")
def office() -> Iterator[NsdServer]:
    with NsdServer(zones={"office.test": OFFICE_ZONE}, host="127.0.0.1") as server:
        yield server


@pytest.fixture(scope="module")
def cdn() -> Iterator[NsdServer]:
    with NsdServer(zones={"cdn.test": CDN_ZONE}, host="127.0.0.1") as server:
        yield server


@pytest.fixture(scope="module")
def banned() -> Iterator[ScriptedUpstream]:
    """The banned app's zone, on an upstream that records what it is asked."""
    with ScriptedUpstream(zone="banned.example.test") as upstream:
        upstream.add("t.banned.example.test", "A", "192.0.2.66", ttl=300)
        yield upstream


@pytest.fixture
def server(
    start_dnsfilter: StartDnsFilter, office: NsdServer, cdn: NsdServer, banned: ScriptedUpstream
) -> DnsFilter:
    config = base_config(
        [office.address],
        forward_zones={
            "cdn.test": [cdn.address],
            "banned.example.test": [f"127.0.0.1:{banned.port}"],
        },
    )
    return start_dnsfilter(config)


def _chain(reply: dns.message.Message) -> list[str]:
    return [
        f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"
        for rrset in reply.answer
        for rdata in rrset
    ]


def test_cname_into_another_zone_is_followed(server: DnsFilter) -> None:
    reply = server.udp("www.office.test")
    assert reply.rcode() == dns.rcode.NOERROR
    assert _chain(reply) == [
        "www.office.test. CNAME web.cdn.test.",
        "web.cdn.test. A 192.0.2.77",
    ]
    # The joined answer is cached whole: asked again, no upstream is asked.
    forwarded = server.metric("dnsfilter_queries_total", result="forwarded", protocol="udp")
    again = server.tcp("www.office.test", "A")
    assert _chain(again) == _chain(reply)
    assert server.metric("dnsfilter_queries_total", result="cached", protocol="tcp") == 1
    assert server.metric("dnsfilter_queries_total", result="forwarded", protocol="udp") == forwarded


def test_target_that_does_not_exist_gives_its_zones_nxdomain(server: DnsFilter) -> None:
    reply = server.udp("gone.office.test", "AAAA")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert _chain(reply) == ["gone.office.test. CNAME nothing.cdn.test."]
    assert [str(rrset.name) for rrset in reply.authority] == ["cdn.test."]
    assert reply.authority[0].rdtype == dns.rdatatype.SOA


def test_chain_through_both_zones_and_back(server: DnsFilter) -> None:
    """office -> cdn -> office -> cdn: three chases, each to the zone's own server."""
    reply = server.udp("twice.office.test", "AAAA")
    assert reply.rcode() == dns.rcode.NOERROR
    assert _chain(reply) == [
        "twice.office.test. CNAME hop.cdn.test.",
        "hop.cdn.test. CNAME www.office.test.",
        "www.office.test. CNAME web.cdn.test.",
        "web.cdn.test. AAAA 2001:db8::77",
    ]


def test_loop_across_zones_is_servfail(server: DnsFilter) -> None:
    reply = server.udp("bounce.office.test")
    assert reply.rcode() == dns.rcode.SERVFAIL


def test_target_in_a_blocked_zone_is_blocked(server: DnsFilter, banned: ScriptedUpstream) -> None:
    """tracker.office.test leads into banned.example.test, on the apps list: CNAME
    inspection blocks the answer, and the chase stops before the banned name, which so
    never reaches the banned app's servers."""
    reply = server.udp("tracker.office.test")
    assert _chain(reply) == ["tracker.office.test. A 0.0.0.0"]
    assert server.metric("dnsfilter_queries_total", result="blocked", protocol="udp") == 1
    assert banned.calls == []


def test_in_zone_chain_is_not_chased_again(server: DnsFilter, office: NsdServer) -> None:
    """nsd follows again -> www itself; the rest is one chase."""
    reply = server.udp("again.office.test")
    assert _chain(reply) == [
        "again.office.test. CNAME www.office.test.",
        "www.office.test. CNAME web.cdn.test.",
        "web.cdn.test. A 192.0.2.77",
    ]
