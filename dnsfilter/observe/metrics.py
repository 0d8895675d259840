"""Every metric dnsfilter exports, and the plain counters the hot path bumps.

The query path increments ordinary dicts and lists (a tuple-keyed dict increment costs about
a tenth of a prometheus_client child's locked `inc()`); a custom collector turns them into
metric families when Prometheus scrapes. Labels come only from enums and configured names
(network, list, upstream), never from a client address or a query name.
"""

from __future__ import annotations

import dataclasses
import math
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from dnsfilter import __version__

_K = TypeVar("_K")

#: qtype label values; every other type is counted as OTHER.
QTYPE_LABELS: dict[int, str] = {
    1: "A",
    28: "AAAA",
    5: "CNAME",
    65: "HTTPS",
    64: "SVCB",
    15: "MX",
    16: "TXT",
    12: "PTR",
    33: "SRV",
    2: "NS",
    6: "SOA",
    255: "ANY",
}
OTHER_QTYPE = "OTHER"
#: DNS-scale latency buckets: 50 µs (a blocked answer) to 5 s (an upstream timing out).
DURATION_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
#: How long a client counts in dnsfilter_blocked_clients after its last blocked attempt.
BLOCKED_CLIENT_WINDOW = 24 * 3600.0
#: Clients remembered per (network, list); past this the oldest half is forgotten.
BLOCKED_CLIENT_LIMIT = 100_000


class Histogram:
    """A label-less histogram that is a list of bucket counts."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        out = []
        total = 0
        for bound, count in zip((*DURATION_BUCKETS, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out


@dataclass
class QueryStats:
    """Counters of the query path, keyed by label tuples."""

    queries: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    blocked: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    durations: dict[str, Histogram] = field(default_factory=dict)
    blocked_clients: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    #: TCP connections closed at once, by the cap that refused them (TCP_REJECT_REASONS)
    tcp_rejected: Counter[str] = field(default_factory=Counter)
    #: TCP connections the server closed, by why (TCP_CLOSE_REASONS)
    tcp_closed: Counter[str] = field(default_factory=Counter)
    tcp_paused: int = 0  #: times a connection's queries stopped being read: replies unread

    def duration(self, result: str) -> Histogram:
        histogram = self.durations.get(result)
        if histogram is None:
            histogram = self.durations[result] = Histogram()
        return histogram

    def blocked_client(self, network: str, list_name: str, client: str, now: float) -> None:
        seen = self.blocked_clients.get((network, list_name))
        if seen is None:
            seen = self.blocked_clients[(network, list_name)] = {}
        elif len(seen) >= BLOCKED_CLIENT_LIMIT and client not in seen:
            # A flood of spoofed sources must not grow memory without bound.
            for stale in sorted(seen, key=seen.__getitem__)[: BLOCKED_CLIENT_LIMIT // 2]:
                del seen[stale]
        seen[client] = now

    def total(self, result: str) -> int:
        return sum(n for key, n in self.queries.items() if key[3] == result)


@dataclass
class UpstreamStats:
    """Counters of upstream tries, keyed by the upstream's configured name."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    durations: dict[str, Histogram] = field(default_factory=dict)
    up: dict[str, bool] = field(default_factory=dict)
    #: cache misses that waited on an identical one in flight ("joined") or were refused
    #: because it had max_waiters already ("refused"); see Resolver
    coalesced: Counter[str] = field(default_factory=Counter)
    #: UDP tries sent again to a server after its retry timeout, by upstream name
    retries: Counter[str] = field(default_factory=Counter)
    #: each upstream's smoothed round-trip time over UDP, seconds
    rtt: dict[str, float] = field(default_factory=dict)
    #: upstream sockets that could not be made, by errno name (EMFILE, ENFILE, ...)
    socket_errors: Counter[str] = field(default_factory=Counter)

    def observe(self, upstream: str, outcome: str, seconds: float, alive: bool) -> None:
        self.requests[(upstream, outcome)] += 1
        histogram = self.durations.get(upstream)
        if histogram is None:
            histogram = self.durations[upstream] = Histogram()
        histogram.observe(seconds)
        self.up[upstream] = alive


