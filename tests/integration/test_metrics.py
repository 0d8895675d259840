"""The status endpoint of a running dnsfilter: /metrics, /healthz, /readyz."""

from __future__ import annotations

import pytest

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import wait_until

pytestmark = pytest.mark.integration


def _two_networks(upstream: str) -> dict[str, object]:
    return base_config(
        [upstream],
        networks={"ministry": ["127.0.0.2/32"], "agency": ["127.0.0.3/32", "::1/128"]},
        policies={
            "strict": {"networks": ["ministry"], "lists": ["apps", "other"]},
            "light": {"networks": ["agency"], "lists": ["other"]},
        },
    )


def test_blocked_attempts_counted_per_network_and_list(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.add("banned.example.test", "A", "192.0.2.80")
    server = start_dnsfilter(_two_networks(scripted_upstream.address))
    for _ in range(3):
        server.udp("a.banned.example.test", source="127.0.0.2")
    server.udp("b.banned.example.test", "AAAA", source="127.0.0.2")
    server.udp("other.example.test", source="127.0.0.2")
    server.udp("banned.example.test", source="127.0.0.3")  # allowed for agency: forwarded
    server.udp("www.example.test", source="127.0.0.1")  # in no network: refused

    def value(name: str, **labels: str) -> float | None:
        return server.metric(name, **labels)

    blocked = "dnsfilter_blocked_queries_total"
    assert value(blocked, network="ministry", list="apps", category="other") == 4
    assert value(blocked, network="ministry", list="other", category="other") == 1
    assert value(blocked, network="agency", list="apps") is None
    queries = "dnsfilter_queries_total"
    assert value(queries, network="ministry", protocol="udp", qtype="A", result="blocked") == 4
    assert value(queries, network="ministry", protocol="udp", qtype="AAAA", result="blocked") == 1
    assert value(queries, network="agency", protocol="udp", qtype="A", result="forwarded") == 1
    assert value(queries, network="none", protocol="udp", qtype="A", result="refused") == 1
    assert value("dnsfilter_blocked_clients", network="ministry", list="apps") == 1
    assert (
        value(
            "dnsfilter_upstream_requests_total", upstream=scripted_upstream.address, rcode="NOERROR"
        )
        == 1
    )
    assert value("dnsfilter_upstream_up", upstream=scripted_upstream.address) == 1
    assert value("dnsfilter_query_duration_seconds_count", result="blocked") == 5
    assert value("dnsfilter_list_entries", list="apps") == 3
    assert value("dnsfilter_cache_entries") == 1
    assert value("dnsfilter_build_info") == 1


def test_bad_packets_are_counted(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    server.raw_udp(b"\x00\x01\x02", wait=0.2)
    server.raw_udp(b"\x00\x07\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00")  # QDCOUNT 0
    labels = {"network": "loopback", "protocol": "udp", "qtype": "OTHER"}
    assert server.metric("dnsfilter_queries_total", result="dropped", **labels) == 1
    assert server.metric("dnsfilter_queries_total", result="formerr", **labels) == 1


def test_health_and_readiness(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    assert server.http_get("/healthz") == (200, "ok\n")
    # No health probes in this config: not ready until an upstream has answered once.
    assert server.http_get("/readyz") == (503, "no upstream has answered yet\n")
    server.udp("www.example.test")
    assert server.http_get("/readyz") == (200, "ready\n")
    assert server.http_get("/nope")[0] == 404


def test_health_probes_make_it_ready_without_traffic(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    config = base_config([scripted_upstream.address], upstream={"health_check_interval": 0.2})
    server = start_dnsfilter(config)
    assert wait_until(lambda: server.http_get("/readyz")[0] == 200, timeout=5)
    assert any(call.qname == "" and call.qtype == "NS" for call in scripted_upstream.calls)
    scripted_upstream.drop()
    assert wait_until(lambda: server.http_get("/readyz")[0] == 503, timeout=5)
    assert server.metric("dnsfilter_upstream_up", upstream=scripted_upstream.address) == 0
