"""The monitor's metrics and audit hand-off: MetricSink, MonitorMetrics' collector, the label
sets bound at start, the status thread, and AuditSink through AuditThread into real writers."""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dnsfilter import __version__
from dnsfilter.config import HostPort
from dnsfilter.datapath.policy import NetworkMap
from dnsfilter.egress.decode import PROTO_TCP, PROTO_UDP, Facts, Skip
from dnsfilter.egress.detect import Detector, Event, EventKind, event_labels
from dnsfilter.egress.endpoint import StatusThread
from dnsfilter.egress.monitor import MonitorStats
from dnsfilter.egress.plan import EgressPlan, ListNetworks
from dnsfilter.egress.sink import AuditSink, MetricSink
from dnsfilter.lists.model import BlockList, Category, DomainEntry, NetworkEntry
from dnsfilter.observe.metrics import MonitorMetrics
from dnsfilter.observe.querylog import AuditLog, AuditThread, AuditWriter, JsonlWriter, SqliteWriter

APPS = BlockList(
    "apps",
    "apps.yaml",
    category=Category.MESSAGING,
    domains=(DomainEntry("banned.example.test", 1),),
    networks=(NetworkEntry(ipaddress.ip_network("203.0.113.0/24"), 2),),
)
DOH = BlockList(
    "doh",
    "doh.yaml",
    category=Category.BYPASS,
    domains=(DomainEntry("doh.example.test", 1),),
    networks=(NetworkEntry(ipaddress.ip_network("192.0.2.128/25"), 2),),
)
PLAN = EgressPlan(
    approved=(ipaddress.ip_address("198.51.100.53"),),
    upstreams=(),
    lists=(APPS, DOH),
    banned=(ListNetworks("apps", (ipaddress.ip_network("203.0.113.0/24"),)),),
    doh=(ListNetworks("doh", (ipaddress.ip_network("192.0.2.128/25"),)),),
    drop_doh=False,
)
NETWORKS = ["office", "lab"]
REASONS = [reason.value for reason in Skip]
OFFICE = "10.1.0.5"
EVENTS_TOTAL = "dnsfilter_bypass_events_total"


def metrics() -> tuple[MonitorMetrics, MonitorStats]:
    stats = MonitorStats()
    return MonitorMetrics(stats, REASONS, CollectorRegistry()), stats


def event(kind: EventKind, network: str = "office", list_name: str = "apps") -> Event:
    return Event(kind, network, list_name, OFFICE, "203.0.113.10:443")