#: Why a connection was refused at once: its client's cap, the configured global cap, or a
#: global cap lowered by the descriptor budget (dnsfilter.operate.budget).
CONNECTION_REJECT_REASONS = ("per_address", "global", "budget")
#: Why the server closed a TCP connection: idle between queries, a query not finished in
#: time, or its replies left unread past the idle timeout.
TCP_CLOSE_REASONS = ("idle", "incomplete", "unread_replies")


@dataclass
class HttpStats:
    """Counters of the status endpoint's caps (dnsfilter.observe.httpserver)."""

    #: connections closed unanswered: CONNECTION_REJECT_REASONS, or "timeout" (no request
    #: head within metrics.request_timeout) and "too_large" (a head over 8 KiB)
    rejected: Counter[str] = field(default_factory=Counter)
    open: int = 0  #: connections being served now


@dataclass
class ListInfo:
    entries: int
    loaded_at: float
    skipped: int = 0  #: unreadable lines of a third-party list, skipped when it was loaded


@dataclass
class ListStats:
    lists: dict[str, ListInfo] = field(default_factory=dict)
    reload_failures: Counter[str] = field(default_factory=Counter)


#: Why a store did not get an audit event (dnsfilter_audit_events_dropped_total's reason).
AUDIT_DROP_REASONS = ("buffer_full", "store_failed")


@dataclass
class AuditStats:
    """Counters and health of the audit stores, by store kind (sqlite, jsonl); the audit log
    (dnsfilter.observe.querylog.AuditLog) sets them. Each store counts every event it did not get,
    so for each store, events stored + dropped == events recorded."""

    #: (store, reason) -> events lost: pushed out of a full buffer, or not stored by the store
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)
    write_failures: int = 0  #: batches, opens or prunes of a store that failed
    healthy: dict[str, bool] = field(default_factory=dict)  #: store -> open and writing

    def bind(self, stores: Iterable[str]) -> None:
        """Export every store's series from the start: unhealthy until it has opened."""
        for store in stores:
            self.healthy.setdefault(store, False)
            for reason in AUDIT_DROP_REASONS:
                self.dropped.setdefault((store, reason), 0)

    def lost(self, reason: str, count: int, store: str | None = None) -> None:
        """count events that store (every store, if None) will never get."""
        for name in (store,) if store is not None else tuple(self.healthy):
            self.dropped[(name, reason)] += count


@dataclass
class WorkerStats:
    """The worker pool of a supervisor (server.workers > 1), for its own families."""

    up: dict[int, bool] = field(default_factory=dict)  #: slot -> answered the last scrape
    restarts: int = 0


class CacheView(Protocol):
    """What the collector reads of the cache (AnswerCache is one)."""

    hits: int
    misses: int
    evictions: int
    prefetches: int

    def __len__(self) -> int: ...


class ServerView(Protocol):
    """What the collector reads of the listeners (server.QueryHandler is one)."""

    def inflight_count(self) -> int: ...

    def ratelimited_clients(self) -> int: ...


