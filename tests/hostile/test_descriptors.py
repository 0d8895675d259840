"""Descriptor exhaustion through the metrics port: DNS keeps the descriptors it needs.

The attack from the hardening issue: a server started with 1,024 descriptors (a shell's or
many containers' default), 3,000 idle connections to its metrics port, reopened as fast as
the server closes them. Without a budget every descriptor goes to them, and every cache miss
gets SERVFAIL (no socket for the upstream query) and TCP DNS stops.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.rcode
import pytest

from tests.hostile.connflood import IdleConnections, open_descriptors
from tests.integration.conftest import APPS_LIST, OTHER_LIST, base_config
from tests.integration.harness import DnsFilter, wait_until
from tests.nsd import NsdServer

pytestmark = pytest.mark.integration

LIMIT = 1024
ATTACKERS = [f"127.0.1.{n}" for n in range(1, 101)]  #: 100 addresses, 30 connections each


@pytest.fixture
def limited_server(tmp_path: Path, nsd_upstream: NsdServer) -> Iterator[DnsFilter]:
    config = base_config([nsd_upstream.address])
    server = DnsFilter(tmp_path, config, {"apps": APPS_LIST, "other": OTHER_LIST}, nofile=LIMIT)
    server.start()
    yield server
    code = server.stop()
    assert code == 0, f"dnsfilter exited with {code}:\n{server.log}"
    assert "Traceback" not in server.log, server.log


def _tcp_rcode(server: DnsFilter, name: str) -> str:
    try:
        return dns.rcode.to_text(server.tcp(name).rcode())
    except (OSError, EOFError, dns.exception.Timeout) as exc:
        return type(exc).__name__


def _room_for_the_flood(needed: int = 4096) -> None:
    """The attacker (this process) needs descriptors of its own for 3,000 connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"the test needs {needed} descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_idle_metrics_connections_leave_dns_its_descriptors(limited_server: DnsFilter) -> None:
    _room_for_the_flood()
    server = limited_server
    assert server.process is not None and server.metrics_address is not None
    pid = server.process.pid
    peak = 0
    with IdleConnections(server.metrics_address, 3000, ATTACKERS, reopen=1.0) as flood:
        # The attack is on once the server has refused a good part of the first wave.
        assert wait_until(lambda: flood.closed >= 1000, timeout=15), (
            f"the server closed {flood.closed} of {flood.opened} connections"
        )
        answers = []
        for n in range(30):
            peak = max(peak, open_descriptors(pid))
            reply = server.udp(f"miss-{n}-{time.monotonic_ns()}.wild.example.test")
            answers.append(dns.rcode.to_text(reply.rcode()))
        tcp = [_tcp_rcode(server, f"tcp-{n}.wild.example.test") for n in range(5)]
        peak = max(peak, open_descriptors(pid))
        held_during = flood.held
    assert answers == ["NOERROR"] * 30, "cache misses get their upstream sockets"
    assert tcp == ["NOERROR"] * 5, "TCP DNS keeps its share"
    # The side door got its share and no more: the rest of the 1,024 stayed free.
    assert peak < LIMIT // 2, f"{peak} descriptors open at the worst moment"
    assert flood.errors == []
    assert f"descriptor budget {LIMIT}:" in server.log
    # Once the flood is gone the endpoint answers again, and says what it refused.
    assert wait_until(lambda: server.http_get("/healthz")[0] == 200, timeout=10)
    budget = server.metric("dnsfilter_http_connections_rejected_total", reason="budget")
    per_address = server.metric("dnsfilter_http_connections_rejected_total", reason="per_address")
    assert budget is not None and budget > 0
    assert per_address is not None and per_address > 0
    print(
        f"peak descriptors {peak}/{LIMIT}; attacker sockets held {held_during}; "
        f"refused: {budget:.0f} at the budget's cap, {per_address:.0f} per address"
    )