def value(m: MonitorMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


# ---------------------------------------------------------------------------------------
# Labels bound at start


def test_event_labels_are_the_configured_names_and_none() -> None:
    labels = event_labels(PLAN, NETWORKS)
    assert len(labels) == len(set(labels))
    per_network = [
        ("dns_other_resolver", ""),
        ("dns_other_resolver", "apps"),
        ("dns_other_resolver", "doh"),
        ("dot_other_resolver", ""),
        ("sni_doh_resolver", "doh"),
        ("sni_blocked", "apps"),
        ("flow_banned_prefix", "apps"),
        ("flow_banned_prefix", "doh"),
    ]
    assert labels == [
        (network, kind, list_name)
        for network in ("office", "lab", "none")
        for kind, list_name in per_network
    ]


def test_every_event_the_detector_raises_has_a_bound_label_set() -> None:
    clients = NetworkMap(
        [
            ("office", [ipaddress.ip_network("10.1.0.0/16")]),
            ("lab", [ipaddress.ip_network("fd00::/8")]),
        ]
    )
    detector = Detector(PLAN, clients)
    facts = [
        Facts(src, dst, proto, 40000 + n, dport, dns_query=query, qname=qname, sni=sni)
        for n, (src, dst, proto, dport, query, qname, sni) in enumerate(
            [
                (OFFICE, "198.51.100.99", PROTO_UDP, 53, True, "www.example.org", ""),
                (OFFICE, "198.51.100.99", PROTO_UDP, 53, True, "banned.example.test", ""),
                ("fd00::7", "198.51.100.99", PROTO_UDP, 53, True, "doh.example.test", ""),
                ("172.16.0.9", "198.51.100.99", PROTO_TCP, 853, False, "", ""),
                (OFFICE, "198.51.100.80", PROTO_TCP, 443, False, "", "banned.example.test"),
                (OFFICE, "198.51.100.80", PROTO_TCP, 443, False, "", "doh.example.test"),
                (OFFICE, "203.0.113.10", PROTO_UDP, 443, False, "", ""),
                (OFFICE, "192.0.2.200", PROTO_TCP, 443, False, "", ""),
            ]
        )
    ]
    raised = {
        (e.network, e.kind.value, e.list_name) for f in facts for e in detector.classify(f, 1.0)
    }
    assert len(raised) == 8
    assert raised <= set(event_labels(PLAN, NETWORKS))


# ---------------------------------------------------------------------------------------
# The collector


def test_bypass_events_are_counted_per_network_kind_and_list() -> None:
    m, _ = metrics()
    m.bypass.bind(event_labels(PLAN, NETWORKS))
    sink = MetricSink(m.bypass)
    for _ in range(3):
        sink.record(event(EventKind.FLOW_BANNED_PREFIX))
    sink.record(event(EventKind.SNI_DOH_RESOLVER, "lab", "doh"))
    sink.record(event(EventKind.DOT_OTHER_RESOLVER, "none", ""))

    def count(network: str, kind: str, list_name: str) -> float | None:
        return value(m, EVENTS_TOTAL, network=network, kind=kind, list=list_name)

    assert count("office", "flow_banned_prefix", "apps") == 3
    assert count("lab", "sni_doh_resolver", "doh") == 1
    assert count("none", "dot_other_resolver", "") == 1
    # Bound at start: exported at 0 before any event, so rate() sees the first one.
    assert count("lab", "sni_blocked", "apps") == 0
    assert count("none", "dns_other_resolver", "doh") == 0
    # Never bound, never seen: not invented.
    assert count("office", "sni_blocked", "doh") is None
    exported = [
        s
        for family in m.registry.collect()
        if family.name == "dnsfilter_bypass_events"
        for s in family.samples
        if s.name == EVENTS_TOTAL
    ]
    assert len(exported) == len(event_labels(PLAN, NETWORKS))
    assert sum(s.value for s in exported) == 5


def test_packet_counters_are_exported_with_every_skip_reason() -> None:
    m, stats = metrics()
    stats.packets = 47
    stats.skipped.update({"truncated": 2, "fragment": 4})
    stats.ignored.update({"not_ip": 1})
    stats.errors = 1
    stats.kernel_drops = 9
    assert value(m, "dnsfilter_monitor_packets_total") == 47
    skipped = {r: value(m, "dnsfilter_monitor_packets_skipped_total", reason=r) for r in REASONS}
    assert skipped == {
        "truncated": 2,
        "fragment": 4,
        "malformed": 0,
        "not_ip": 1,
        "not_tcp_udp": 0,
    }
    assert value(m, "dnsfilter_monitor_packet_errors_total") == 1
    assert value(m, "dnsfilter_monitor_kernel_drops_total") == 9
    m.audit.bind(["sqlite"])  # as the monitor's audit log does
    dropped = "dnsfilter_audit_events_dropped_total"
    assert value(m, dropped, store="sqlite", reason="store_failed") == 0
    assert value(m, "dnsfilter_audit_store_healthy", store="sqlite") == 0
    assert value(m, "dnsfilter_audit_write_failures_total") == 0
    assert value(m, "dnsfilter_build_info", version=__version__) == 1
    # Not the resolver's metrics: the monitor is a process of its own.
    assert value(m, "dnsfilter_queries_total") is None


def test_scrapes_while_the_capture_thread_counts_lose_nothing() -> None:
    """One writer thread doing `d[k] += 1`, one reader copying with dict(): exact totals, and
    no 'dictionary changed size during iteration' while new label sets appear."""
    m, stats = metrics()
    sink = MetricSink(m.bypass)
    kinds = list(EventKind)
    rounds = 20_000
    scraped = threading.Event()
    waits: list[bool] = []

    def capture() -> None:
        for n in range(rounds):
            if n % 4000 == 0:
                # Make sure scrapes happen in the middle of the counting, not only around it.
                scraped.clear()
                waits.append(scraped.wait(5.0))
            stats.packets += 1
            stats.skipped[REASONS[n % 3]] += 1
            # New keys keep appearing: the dict grows while it is being scraped.
            sink.record(event(kinds[n % len(kinds)], network=f"net{n % 50}"))

    writer = threading.Thread(target=capture)
    writer.start()
    while writer.is_alive():
        generate_latest(m.registry)
        scraped.set()
    writer.join()
    assert waits == [True] * 5
    total = sum(
        s.value
        for family in m.registry.collect()
        if family.name == "dnsfilter_bypass_events"
        for s in family.samples
        if s.name == EVENTS_TOTAL
    )
    assert total == rounds
    assert value(m, "dnsfilter_monitor_packets_total") == rounds


# ---------------------------------------------------------------------------------------
# The status thread


def _get(address: HostPort, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_status_thread_serves_metrics_health_and_readiness() -> None:
    m, stats = metrics()
    m.bypass.bind([("office", "sni_blocked", "apps")])
    capturing = threading.Event()
    status = StatusThread(
        m.registry,
        lambda: (True, "") if capturing.is_set() else (False, "the capture is not running"),
        HostPort("127.0.0.1", 0),
    )
    bound = status.start()
    try:
        assert bound.port != 0
        assert _get(bound, "/healthz") == (200, "ok\n")
        assert _get(bound, "/readyz") == (503, "the capture is not running\n")
        capturing.set()
        assert _get(bound, "/readyz") == (200, "ready\n")
        MetricSink(m.bypass).record(event(EventKind.SNI_BLOCKED))
        stats.packets = 12
        code, body = _get(bound, "/metrics")
        assert code == 200
        lines = body.splitlines()
        assert (
            'dnsfilter_bypass_events_total{kind="sni_blocked",list="apps",network="office"} 1.0'
            in lines
        )
        assert "dnsfilter_monitor_packets_total 12.0" in lines
    finally:
        status.close()
    with pytest.raises(OSError):
        _get(bound, "/healthz")


def test_status_thread_reports_an_address_in_use() -> None:
    m, _ = metrics()
    first = StatusThread(m.registry, lambda: (True, ""), HostPort("127.0.0.1", 0))
    bound = first.start()
    try:
        second = StatusThread(m.registry, lambda: (True, ""), bound)
        with pytest.raises(OSError, match=f"cannot serve metrics on {bound}"):
            second.start()
        second.close()
    finally:
        first.close()


# ---------------------------------------------------------------------------------------
# The audit hand-off


def _rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT time, client, network, qname, qtype, result, list, category, action,"
            " destination FROM events ORDER BY id"
        ).fetchall()


def test_audit_sink_writes_bypass_rows_from_another_thread(tmp_path: Path) -> None:
    db, jsonl = tmp_path / "audit.sqlite3", tmp_path / "audit.jsonl"
    # Retention 0: these events are from 1970, and the first batch would prune them.
    writers: list[AuditWriter] = [SqliteWriter(db, retention_days=0), JsonlWriter(str(jsonl))]
    audit = AuditThread(AuditLog(writers, flush_interval=3600))
    audit.start()
    sink = AuditSink(audit, {"apps": "messaging", "doh": "bypass"})
    sni = Event(
        EventKind.SNI_BLOCKED,
        "office",
        "apps",
        OFFICE,
        "198.51.100.80:443",
        "cdn.banned.example.test",
        1000.5,
    )
    dot = Event(
        EventKind.DOT_OTHER_RESOLVER, "none", "", "fd00::7", "[2001:db8::99]:853", "", 1001.0
    )

    def capture_thread() -> None:
        for e in (sni, dot):
            sink.record(e)

    capture = threading.Thread(target=capture_thread)
    capture.start()
    capture.join()
    assert audit.pending == 2
    assert _rows(db) == []  # nothing written until a flush
    audit.close()  # writes what is buffered, then closes the writers
    assert _rows(db) == [
        (
            1000.5,
            OFFICE,
            "office",
            "cdn.banned.example.test",
            0,
            "bypass",
            "apps",
            "messaging",
            "sni_blocked",
            "198.51.100.80:443",
        ),
        (
            1001.0,
            "fd00::7",
            "none",
            "",
            0,
            "bypass",
            "",
            "",
            "dot_other_resolver",
            "[2001:db8::99]:853",
        ),
    ]
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert lines[1] == {
        "time": "1970-01-01T00:16:41.000Z",
        "client": "fd00::7",
        "network": "none",
        "qname": "",
        "qtype": "",
        "result": "bypass",
        "list": "",
        "category": "",
        "action": "dot_other_resolver",
        "destination": "[2001:db8::99]:853",
    }


def test_audit_thread_flushes_on_its_interval_and_when_half_full(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    audit = AuditThread(AuditLog([SqliteWriter(db, retention_days=0)], flush_interval=0.05))
    audit.start()
    sink = AuditSink(audit, {})
    sink.record(event(EventKind.FLOW_BANNED_PREFIX))
    assert _until(lambda: len(_rows(db)) == 1)
    audit.close()

    db2 = tmp_path / "audit2.sqlite3"
    audit = AuditThread(
        AuditLog([SqliteWriter(db2, retention_days=0)], buffer_size=8, flush_interval=3600)
    )
    audit.start()
    for _ in range(4):  # half of 8: wakes the writer long before its interval
        AuditSink(audit, {}).record(event(EventKind.FLOW_BANNED_PREFIX))
    assert _until(lambda: len(_rows(db2)) == 4)
    audit.close()


def test_audit_thread_drops_the_oldest_when_full_and_counts_them(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    log = AuditLog([SqliteWriter(db, retention_days=0)], buffer_size=4, flush_interval=3600)
    audit = AuditThread(log)  # not started: nothing drains the buffer until close()
    sink = AuditSink(audit, {})
    for n in range(10):
        sink.record(
            Event(EventKind.FLOW_BANNED_PREFIX, "office", "apps", OFFICE, f"203.0.113.{n}:443")
        )
    assert log.stats.dropped[("sqlite", "buffer_full")] == 6
    audit.close()
    assert [row[9] for row in _rows(db)] == [f"203.0.113.{n}:443" for n in range(6, 10)]


def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())