class DnsFilterCollector(Collector):
    """Builds metric families from the plain counters at scrape time."""

    def __init__(
        self,
        queries: QueryStats,
        upstreams: UpstreamStats,
        lists: ListStats,
        cache: Callable[[], CacheView | None],
        clock: Callable[[], float] = time.time,
        audit: AuditStats | None = None,
        server: Callable[[], ServerView | None] = lambda: None,
        workers: WorkerStats | None = None,
        http: HttpStats | None = None,
        budget: Mapping[str, int] | None = None,
    ) -> None:
        self.server = server
        self.workers = workers
        self.http = http
        self.budget = budget
        self.queries = queries
        self.upstreams = upstreams
        self.lists = lists
        self.cache = cache
        self.clock = clock
        self.audit = audit if audit is not None else AuditStats()

    def collect(self) -> Iterator[Metric]:
        # Copies first: dict() of a dict is one C call, safe against a concurrent writer.
        queries = CounterMetricFamily(
            "dnsfilter_queries",
            "Queries answered (or dropped), by client network, protocol, type and result.",
            labels=("network", "protocol", "qtype", "result"),
        )
        for labels, value in dict(self.queries.queries).items():
            queries.add_metric(labels, value)
        yield queries

        blocked = CounterMetricFamily(
            "dnsfilter_blocked_queries",
            "Blocked attempts, by client network and by the list (app) that blocked them.",
            labels=("network", "list", "category"),
        )
        for block_labels, value in dict(self.queries.blocked).items():
            blocked.add_metric(block_labels, value)
        yield blocked

        yield _histograms(
            "dnsfilter_query_duration_seconds",
            "Time from receiving a query to sending its answer, by result.",
            "result",
            self.queries.durations,
        )

        clients = GaugeMetricFamily(
            "dnsfilter_blocked_clients",
            "Distinct clients with a blocked attempt in the last 24 hours.",
            labels=("network", "list"),
        )
        horizon = time.monotonic() - BLOCKED_CLIENT_WINDOW
        for (network, list_name), seen in list(self.queries.blocked_clients.items()):
            recent = sum(1 for last in list(seen.values()) if last >= horizon)
            clients.add_metric((network, list_name), recent)
        yield clients

        requests = CounterMetricFamily(
            "dnsfilter_upstream_requests",
            "Tries sent to each upstream, by outcome (an rcode, timeout or error).",
            labels=("upstream", "rcode"),
        )
        for request_labels, value in dict(self.upstreams.requests).items():
            requests.add_metric(request_labels, value)
        yield requests
        yield _histograms(
            "dnsfilter_upstream_duration_seconds",
            "Time each upstream took to answer a try (or to fail it).",
            "upstream",
            self.upstreams.durations,
        )
        up = GaugeMetricFamily(
            "dnsfilter_upstream_up",
            "1 if the upstream's last try got an answer, 0 if it failed.",
            labels=("upstream",),
        )
        for name, alive in dict(self.upstreams.up).items():
            up.add_metric((name,), 1.0 if alive else 0.0)
        yield up
        coalesced = CounterMetricFamily(
            "dnsfilter_coalesced_queries",
            "Cache misses that waited on an identical query already sent upstream (joined), "
            "or got SERVFAIL because it had too many waiting (refused).",
            labels=("outcome",),
        )
        for outcome in ("joined", "refused"):
            coalesced.add_metric((outcome,), self.upstreams.coalesced[outcome])
        yield coalesced
        retries = CounterMetricFamily(
            "dnsfilter_upstream_retries",
            "UDP tries sent again to an upstream because its retry timeout passed unanswered.",
            labels=("upstream",),
        )
        for name, value in dict(self.upstreams.retries).items():
            retries.add_metric((name,), value)
        yield retries
        rtt = GaugeMetricFamily(
            "dnsfilter_upstream_rtt_seconds",
            "Smoothed round-trip time of each upstream's UDP answers (its retry timeout is "
            "this plus four times the variation, at least 0.2 s).",
            labels=("upstream",),
        )
        for name, seconds in dict(self.upstreams.rtt).items():
            rtt.add_metric((name,), seconds)
        yield rtt

        cache = self.cache()
        entries = GaugeMetricFamily("dnsfilter_cache_entries", "Answers in the cache.")
        hits = CounterMetricFamily("dnsfilter_cache_hits", "Queries answered from the cache.")
        misses = CounterMetricFamily("dnsfilter_cache_misses", "Cache lookups that missed.")
        evictions = CounterMetricFamily(
            "dnsfilter_cache_evictions", "Entries evicted to keep the cache within max_entries."
        )
        prefetches = CounterMetricFamily(
            "dnsfilter_cache_prefetches",
            "Refreshes of popular entries started shortly before they expired.",
        )
        entries.add_metric((), len(cache) if cache is not None else 0)
        hits.add_metric((), cache.hits if cache is not None else 0)
        misses.add_metric((), cache.misses if cache is not None else 0)
        evictions.add_metric((), cache.evictions if cache is not None else 0)
        prefetches.add_metric((), cache.prefetches if cache is not None else 0)
        yield from (entries, hits, misses, evictions, prefetches)

        list_entries = GaugeMetricFamily(
            "dnsfilter_list_entries", "Domain entries in each loaded list.", labels=("list",)
        )
        reloaded = GaugeMetricFamily(
            "dnsfilter_list_last_reload_timestamp_seconds",
            "When each list was last loaded successfully (Unix time).",
            labels=("list",),
        )
        skipped = GaugeMetricFamily(
            "dnsfilter_list_lines_skipped",
            "Lines of the loaded copy of each list that could not be read and were skipped "
            "(third-party formats; each is a file:line warning in the log).",
            labels=("list",),
        )
        for name, info in dict(self.lists.lists).items():
            list_entries.add_metric((name,), info.entries)
            reloaded.add_metric((name,), info.loaded_at)
            skipped.add_metric((name,), info.skipped)
        yield list_entries
        yield reloaded
        yield skipped
        failures = CounterMetricFamily(
            "dnsfilter_list_reload_failures",
            "Reloads of a list that failed (the last good version stayed in use).",
            labels=("list",),
        )
        for name in self.lists.lists:
            failures.add_metric((name,), self.lists.reload_failures.get(name, 0))
        yield failures

        tcp = CounterMetricFamily(
            "dnsfilter_tcp_connections_rejected",
            "TCP connections closed unanswered, by the cap reached (per_address, global, budget).",
            labels=("reason",),
        )
        for reason in CONNECTION_REJECT_REASONS:
            tcp.add_metric((reason,), self.queries.tcp_rejected.get(reason, 0))
        yield tcp
        closed = CounterMetricFamily(
            "dnsfilter_tcp_connections_closed",
            "TCP connections the server closed: idle, incomplete (a query not finished within "
            "the idle timeout) or unread_replies.",
            labels=("reason",),
        )
        for reason in TCP_CLOSE_REASONS:
            closed.add_metric((reason,), self.queries.tcp_closed.get(reason, 0))
        yield closed
        paused = CounterMetricFamily(
            "dnsfilter_tcp_reads_paused",
            "Times a TCP connection's queries stopped being read: its unread replies passed "
            "server.max_tcp_queued_bytes.",
        )
        paused.add_metric((), self.queries.tcp_paused)
        yield paused
        sockets = CounterMetricFamily(
            "dnsfilter_upstream_socket_errors",
            "Upstream sockets that could not be made (descriptors or buffers exhausted), by "
            "errno; each such query was answered stale or SERVFAIL.",
            labels=("errno",),
        )
        for name, value in dict(self.upstreams.socket_errors).items():
            sockets.add_metric((name,), value)
        yield sockets
        if self.http is not None:
            http = CounterMetricFamily(
                "dnsfilter_http_connections_rejected",
                "Status endpoint connections closed unanswered, by reason (per_address, "
                "global, budget, timeout, too_large).",
                labels=("reason",),
            )
            for reason, value in dict(self.http.rejected).items():
                http.add_metric((reason,), value)
            yield http
            http_open = GaugeMetricFamily(
                "dnsfilter_http_connections", "Status endpoint connections being served now."
            )
            http_open.add_metric((), self.http.open)
            yield http_open
        if self.budget:
            budget = GaugeMetricFamily(
                "dnsfilter_descriptor_budget",
                "The file descriptor limit, split into shares (docs/operators/configuration.md).",
                labels=("share",),
            )
            for share, value in self.budget.items():
                budget.add_metric((share,), value)
            yield budget

        server = self.server()
        inflight = GaugeMetricFamily(
            "dnsfilter_inflight_queries",
            "Cache misses being resolved now (UDP and TCP), against server.max_inflight.",
        )
        inflight.add_metric((), server.inflight_count() if server is not None else 0)
        limited = GaugeMetricFamily(
            "dnsfilter_ratelimited_clients",
            "Clients (IPv4 addresses, IPv6 /64s) over a per-client limit in the last minute.",
        )
        limited.add_metric((), server.ratelimited_clients() if server is not None else 0)
        yield inflight
        yield limited

        if self.workers is not None:
            yield from _worker_families(self.workers)
        yield from _audit_and_build(self.audit)


