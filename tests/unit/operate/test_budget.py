"""dnsfilter.operate.budget: the descriptor limit split into shares, and connection slots per
client."""

from __future__ import annotations

import dataclasses
import resource
from typing import Any

import pytest

from dnsfilter.config import Config, MetricsConfig, ServerConfig, parse_config, with_overrides
from dnsfilter.errors import ConfigError
from dnsfilter.operate.budget import (
    BACKGROUND,
    RESERVED,
    ConnectionSlots,
    client_key,
    plan_budget,
    raise_descriptor_limit,
)

CONFIG = parse_config(
    """
server: {listen: ["127.0.0.1:53", "[::1]:53"]}
upstream: {servers: ["192.0.2.1", "tls://192.0.2.2"]}
""",
    "cfg.yaml",
    None,
)


def _with(server: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None) -> Config:
    return dataclasses.replace(
        CONFIG,
        server=dataclasses.replace(CONFIG.server, **(server or {})),
        metrics=dataclasses.replace(CONFIG.metrics, **(metrics or {})),
    )


def test_a_1024_limit_lowers_the_caps_to_fit() -> None:
    budget = plan_budget(1024, CONFIG)
    left = 1024 - RESERVED - 5  # two listen addresses (UDP + TCP each) and metrics
    assert (budget.listeners, budget.tcp, budget.http) == (5, left // 4, left // 16)
    assert budget.upstream == left - budget.tcp - budget.http
    # One socket per query in flight, besides the refreshes and the DoT server's connections.
    assert budget.inflight == budget.upstream - BACKGROUND - 2
    assert budget.tcp_lowered and budget.http_lowered and budget.inflight_lowered
    total = budget.reserved + budget.listeners + budget.upstream + budget.tcp + budget.http
    assert total == 1024, "every descriptor is in exactly one share"


def test_a_large_limit_keeps_the_configured_caps() -> None:
    budget = plan_budget(65536, CONFIG)
    server, metrics = ServerConfig(), MetricsConfig()
    assert budget.tcp == server.max_tcp_connections
    assert budget.http == metrics.max_connections
    assert budget.inflight == server.max_inflight
    assert not (budget.tcp_lowered or budget.http_lowered or budget.inflight_lowered)


def test_a_tiny_limit_still_leaves_one_of_each() -> None:
    budget = plan_budget(10, CONFIG)
    assert (budget.tcp, budget.http, budget.inflight) == (1, 1, 1)


def test_no_http_share_without_metrics() -> None:
    config = dataclasses.replace(CONFIG, metrics=MetricsConfig(enabled=False))
    budget = plan_budget(1024, config)
    assert budget.http == 0 and budget.listeners == 4 and not budget.http_lowered


def test_smaller_configured_caps_are_kept() -> None:
    budget = plan_budget(1024, _with({"max_tcp_connections": 10}, {"max_connections": 4}))
    assert (budget.tcp, budget.http) == (10, 4)
    assert not budget.tcp_lowered and not budget.http_lowered


def test_soft_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lower = min(soft, 512)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
    try:
        expected = hard if hard != resource.RLIM_INFINITY else 65536
        assert raise_descriptor_limit() == expected
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == expected
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param("192.0.2.1", "192.0.2.1", True, id="ipv4-same"),
        pytest.param("192.0.2.1", "192.0.2.2", False, id="ipv4-neighbour"),
        pytest.param("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", True, id="ipv6-same-64"),
        pytest.param("2001:db8:1:2::1", "2001:db8:1:3::1", False, id="ipv6-other-64"),
        pytest.param("fe80::1%eth0", "fe80::2%eth1", True, id="ipv6-scoped"),
    ],
)
def test_clients_are_ipv4_addresses_and_ipv6_64s(a: str, b: str, same: bool) -> None:
    assert (client_key(a) == client_key(b)) is same


def test_slots_refuse_per_client_then_globally() -> None:
    slots = ConnectionSlots(total=3, per_client=2)
    taken = [slots.take("192.0.2.1"), slots.take("192.0.2.1")]
    assert [reason for _, reason in taken] == ["", ""]
    assert slots.take("192.0.2.1")[1] == "per_address"
    assert slots.take("192.0.2.2")[1] == ""
    assert slots.take("192.0.2.3")[1] == "global"
    slots.give_back(taken[0][0])
    assert slots.take("192.0.2.3")[1] == ""
    assert slots.count == 3
    assert slots.by_client == {"192.0.2.1": 1, "192.0.2.2": 1, "192.0.2.3": 1}


def test_slots_lowered_by_the_budget_say_so() -> None:
    slots = ConnectionSlots(total=1, per_client=5, lowered=True)
    slots.take("192.0.2.1")
    assert slots.take("192.0.2.2")[1] == "budget"


def test_given_back_clients_are_forgotten() -> None:
    slots = ConnectionSlots(total=10, per_client=10)
    keys = [slots.take(f"2001:db8:{n}::1")[0] for n in range(5)]
    for key in keys:
        slots.give_back(key)
    assert slots.count == 0 and slots.by_client == {}


def test_the_caps_are_configured_with_bounds() -> None:
    config = parse_config(
        """
server: {max_tcp_per_client: 4, max_tcp_queued_bytes: 4096}
metrics: {max_connections: 10, max_connections_per_client: 2, request_timeout: 0.5}
""",
        "cfg.yaml",
        None,
    )
    assert (config.server.max_tcp_per_client, config.server.max_tcp_queued_bytes) == (4, 4096)
    metrics = config.metrics
    assert (metrics.max_connections, metrics.max_connections_per_client) == (10, 2)
    assert metrics.request_timeout == 0.5
    with pytest.raises(ConfigError) as info:
        parse_config(
            """
server: {max_tcp_per_client: 0, max_tcp_queued_bytes: 100}
metrics: {max_connections: 0, max_connections_per_client: 70000, request_timeout: 0}
""",
            "cfg.yaml",
            None,
        )
    assert info.value.problems == [
        "cfg.yaml:2: server.max_tcp_per_client: must be between 1 and 65536 (got 0)",
        "cfg.yaml:2: server.max_tcp_queued_bytes: must be between 512 and 67108864 (got 100)",
        "cfg.yaml:3: metrics.max_connections: must be between 1 and 65536 (got 0)",
        "cfg.yaml:3: metrics.max_connections_per_client: must be between 1 and 65536 (got 70000)",
        "cfg.yaml:3: metrics.request_timeout: must be greater than 0 and at most 60 (got 0)",
    ]


def test_metrics_listen_flag_keeps_the_metrics_caps() -> None:
    config = parse_config("metrics: {max_connections: 5}\n", "cfg.yaml", None)
    overridden = with_overrides(config, metrics_listen="127.0.0.1:9999")
    assert overridden.metrics.max_connections == 5
    assert overridden.metrics.listen.port == 9999
