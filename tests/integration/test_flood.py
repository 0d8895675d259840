"""Flood tests: many loopback clients flooding a server whose upstream answers slowly, while
one well-behaved client keeps asking.

The floods come from tests/integration/flood.py in its own process: spoof-free sources
127.0.0.10 and up, random subdomains of example.test (each one a cache miss, forwarded to a
ScriptedUpstream that answers NXDOMAIN after a delay). Bounded in count and in time.

What must hold while the flood runs:
- the server's memory (VmRSS) stays under MEMORY_BOUND_MB;
- the legitimate client (127.0.0.200, within its rate) gets every answer, quickly when cached;
- the flooding clients are limited and counted (dnsfilter_ratelimited_clients, and
  dnsfilter_queries_total{result="ratelimited"});
- queries in flight never pass the caps and fall back to 0 afterwards.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import DnsFilter, make, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: The bound the server's resident memory must stay under during a flood (MB = 2**20 bytes).
#: A fresh server with the test lists uses about 34 MB and a flood adds under 10 (measured on
#: CPython 3.11 with uvloop); what it may add is bounded by the cache's negative entries
#: (cache.max_entries = 20000 here), the tracked clients (ratelimit.max_clients) and the
#: queries in flight (server.max_inflight).
MEMORY_BOUND_MB = 80
LEGIT = "127.0.0.200"
UPSTREAM_DELAY = 0.2


@dataclass
class Samples:
    rss_mb: list[float] = field(default_factory=list)
    inflight: list[float] = field(default_factory=list)


class Watcher(threading.Thread):
    """Samples the server's VmRSS every 50 ms and its in-flight gauge every 250 ms."""

    def __init__(self, server: DnsFilter) -> None:
        super().__init__(daemon=True)
        assert server.process is not None
        self.server = server
        self.status = Path(f"/proc/{server.process.pid}/status")
        self.samples = Samples()
        self.done = threading.Event()

    def rss_mb(self) -> float:
        for line in self.status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def run(self) -> None:
        tick = 0
        while not self.done.wait(0.05):
            self.samples.rss_mb.append(self.rss_mb())
            tick += 1
            if tick % 5 == 0:
                value = self.server.metric("dnsfilter_inflight_queries")
                self.samples.inflight.append(value or 0.0)


@dataclass
class Asked:
    cached: bool
    rcode: int | None  #: None: no answer within the timeout
    seconds: float