def _worker_families(workers: WorkerStats) -> Iterator[Metric]:
    """The supervisor's own families (server.workers > 1)."""
    running = GaugeMetricFamily(
        "dnsfilter_workers", "Worker processes running, against server.workers."
    )
    running.add_metric((), sum(1 for up in workers.up.values() if up))
    yield running
    up = GaugeMetricFamily(
        "dnsfilter_worker_up",
        "1 if the worker answered this scrape, 0 if it is down or did not answer in time.",
        labels=("worker",),
    )
    for slot, alive in sorted(workers.up.items()):
        up.add_metric((str(slot),), 1.0 if alive else 0.0)
    yield up
    restarts = CounterMetricFamily(
        "dnsfilter_worker_restarts",
        "Workers started again after exiting unexpectedly (reloads are not counted).",
    )
    restarts.add_metric((), workers.restarts)
    yield restarts


def _audit_and_build(audit: AuditStats) -> Iterator[Metric]:
    """The families serve and monitor both export: the audit log's losses and the version."""
    dropped = CounterMetricFamily(
        "dnsfilter_audit_events_dropped",
        "Audit events a store did not get, by reason: buffer_full (the oldest go first) or "
        "store_failed (the store is not open, or a write failed).",
        labels=("store", "reason"),
    )
    for drop_labels, value in sorted(dict(audit.dropped).items()):
        dropped.add_metric(drop_labels, value)
    write_failures = CounterMetricFamily(
        "dnsfilter_audit_write_failures",
        "Audit batches, store opens, retention and size prunes that failed.",
    )
    write_failures.add_metric((), audit.write_failures)
    healthy = GaugeMetricFamily(
        "dnsfilter_audit_store_healthy",
        "1 if the audit store is open and its last write succeeded, 0 while it is retried.",
        labels=("store",),
    )
    for store, ok in sorted(dict(audit.healthy).items()):
        healthy.add_metric((store,), 1.0 if ok else 0.0)
    yield dropped
    yield write_failures
    yield healthy
    build = InfoMetricFamily("dnsfilter_build", "The running dnsfilter version.")
    build.add_metric((), {"version": __version__})
    yield build


