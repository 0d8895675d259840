"""Fixtures that run the real `dnsfilter serve` against real and scripted upstreams."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import DnsFilter, demo_list

#: The lists most integration tests block with.
APPS_LIST = demo_list(
    "apps",
    [
        {"domain": "banned.example.test", "evidence": "test"},
        {"domain": "canary.example.test", "evidence": "test", "mode": "nxdomain"},
        "plain.example.test",
    ],
    exceptions=[{"domain": "ok.banned.example.test", "evidence": "test"}],
)
OTHER_LIST = demo_list("other", [{"domain": "other.example.test", "evidence": "test"}])


def base_config(upstreams: list[str], **sections: Any) -> dict[str, Any]:
    """A config on 127.0.0.1:0 and [::1]:0 whose loopback network blocks the apps list.

    server, upstream, metrics and audit sections given are merged into the defaults; others
    replace them. The audit store is audit.sqlite3 beside the config, in the test's tmp_path.
    """
    config: dict[str, Any] = {
        "server": {"listen": ["127.0.0.1:0", "[::1]:0"]},
        "metrics": {"listen": "127.0.0.1:0"},
        # No health probes: tests count the queries their upstreams receive.
        "upstream": {
            "servers": upstreams,
            "timeout": 0.5,
            "dead_time": 30,
            "health_check_interval": 0,
        },
        "networks": {"loopback": ["127.0.0.0/8", "::1/128"]},
        "lists": {"apps": {"file": "apps.yaml"}, "other": {"file": "other.yaml"}},
        "policies": {"default": {"networks": ["loopback"], "lists": ["apps"]}},
        # Relative to the config file: never the real home directory's state.
        "audit": {"sqlite_path": "audit.sqlite3"},
    }
    for key, value in sections.items():
        if key in ("server", "upstream", "metrics", "audit"):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


StartDnsFilter = Callable[..., DnsFilter]


@pytest.fixture
def start_dnsfilter(tmp_path: Path) -> Iterator[StartDnsFilter]:
    """Start dnsfilter with a config dict (the apps and other lists are written beside it)."""
    started: list[DnsFilter] = []

    def start(config: dict[str, Any] | None, args: list[str] | None = None) -> DnsFilter:
        server = DnsFilter(tmp_path, config, {"apps": APPS_LIST, "other": OTHER_LIST}, args)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        code = server.stop()
        assert code == 0, f"dnsfilter exited with {code}:\n{server.log}"
        assert "Traceback" not in server.log, server.log