class LegitClient(threading.Thread):
    """One client at 10 queries a second (under any limit): a cached name, then a fresh one."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.asked: list[Asked] = []
        self.done = threading.Event()

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LEGIT, 0))
            sock.settimeout(5.0)
            n = 0
            while not self.done.wait(0.1):
                cached = n % 2 == 0
                qname = "www.example.test" if cached else f"legit{n}.example.test"
                self.asked.append(self._ask(sock, qname, n, cached))
                n += 1

    def _ask(self, sock: socket.socket, qname: str, n: int, cached: bool) -> Asked:
        query = make(qname)
        query.id = n
        started = time.monotonic()
        sock.sendto(query.to_wire(), ("127.0.0.1", self.port))
        while True:
            try:
                reply = dns.message.from_wire(sock.recv(4096))
            except TimeoutError:
                return Asked(cached, None, time.monotonic() - started)
            if reply.id == n:  # not a late answer to an earlier, timed-out query
                return Asked(cached, reply.rcode(), time.monotonic() - started)


def _flood(port: int, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "tests.integration.flood", "--port", str(port), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    report: dict[str, object] = json.loads(result.stdout)
    return report


def _run_flood(
    server: DnsFilter, flood_args: list[str]
) -> tuple[dict[str, object], Samples, list[Asked], float]:
    """Flood while the watcher samples and the legitimate client asks; return all of it."""
    watcher = Watcher(server)
    baseline = watcher.rss_mb()
    legit = LegitClient(server.port)
    watcher.start()
    legit.start()
    time.sleep(0.3)  # the legitimate client was there first
    try:
        report = _flood(server.port, *flood_args)
    finally:
        legit.done.set()
        watcher.done.set()
        legit.join(5)
        watcher.join(5)
    return report, watcher.samples, legit.asked, baseline


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _check_legit(asked: list[Asked]) -> str:
    # How many the client gets to ask during the flood depends on the machine's speed (five
    # on a loaded runner, where misses took 2.4 s): what must hold is that it asked both kinds
    # (it alternates cached and miss) and lost none.
    assert len(asked) >= 2, f"only {len(asked)} legitimate queries"
    lost = [a for a in asked if a.rcode is None]
    assert not lost, f"{len(lost)} of {len(asked)} legitimate queries unanswered"
    for a in asked:
        assert a.rcode == (dns.rcode.NOERROR if a.cached else dns.rcode.NXDOMAIN)
    cached = [a.seconds for a in asked if a.cached]
    missed = [a.seconds for a in asked if not a.cached]
    # Latency under a flood belongs to the benchmark; on a shared 2-core runner these bounds
    # (10x what a quiet machine measures) only catch a client starved outright. Every miss
    # was answered within the client's timeout already (no one lost).
    assert _percentile(cached, 0.95) < 1.0
    assert _percentile(missed, 0.95) < 10 * UPSTREAM_DELAY
    return (
        f"legit: {len(asked)} asked, all answered; cached p50 "
        f"{statistics.median(cached) * 1000:.1f} ms p95 {_percentile(cached, 0.95) * 1000:.1f} ms,"
        f" misses p50 {statistics.median(missed) * 1000:.0f} ms"
        f" p95 {_percentile(missed, 0.95) * 1000:.0f} ms"
    )


def _ratelimited_total(server: DnsFilter) -> float:
    """Flood queries (UDP, type A) turned away by a per-client limit."""
    value = server.metric(
        "dnsfilter_queries_total", result="ratelimited", protocol="udp", qtype="A"
    )
    return value or 0.0


def _start(
    start_dnsfilter: StartDnsFilter, upstream: ScriptedUpstream, **sections: object
) -> DnsFilter:
    upstream.add("www.example.test", "A", "192.0.2.10", ttl=3600)
    upstream.delay(UPSTREAM_DELAY)
    config = base_config(
        [upstream.address],
        # Room for retries when a loaded runner delays the scripted upstream (a legitimate
        # miss once ran out of a 1 s timeout with other work on both cores).
        upstream={"timeout": 3.0},
        cache={"max_entries": 20000},
        **sections,
    )
    server = start_dnsfilter(config)
    assert server.udp("www.example.test").answer[0][0].to_text() == "192.0.2.10"  # now cached
    return server


def test_random_subdomain_flood_from_many_clients(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    """40 clients, 40,000 random names at 8,000 a second: each client is held to its rate."""
    server = _start(
        start_dnsfilter,
        scripted_upstream,
        server={"max_inflight": 1024},
        ratelimit={"rate": 20, "burst": 40, "max_inflight": 16, "exempt_networks": []},
    )
    report, samples, asked, baseline = _run_flood(
        server, ["--sources", "40", "--count", "40000", "--rate", "8000"]
    )
    peak = max(samples.rss_mb)
    limited = _ratelimited_total(server)
    clients = server.metric("dnsfilter_ratelimited_clients")
    print(
        f"\nflood: {report}; RSS {baseline:.1f} MB before, peak {peak:.1f} MB;"
        f" peak in flight {max(samples.inflight, default=0):.0f};"
        f" ratelimited {limited:.0f} queries from {clients:.0f} clients\n{_check_legit(asked)}"
    )
    assert peak < MEMORY_BOUND_MB
    assert clients == 40  # every flooding client, and not the legitimate one
    sent = report["sent"]
    assert isinstance(sent, int)
    assert limited > 0.8 * sent
    assert max(samples.inflight, default=0) <= 1024
    assert wait_until(lambda: server.metric("dnsfilter_inflight_queries") == 0, 5)


def test_inflight_caps_keep_room_for_other_clients(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    """4 clients with no rate limit to speak of try to fill every in-flight slot; the per-client
    cap holds them to 4 x 32 of the server's 256, so the legitimate client's misses still go
    through."""
    server = _start(
        start_dnsfilter,
        scripted_upstream,
        server={"max_inflight": 256},
        ratelimit={
            "rate": 1_000_000,
            "burst": 1_000_000,
            "max_inflight": 32,
            "exempt_networks": [],
        },
    )
    report, samples, asked, baseline = _run_flood(
        server, ["--sources", "4", "--count", "20000", "--rate", "6000"]
    )
    peak = max(samples.rss_mb)
    limited = _ratelimited_total(server)
    print(
        f"\nin-flight flood: {report}; RSS {baseline:.1f} MB before, peak {peak:.1f} MB;"
        f" peak in flight {max(samples.inflight, default=0):.0f};"
        f" ratelimited {limited:.0f}\n{_check_legit(asked)}"
    )
    assert peak < MEMORY_BOUND_MB
    assert limited > 0  # the per-client cap turned queries away
    assert max(samples.inflight, default=0) <= 4 * 32 + 2  # the flooders' share, plus legit
    assert server.metric("dnsfilter_queries_total", result="dropped", protocol="udp") is None
    assert wait_until(lambda: server.metric("dnsfilter_inflight_queries") == 0, 5)