def _histograms(
    name: str, documentation: str, label: str, histograms: dict[str, Histogram]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=(label,))
    for value, histogram in list(histograms.items()):
        family.add_metric((value,), histogram.cumulative(), histogram.sum)
    return family


HistogramData = tuple[list[int], float]  #: a Histogram's bucket counts and sum


@dataclass
class Snapshot:
    """A worker's counters and gauges, handed to the supervisor when Prometheus scrapes it.

    add() merges another worker's: counters add up, and so do cache entries, queries in flight
    and rate-limited clients (a total over the workers' caches and limits); an upstream is up
    if any worker's last try got an answer, an audit store healthy only if it is for every
    worker; blocked clients are the union of each worker's, by last attempt, as one client's
    queries reach several workers.
    """

    queries: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    blocked: dict[tuple[str, str, str], int] = field(default_factory=dict)
    durations: dict[str, HistogramData] = field(default_factory=dict)
    blocked_clients: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    tcp_rejected: dict[str, int] = field(default_factory=dict)
    tcp_closed: dict[str, int] = field(default_factory=dict)
    tcp_paused: int = 0
    upstream_socket_errors: dict[str, int] = field(default_factory=dict)
    upstream_requests: dict[tuple[str, str], int] = field(default_factory=dict)
    upstream_durations: dict[str, HistogramData] = field(default_factory=dict)
    upstream_up: dict[str, bool] = field(default_factory=dict)
    coalesced: dict[str, int] = field(default_factory=dict)
    upstream_retries: dict[str, int] = field(default_factory=dict)
    upstream_rtt: dict[str, float] = field(default_factory=dict)
    cache_entries: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    cache_evictions: int = 0
    cache_prefetches: int = 0
    inflight: int = 0
    ratelimited_clients: int = 0
    audit_dropped: dict[tuple[str, str], int] = field(default_factory=dict)
    audit_write_failures: int = 0
    audit_healthy: dict[str, bool] = field(default_factory=dict)

    def add(self, other: Snapshot) -> None:
        _add_counts(self.queries, other.queries)
        _add_counts(self.blocked, other.blocked)
        _add_histograms(self.durations, other.durations)
        for key, seen in other.blocked_clients.items():
            mine = self.blocked_clients.setdefault(key, {})
            for client, last in seen.items():
                if mine.get(client, -math.inf) < last:
                    mine[client] = last
            if len(mine) > BLOCKED_CLIENT_LIMIT:
                newest = sorted(mine.items(), key=lambda item: item[1])[-BLOCKED_CLIENT_LIMIT:]
                self.blocked_clients[key] = dict(newest)
        _add_counts(self.tcp_rejected, other.tcp_rejected)
        _add_counts(self.tcp_closed, other.tcp_closed)
        self.tcp_paused += other.tcp_paused
        _add_counts(self.upstream_socket_errors, other.upstream_socket_errors)
        _add_counts(self.upstream_requests, other.upstream_requests)
        _add_histograms(self.upstream_durations, other.upstream_durations)
        for name, alive in other.upstream_up.items():
            self.upstream_up[name] = self.upstream_up.get(name, False) or alive
        _add_counts(self.coalesced, other.coalesced)
        _add_counts(self.upstream_retries, other.upstream_retries)
        for name, seconds in other.upstream_rtt.items():  # the slowest worker's view
            self.upstream_rtt[name] = max(self.upstream_rtt.get(name, 0.0), seconds)
        self.cache_entries += other.cache_entries
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses
        self.cache_evictions += other.cache_evictions
        self.cache_prefetches += other.cache_prefetches
        self.inflight += other.inflight
        self.ratelimited_clients += other.ratelimited_clients
        _add_counts(self.audit_dropped, other.audit_dropped)
        self.audit_write_failures += other.audit_write_failures
        # Every worker writes the shared store: it is healthy only if it is for all of them.
        for store, ok in other.audit_healthy.items():
            self.audit_healthy[store] = self.audit_healthy.get(store, True) and ok

    def retired(self) -> Snapshot:
        """What outlives an exited worker: its counters (and its blocked clients, still within
        their 24 hours), so the merged counters never go down when a worker is replaced."""
        return dataclasses.replace(
            self,
            upstream_up={},
            upstream_rtt={},
            audit_healthy={},
            cache_entries=0,
            inflight=0,
            ratelimited_clients=0,
        )


