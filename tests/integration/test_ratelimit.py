"""Per-client rate limits and RFC 8482 ANY answers on a running server."""

from __future__ import annotations

import socket

import dns.edns
import dns.rcode
import dns.rdatatype
import pytest

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.nsd import NsdServer

pytestmark = pytest.mark.integration


def test_a_client_over_its_rate_is_refused_and_counted(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    config = base_config(
        [scripted_upstream.address],
        ratelimit={"rate": 0.5, "burst": 2, "action": "refused", "exempt_networks": ["::1/128"]},
    )
    server = start_dnsfilter(config)
    first = [server.udp("www.example.test", source="127.0.0.5").rcode() for _ in range(2)]
    assert first == [dns.rcode.NOERROR] * 2
    over = server.udp("www.example.test", source="127.0.0.5", edns=True)
    assert over.rcode() == dns.rcode.REFUSED
    assert [(o.code, o.text) for o in over.options if isinstance(o, dns.edns.EDEOption)] == [
        (dns.edns.EDECode.OTHER, "rate limited")
    ]
    over_tcp = server.tcp("www.example.test", host="127.0.0.1")  # from 127.0.0.1: its own bucket
    assert over_tcp.rcode() == dns.rcode.NOERROR
    assert server.udp("www.example.test", source="127.0.0.6").rcode() == dns.rcode.NOERROR
    # ::1 is exempt: never limited.
    v6_port = server.address(socket.AF_INET6)[1]
    for _ in range(5):
        assert server.udp("www.example.test", host="::1", port=v6_port).rcode() == 0
    assert server.metric("dnsfilter_ratelimited_clients") == 1
    assert server.metric("dnsfilter_queries_total", result="ratelimited", protocol="udp") == 1
    assert len(scripted_upstream.calls_for("www.example.test")) == 1  # the rest were cached


def test_any_is_minimal_only_for_a_name_that_has_records(
    start_dnsfilter: StartDnsFilter, nsd_upstream: NsdServer
) -> None:
    """RFC 8482 lets a responder answer ANY with a subset; it does not let it make a name
    exist (RFC 8020) or put a HINFO beside a CNAME: what the upstream says of those stands."""
    server = start_dnsfilter(base_config([nsd_upstream.address]))
    for reply in (server.udp("www.example.test", "ANY"), server.tcp("www.example.test", "ANY")):
        assert reply.rcode() == dns.rcode.NOERROR
        assert [(r.rdtype, r[0].to_text()) for r in reply.answer] == [
            (dns.rdatatype.HINFO, '"RFC8482" ""')
        ]
    # The UDP query filled the cache with the minimal answer; the TCP one was served from it.
    assert (
        server.metric("dnsfilter_queries_total", result="minimal", qtype="ANY", protocol="udp") == 1
    )
    assert (
        server.metric("dnsfilter_queries_total", result="cached", qtype="ANY", protocol="tcp") == 1
    )
    missing = server.udp("nothing-here.example.test", "ANY")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert [r.rdtype for r in missing.authority] == [dns.rdatatype.SOA]
    alias = server.udp("alias.example.test", "ANY")
    assert [(r.rdtype, r[0].to_text()) for r in alias.answer] == [
        (dns.rdatatype.CNAME, "www.example.test.")
    ]
    # wild.example.test owns nothing but has *.wild below it: an empty non-terminal.
    empty = server.udp("wild.example.test", "ANY")
    assert (empty.rcode(), empty.answer) == (dns.rcode.NOERROR, [])
    assert [r.rdtype for r in empty.authority] == [dns.rdatatype.SOA]
    assert server.udp("banned.example.test", "ANY").answer == []  # blocked: null mode, NODATA
