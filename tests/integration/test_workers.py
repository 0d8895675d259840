"""server.workers: 2 -- two processes on the same port, one /metrics, reloads, stops, crashes."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
from pathlib import Path
from typing import Any

import dns.message
import pytest
import yaml

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import TIMEOUT, DnsFilter, demo_list, make, rdata_texts, wait_until

pytestmark = pytest.mark.integration

#: Source ports each test spreads its queries over: the kernel picks a worker's socket by a
#: hash of the client's address and port, so 64 ports all landing on one of two workers would
#: happen once in 2**63 runs.
PORTS = 64


def _from_many_ports(
    server: DnsFilter, qname: str, count: int = PORTS
) -> list[dns.message.Message]:
    """Ask qname once from each of count fresh UDP sockets (so from count source ports)."""
    replies = []
    for _ in range(count):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.sendto(make(qname).to_wire(), ("127.0.0.1", server.port))
            replies.append(dns.message.from_wire(sock.recv(65535)))
    return replies


def _worker_pids(server: DnsFilter) -> list[int]:
    """The pids the supervisor last said were serving."""
    found = re.findall(r"workers serving \(pids ([\d ]+)\)", server.log)
    return [int(pid) for pid in found[-1].split()]


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(child) for child in path.read_text().split()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _queries_total(server: DnsFilter) -> float:
    _, body = server.http_get("/metrics")
    return sum(
        float(value)
        for value in re.findall(r"^dnsfilter_queries_total\{[^}]*\} (\S+)$", body, re.MULTILINE)
    )


def _workers_config(upstream: ScriptedUpstream) -> dict[str, Any]:
    return base_config([upstream.address], server={"workers": 2}, reload={"watch_files": False})


def test_both_workers_answer_and_metrics_are_their_sum(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    scripted_upstream.add("www.example.test", "A", "192.0.2.10", ttl=300)
    server = start_dnsfilter(_workers_config(scripted_upstream))
    assert server.process is not None
    assert _children(server.process.pid) == set(_worker_pids(server))
    assert len(_worker_pids(server)) == 2
    forwarded = _from_many_ports(server, "www.example.test")
    assert all(rdata_texts(reply) == ["192.0.2.10"] for reply in forwarded)
    # Each worker has a cache of its own: the upstream was asked once per worker, so twice.
    assert [call.qname for call in scripted_upstream.calls] == ["www.example.test"] * 2
    blocked = _from_many_ports(server, "banned.example.test")
    assert all(rdata_texts(reply) == ["0.0.0.0"] for reply in blocked)
    # One /metrics for both: the counters are the sums of the workers'.
    assert _queries_total(server) == 2 * PORTS
    assert server.metric("dnsfilter_cache_misses_total") == 2
    assert server.metric("dnsfilter_cache_hits_total") == PORTS - 2
    assert server.metric("dnsfilter_cache_entries") == 2
    assert server.metric("dnsfilter_blocked_queries_total", list="apps") == PORTS
    assert server.metric("dnsfilter_blocked_clients", list="apps") == 1  # 127.0.0.1, once
    assert server.metric("dnsfilter_workers") == 2
    assert server.metric("dnsfilter_worker_up", worker="0") == 1
    assert server.metric("dnsfilter_worker_up", worker="1") == 1
    assert server.metric("dnsfilter_worker_restarts_total") == 0
    assert server.http_get("/readyz") == (200, "ready\n")
    # Both workers wrote their blocked queries to the one audit store.
    assert server.stop() == 0
    with sqlite3.connect(tmp_path / "audit.sqlite3") as db:
        rows = db.execute("SELECT qname, count(*) FROM events GROUP BY qname").fetchall()
    assert rows == [("banned.example.test", PORTS)]


def test_sighup_reloads_every_worker_and_a_failed_reload_keeps_the_lists(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    scripted_upstream.add("www.example.test", "A", "192.0.2.10", ttl=300)
    server = start_dnsfilter(_workers_config(scripted_upstream))
    assert server.process is not None
    before = _worker_pids(server)
    assert all(
        rdata_texts(r) == ["0.0.0.0"] for r in _from_many_ports(server, "banned.example.test")
    )
    entries = [{"domain": "www.example.test", "evidence": "test"}]
    (tmp_path / "apps.yaml").write_text(yaml.safe_dump(demo_list("apps", entries)))
    server.process.send_signal(signal.SIGHUP)
    assert wait_until(lambda: server.log.count("reloaded (SIGHUP)") == 1), server.log
    after = _worker_pids(server)
    assert not set(after) & set(before), "the workers were replaced"
    assert all(rdata_texts(r) == ["0.0.0.0"] for r in _from_many_ports(server, "www.example.test"))
    # Dropped from the list: forwarded now (the scripted upstream knows no such name).
    assert all(r.answer == [] for r in _from_many_ports(server, "banned.example.test"))
    assert wait_until(lambda: not any(_alive(pid) for pid in before)), "old workers are gone"
    # A list that does not load: the workers in use stay, with the lists in use.
    (tmp_path / "apps.yaml").write_text("name: apps\ndomains: [NO]\n")
    server.process.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "failed, keeping the lists in use" in server.log)
    assert _worker_pids(server) == after
    assert all(rdata_texts(r) == ["0.0.0.0"] for r in _from_many_ports(server, "www.example.test"))
    assert server.metric("dnsfilter_list_reload_failures_total", list="apps") == 1
    # The counts of the replaced workers are kept.
    assert _queries_total(server) == 4 * PORTS


def test_sigterm_stops_every_worker_and_exits_0(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(_workers_config(scripted_upstream))
    pids = _worker_pids(server)
    assert all(_alive(pid) for pid in pids)
    assert server.stop() == 0
    assert not any(_alive(pid) for pid in pids)


def test_a_killed_worker_is_started_again(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(_workers_config(scripted_upstream))
    assert server.process is not None
    _from_many_ports(server, "banned.example.test")
    counted = _queries_total(server)  # the supervisor now holds every worker's counts
    victim = _worker_pids(server)[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: "exited with status 137; starting it again" in server.log)
    assert wait_until(lambda: server.metric("dnsfilter_workers") == 2)
    assert victim not in _children(server.process.pid)
    assert len(_children(server.process.pid)) == 2
    assert server.metric("dnsfilter_worker_restarts_total") == 1
    assert all(
        rdata_texts(r) == ["0.0.0.0"] for r in _from_many_ports(server, "banned.example.test")
    )
    # The killed worker's counts, as of the last scrape, are not lost.
    assert _queries_total(server) == counted + PORTS