def _add_counts(total: dict[_K, int], more: Mapping[_K, int]) -> None:
    for key, value in more.items():
        total[key] = total.get(key, 0) + value


def _add_histograms(total: dict[str, HistogramData], more: Mapping[str, HistogramData]) -> None:
    for key, (counts, seconds) in more.items():
        mine = total.get(key)
        if mine is None:
            total[key] = (list(counts), seconds)
        else:
            total[key] = ([a + b for a, b in zip(mine[0], counts, strict=True)], mine[1] + seconds)


def _histogram_data(histograms: Mapping[str, Histogram]) -> dict[str, HistogramData]:
    return {key: (list(h.counts), h.sum) for key, h in list(histograms.items())}


def _histograms_of(data: Mapping[str, HistogramData]) -> dict[str, Histogram]:
    histograms = {}
    for key, (counts, seconds) in data.items():
        histogram = histograms[key] = Histogram()
        histogram.counts = list(counts)
        histogram.sum = seconds
    return histograms


@dataclass
class _Totals:
    """The summed cache and server gauges of a merged snapshot, as the collector reads them."""

    hits: int
    misses: int
    evictions: int
    prefetches: int
    entries: int
    inflight: int
    limited: int

    def __len__(self) -> int:
        return self.entries

    def inflight_count(self) -> int:
        return self.inflight

    def ratelimited_clients(self) -> int:
        return self.limited


