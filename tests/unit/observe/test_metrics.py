"""Worker snapshots: what a worker hands over, and how the supervisor adds them up."""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from dnsfilter.observe.metrics import BLOCKED_CLIENT_WINDOW, Metrics, Snapshot, WorkerStats


@dataclass
class FakeCache:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    prefetches: int = 0
    entries: int = 0

    def __len__(self) -> int:
        return self.entries


@dataclass
class FakeServer:
    inflight: int = 0
    limited: int = 0

    def inflight_count(self) -> int:
        return self.inflight

    def ratelimited_clients(self) -> int:
        return self.limited


def _worker(queries: int, client: str, cache_entries: int, up: bool) -> Metrics:
    """A worker's metrics after `queries` blocked A queries over UDP from client."""
    metrics = Metrics(CollectorRegistry())
    stats = metrics.queries
    stats.queries[("lan", "udp", "A", "blocked")] += queries
    stats.blocked[("lan", "apps", "other")] += queries
    stats.duration("blocked").observe(0.0001)
    stats.blocked_client("lan", "apps", client, time.monotonic())
    stats.tcp_rejected["per_address"] = 1
    stats.tcp_closed["unread_replies"] = 1
    stats.tcp_paused = 3
    metrics.upstreams.socket_errors["EMFILE"] = 4
    metrics.upstreams.observe("192.0.2.1:53", "NOERROR", 0.01, up)
    metrics.watch_cache(
        FakeCache(hits=3, misses=2, evictions=1, prefetches=0, entries=cache_entries)
    )
    metrics.watch_server(FakeServer(inflight=4, limited=1))
    metrics.audit.bind(["sqlite"])
    metrics.audit.lost("buffer_full", 5)
    metrics.audit.healthy["sqlite"] = up
    return metrics


def _merged(*snapshots: Snapshot) -> CollectorRegistry:
    merged = Snapshot()
    for snapshot in snapshots:
        merged.add(snapshot)
    supervisor = Metrics(CollectorRegistry(), workers=WorkerStats({0: True, 1: False}, 2))
    supervisor.show(merged)
    return supervisor.registry


def test_counters_and_summed_gauges_are_added_up() -> None:
    one = _worker(10, "192.0.2.7", cache_entries=100, up=False).snapshot()
    two = _worker(20, "192.0.2.8", cache_entries=50, up=True).snapshot()
    registry = _merged(pickle.loads(pickle.dumps(one)), two)  # as sent over the socketpair
    value = registry.get_sample_value
    labels = {"network": "lan", "protocol": "udp", "qtype": "A", "result": "blocked"}
    assert value("dnsfilter_queries_total", labels) == 30
    assert value("dnsfilter_blocked_queries_total", {"network": "lan", "list": "apps",
                                                     "category": "other"}) == 30  # fmt: skip
    assert value("dnsfilter_query_duration_seconds_count", {"result": "blocked"}) == 2
    assert value("dnsfilter_tcp_connections_rejected_total", {"reason": "per_address"}) == 2
    assert value("dnsfilter_tcp_connections_rejected_total", {"reason": "global"}) == 0
    assert value("dnsfilter_tcp_connections_closed_total", {"reason": "unread_replies"}) == 2
    assert value("dnsfilter_tcp_reads_paused_total") == 6
    assert value("dnsfilter_upstream_socket_errors_total", {"errno": "EMFILE"}) == 8
    assert value("dnsfilter_upstream_requests_total",
                 {"upstream": "192.0.2.1:53", "rcode": "NOERROR"}) == 2  # fmt: skip
    assert value("dnsfilter_upstream_up", {"upstream": "192.0.2.1:53"}) == 1  # any worker's
    assert value("dnsfilter_cache_entries") == 150
    assert value("dnsfilter_cache_hits_total") == 6
    assert value("dnsfilter_inflight_queries") == 8
    assert value("dnsfilter_ratelimited_clients") == 2
    dropped = {"store": "sqlite", "reason": "buffer_full"}
    assert value("dnsfilter_audit_events_dropped_total", dropped) == 10
    # The shared store is healthy only if it is for every worker.
    assert value("dnsfilter_audit_store_healthy", {"store": "sqlite"}) == 0
    assert value("dnsfilter_blocked_clients", {"network": "lan", "list": "apps"}) == 2
    assert value("dnsfilter_workers") == 1
    assert value("dnsfilter_worker_up", {"worker": "1"}) == 0
    assert value("dnsfilter_worker_restarts_total") == 2


def test_a_client_seen_by_two_workers_counts_once() -> None:
    one = _worker(1, "192.0.2.7", cache_entries=0, up=True).snapshot()
    two = _worker(1, "192.0.2.7", cache_entries=0, up=True).snapshot()
    registry = _merged(one, two)
    assert (
        registry.get_sample_value("dnsfilter_blocked_clients", {"network": "lan", "list": "apps"})
        == 1
    )


def test_a_retired_worker_keeps_its_counters_but_not_its_gauges() -> None:
    retired = _worker(10, "192.0.2.7", cache_entries=100, up=True).snapshot().retired()
    registry = _merged(retired)
    value = registry.get_sample_value
    labels = {"network": "lan", "protocol": "udp", "qtype": "A", "result": "blocked"}
    assert value("dnsfilter_queries_total", labels) == 10
    assert value("dnsfilter_cache_hits_total") == 3
    assert value("dnsfilter_cache_entries") == 0
    assert value("dnsfilter_inflight_queries") == 0
    assert value("dnsfilter_upstream_up", {"upstream": "192.0.2.1:53"}) is None


def test_a_snapshot_leaves_out_clients_older_than_the_window() -> None:
    metrics = _worker(1, "192.0.2.7", cache_entries=0, up=True)
    stale = time.monotonic() - BLOCKED_CLIENT_WINDOW - 1
    metrics.queries.blocked_client("lan", "apps", "192.0.2.9", stale)
    assert list(metrics.snapshot().blocked_clients[("lan", "apps")]) == ["192.0.2.7"]


def test_skipped_lines_of_each_list_are_a_gauge() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.lists_loaded([("feed", 10, 3), ("apps", 5)], now=1.0)
    assert registry.get_sample_value("dnsfilter_list_lines_skipped", {"list": "feed"}) == 3
    assert registry.get_sample_value("dnsfilter_list_lines_skipped", {"list": "apps"}) == 0
    # A reload replaces the count: the next copy of the feed may be clean.
    metrics.lists_loaded([("feed", 11, 0)], now=2.0)
    assert registry.get_sample_value("dnsfilter_list_lines_skipped", {"list": "feed"}) == 0
