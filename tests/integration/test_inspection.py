"""Answers are inspected: CNAME chains into blocked names, addresses inside banned networks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.edns
import pytest

from tests.integration.conftest import base_config
from tests.integration.harness import DnsFilter, demo_list, rdata_texts
from tests.nsd import NsdServer

pytestmark = pytest.mark.integration

BACKEND = demo_list(
    "backend",
    [{"domain": "www.example.test", "evidence": "test"}],
    networks=[{"prefix": "192.0.2.10/32", "evidence": "test"}],
)
ADDRESSES_ONLY = demo_list(
    "addresses", [], networks=[{"prefix": "192.0.2.0/28", "evidence": "test"}]
)


def _server(
    tmp_path: Path, nsd: NsdServer, policies: dict[str, Any], lists: list[str]
) -> DnsFilter:
    config = base_config(
        [nsd.address],
        networks={"strict": ["127.0.0.2/32"], "lax": ["127.0.0.3/32", "127.0.0.1/32"]},
        lists={name: {"file": f"{name}.yaml"} for name in lists},
        policies=policies,
    )
    return DnsFilter(tmp_path, config, {"backend": BACKEND, "addresses": ADDRESSES_ONLY})


def test_cname_into_a_blocked_name_is_blocked_per_policy(
    tmp_path: Path, nsd_upstream: NsdServer
) -> None:
    policies = {
        "strict": {"networks": ["strict"], "lists": ["backend"], "response_ip_blocking": False},
        "lax": {
            "networks": ["lax"],
            "lists": ["backend"],
            "cname_inspection": False,
            "response_ip_blocking": False,
        },
    }
    with _server(tmp_path, nsd_upstream, policies, ["backend"]) as server:
        for _ in range(2):  # the second time from the cache: still inspected per client
            strict = server.udp("alias.example.test", source="127.0.0.2", edns=True)
            assert rdata_texts(strict) == ["0.0.0.0"]
            assert [o.text for o in strict.options if isinstance(o, dns.edns.EDEOption)] == [
                "backend"
            ]
            lax = server.udp("alias.example.test", source="127.0.0.3")
            assert rdata_texts(lax) == ["192.0.2.10"], "this policy does not inspect CNAMEs"
        blocked = server.metric("dnsfilter_blocked_queries_total", network="strict", list="backend")
        assert blocked == 2
        assert server.metric("dnsfilter_queries_total", network="lax", result="cached") == 2


def test_addresses_inside_a_lists_networks_are_blocked(
    tmp_path: Path, nsd_upstream: NsdServer
) -> None:
    policies = {
        "strict": {"networks": ["strict"], "lists": ["addresses"], "mode": "nxdomain"},
        "lax": {"networks": ["lax"], "lists": ["addresses"], "response_ip_blocking": False},
    }
    with _server(tmp_path, nsd_upstream, policies, ["addresses"]) as server:
        assert server.udp("www.example.test", source="127.0.0.2").rcode() == 3  # NXDOMAIN
        aaaa = server.udp("www.example.test", "AAAA", source="127.0.0.2")
        assert rdata_texts(aaaa, "AAAA") == ["2001:db8::10"], "outside the banned prefix"
        outside = server.udp("anything.wild.example.test", source="127.0.0.2")
        assert rdata_texts(outside) == ["192.0.2.99"], "192.0.2.99 is not in 192.0.2.0/28"
        assert rdata_texts(server.udp("www.example.test", source="127.0.0.3")) == ["192.0.2.10"]
        # From the cache, the strict network is still protected.
        assert server.udp("www.example.test", source="127.0.0.2").rcode() == 3