class Metrics:
    """All of dnsfilter's metrics on one registry (a fresh one per test)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, workers: WorkerStats | None = None
    ) -> None:
        """workers: a supervisor's pool, whose families are then exported too."""
        self.registry = registry if registry is not None else CollectorRegistry()
        self.queries = QueryStats()
        self.upstreams = UpstreamStats()
        self.lists = ListStats()
        self.audit = AuditStats()
        self.http = HttpStats()
        #: descriptors per share of this process's budget (dnsfilter.operate.budget), once planned
        self.budget: dict[str, int] = {}
        self._cache: CacheView | None = None
        self._server: ServerView | None = None
        self.registry.register(
            DnsFilterCollector(
                self.queries,
                self.upstreams,
                self.lists,
                lambda: self._cache,
                audit=self.audit,
                server=lambda: self._server,
                workers=workers,
                http=self.http,
                budget=self.budget,
            )
        )
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def watch_cache(self, cache: CacheView | None) -> None:
        self._cache = cache

    def watch_server(self, server: ServerView | None) -> None:
        self._server = server

    def lists_loaded(
        self, entries: Iterable[tuple[str, int] | tuple[str, int, int]], now: float | None = None
    ) -> None:
        """(list name, entries[, lines skipped]) of each list just loaded."""
        loaded_at = time.time() if now is None else now
        for name, count, *skipped in entries:
            self.lists.lists[name] = ListInfo(count, loaded_at, skipped[0] if skipped else 0)

    def list_reload_failed(self, name: str) -> None:
        self.lists.reload_failures[name] += 1

    def snapshot(self) -> Snapshot:
        """This process's query, upstream, cache, server and audit figures (a worker's)."""
        queries, upstreams = self.queries, self.upstreams
        horizon = time.monotonic() - BLOCKED_CLIENT_WINDOW
        cache, server = self._cache, self._server
        return Snapshot(
            queries=dict(queries.queries),
            blocked=dict(queries.blocked),
            durations=_histogram_data(queries.durations),
            blocked_clients={
                key: {client: last for client, last in list(seen.items()) if last >= horizon}
                for key, seen in list(queries.blocked_clients.items())
            },
            tcp_rejected=dict(queries.tcp_rejected),
            tcp_closed=dict(queries.tcp_closed),
            tcp_paused=queries.tcp_paused,
            upstream_socket_errors=dict(upstreams.socket_errors),
            upstream_requests=dict(upstreams.requests),
            upstream_durations=_histogram_data(upstreams.durations),
            upstream_up=dict(upstreams.up),
            coalesced=dict(upstreams.coalesced),
            upstream_retries=dict(upstreams.retries),
            upstream_rtt=dict(upstreams.rtt),
            cache_entries=len(cache) if cache is not None else 0,
            cache_hits=cache.hits if cache is not None else 0,
            cache_misses=cache.misses if cache is not None else 0,
            cache_evictions=cache.evictions if cache is not None else 0,
            cache_prefetches=cache.prefetches if cache is not None else 0,
            inflight=server.inflight_count() if server is not None else 0,
            ratelimited_clients=server.ratelimited_clients() if server is not None else 0,
            audit_dropped=dict(self.audit.dropped),
            audit_write_failures=self.audit.write_failures,
            audit_healthy=dict(self.audit.healthy),
        )

    def show(self, merged: Snapshot) -> None:
        """Export merged (the workers' snapshots added up) as this registry's figures: the
        supervisor's, which counts no query itself."""
        queries, upstreams = self.queries, self.upstreams
        queries.queries = Counter(merged.queries)
        queries.blocked = Counter(merged.blocked)
        queries.durations = _histograms_of(merged.durations)
        queries.blocked_clients = merged.blocked_clients
        queries.tcp_rejected = Counter(merged.tcp_rejected)
        queries.tcp_closed = Counter(merged.tcp_closed)
        queries.tcp_paused = merged.tcp_paused
        upstreams.socket_errors = Counter(merged.upstream_socket_errors)
        upstreams.requests = Counter(merged.upstream_requests)
        upstreams.durations = _histograms_of(merged.upstream_durations)
        upstreams.up = dict(merged.upstream_up)
        upstreams.coalesced = Counter(merged.coalesced)
        upstreams.retries = Counter(merged.upstream_retries)
        upstreams.rtt = dict(merged.upstream_rtt)
        totals = _Totals(
            merged.cache_hits,
            merged.cache_misses,
            merged.cache_evictions,
            merged.cache_prefetches,
            merged.cache_entries,
            merged.inflight,
            merged.ratelimited_clients,
        )
        self._cache = totals
        self._server = totals
        self.audit.dropped = Counter(merged.audit_dropped)
        self.audit.write_failures = merged.audit_write_failures
        self.audit.healthy = dict(merged.audit_healthy)


# ---------------------------------------------------------------------------------------
# `dnsfilter monitor`: a process of its own, with a registry of its own


@dataclass
class BypassStats:
    """Bypass events of `dnsfilter monitor`, keyed (network, kind, list).

    Written by one thread only (the capture thread: scapy's sniffer, or the main thread reading
    a file) and read by the metrics thread. `events[key] += 1` is a read and a store, not one
    atomic step, but with a single writer no increment can be lost; the reader copies with
    dict(), one C call under the GIL, so it never sees the dict change size mid-iteration.
    """

    events: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def bind(self, labels: Iterable[tuple[str, str, str]]) -> None:
        """Export these (network, kind, list) series at 0 before their first event."""
        for key in labels:
            self.events.setdefault(key, 0)


class MonitorView(Protocol):
    """What the collector reads of the monitor's packet counters (MonitorStats is one)."""

    @property
    def packets(self) -> int: ...
    @property
    def skipped(self) -> Mapping[str, int]: ...
    @property
    def ignored(self) -> Mapping[str, int]: ...
    @property
    def errors(self) -> int: ...
    @property
    def kernel_drops(self) -> int: ...


class MonitorCollector(Collector):
    """The monitor's metric families, built from its plain counters at scrape time."""

    def __init__(
        self,
        bypass: BypassStats,
        monitor: MonitorView,
        skip_reasons: Sequence[str],
        audit: AuditStats,
    ) -> None:
        self.bypass = bypass
        self.monitor = monitor
        self.skip_reasons = tuple(skip_reasons)
        self.audit = audit

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "dnsfilter_bypass_events",
            "Traffic that went around the resolver, by client network, kind and list.",
            labels=("network", "kind", "list"),
        )
        for labels, value in sorted(dict(self.bypass.events).items()):
            events.add_metric(labels, value)
        yield events

        monitor = self.monitor
        packets = CounterMetricFamily(
            "dnsfilter_monitor_packets", "Packets the monitor read (from the file or the socket)."
        )
        packets.add_metric((), monitor.packets)
        yield packets
        skipped = CounterMetricFamily(
            "dnsfilter_monitor_packets_skipped",
            "Packets passed over: broken (truncated, fragment, malformed) or of no interest "
            "(not_ip, not_tcp_udp).",
            labels=("reason",),
        )
        passed_over = {**dict(monitor.skipped), **dict(monitor.ignored)}
        for reason in self.skip_reasons:
            skipped.add_metric((reason,), passed_over.get(reason, 0))
        yield skipped
        errors = CounterMetricFamily(
            "dnsfilter_monitor_packet_errors",
            "Packets that raised an error inside the monitor (a bug; the first is logged).",
        )
        errors.add_metric((), monitor.errors)
        yield errors
        drops = CounterMetricFamily(
            "dnsfilter_monitor_kernel_drops",
            "Packets the kernel dropped because the monitor fell behind (live capture only).",
        )
        drops.add_metric((), monitor.kernel_drops)
        yield drops

        yield from _audit_and_build(self.audit)


class MonitorMetrics:
    """The metrics of `dnsfilter monitor` on one registry (a fresh one per test)."""

    def __init__(
        self,
        monitor: MonitorView,
        skip_reasons: Sequence[str],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.bypass = BypassStats()
        self.audit = AuditStats()
        self.registry.register(MonitorCollector(self.bypass, monitor, skip_reasons, self.audit))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)


def qtype_label(qtype: int) -> str:
    return QTYPE_LABELS.get(qtype, OTHER_QTYPE)
