"""dnsfilter.observe.querylog: the audit buffer, its writers (on real files), pseudonymization,
config."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import stat
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from dnsfilter.config import AuditConfig, default_audit_path, parse_config
from dnsfilter.errors import ConfigError
from dnsfilter.observe.metrics import AuditStats, Metrics
from dnsfilter.observe.querylog import (
    BYPASS_RESULT,
    SCHEMA_VERSION,
    AuditEvent,
    AuditLog,
    AuditWriter,
    JsonlWriter,
    Pseudonymizer,
    Row,
    SqliteWriter,
    blocked_devices,
    build_audit_log,
    device_attempts,
    format_json_line,
    load_hash_key,
    open_store,
)

#: Recent, so the default 90-day retention keeps these events; whole, for exact comparisons.
T0 = float(int(time.time()))
DAY = 86400.0
KEY = b"0123456789abcdef0123456789abcdef"
AUDIT_KEYS = (
    "buffer_size, enabled, flush_interval, hash_key_file, jsonl_path, log_allowed, max_size_mb, "
    "pseudonymize, retention_days, retry_interval, sqlite_path, truncate_ipv4, truncate_ipv6"
)


def event(
    n: int = 0,
    client: str = "10.1.2.3",
    when: float = T0,
    qname: str = "",
    result: str = "blocked",
    list_name: str = "wechat",
    network: str = "office",
) -> AuditEvent:
    return AuditEvent(
        when,
        client,
        network,
        qname or f"n{n}.weixin.qq.com",
        1,
        result,
        list_name if result == "blocked" else "",
        "messaging" if result == "blocked" else "",
        "null" if result == "blocked" else "",
    )


def rows_in(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT time, client, network, qname, qtype, result, list, category, action,"
            " destination FROM events ORDER BY id"
        ).fetchall()


def qnames_in(path: Path) -> list[str]:
    return [str(row[3]) for row in rows_in(path)]


def as_row(e: AuditEvent) -> Row:
    return (
        e.time,
        e.client,
        e.network,
        e.qname,
        e.qtype,
        e.result,
        e.list_name,
        e.category,
        e.action,
        e.destination,
    )


# ---------------------------------------------------------------------------------------
# The buffer and its flushes


def test_record_only_buffers_until_a_flush(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    audit = AuditLog([SqliteWriter(db)])
    for n in range(5):
        audit.record(event(n))
    assert audit.pending == 5
    assert rows_in(db) == []
    audit.flush_now()
    assert audit.pending == 0
    assert rows_in(db) == [as_row(event(n)) for n in range(5)]
    audit.close_now()


def test_full_buffer_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    stats = AuditStats()
    audit = AuditLog([SqliteWriter(db)], stats=stats, buffer_size=4)
    for n in range(10):
        audit.record(event(n))
    assert stats.dropped == {("sqlite", "buffer_full"): 6, ("sqlite", "store_failed"): 0}
    audit.close_now()
    assert qnames_in(db) == [f"n{n}.weixin.qq.com" for n in range(6, 10)]


@pytest.mark.asyncio
async def test_flusher_writes_early_when_the_buffer_is_half_full(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    # An interval far beyond the test's patience: only the half-full trigger can write.
    audit = AuditLog([SqliteWriter(db)], buffer_size=8, flush_interval=3600)
    audit.start()
    for n in range(3):
        audit.record(event(n))
    await asyncio.sleep(0.2)
    assert rows_in(db) == []
    for n in range(3, 5):
        audit.record(event(n))
    await _until(lambda: len(rows_in(db)) == 5)
    assert rows_in(db) == [as_row(event(n)) for n in range(5)]
    await audit.close()


@pytest.mark.asyncio
async def test_flusher_writes_every_flush_interval(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    audit = AuditLog([SqliteWriter(db)], buffer_size=1000, flush_interval=0.05)
    audit.start()
    audit.record(event(1))
    await _until(lambda: len(rows_in(db)) == 1)
    audit.record(event(2))
    await _until(lambda: len(rows_in(db)) == 2)  # TimeoutError if no interval flush came
    assert rows_in(db) == [as_row(event(1)), as_row(event(2))]
    await audit.close()


@pytest.mark.asyncio
async def test_close_writes_what_is_buffered(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    jsonl = tmp_path / "audit.jsonl"
    audit = AuditLog([SqliteWriter(db), JsonlWriter(str(jsonl))], flush_interval=3600)
    audit.start()
    for n in range(7):
        audit.record(event(n))
    await audit.close()
    assert len(rows_in(db)) == 7
    assert len(jsonl.read_text().splitlines()) == 7


class GatedWriter:
    """A real in-memory writer whose first write waits until the test opens the gate."""

    name = "gated"
    kind = "gated"

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def write(self, rows: Sequence[Row]) -> None:
        if rows and not self.entered.is_set():
            self.entered.set()
            assert self.gate.wait(5)
        self.rows.extend(rows)

    def maintain(self, now: float) -> None:
        del now

    def close(self) -> None:
        pass


@pytest.mark.asyncio
async def test_close_during_a_slow_write_loses_nothing() -> None:
    writer = GatedWriter()
    audit = AuditLog([writer], buffer_size=4, flush_interval=3600)
    audit.start()
    for n in range(2):  # half full: the flusher takes these two and blocks in the writer
        audit.record(event(n))
    assert await asyncio.to_thread(writer.entered.wait, 5)
    audit.record(event(2))
    closing = asyncio.get_running_loop().create_task(audit.close())
    await asyncio.sleep(0.05)
    assert not closing.done()
    writer.gate.set()
    await asyncio.wait_for(closing, 5)
    assert [row[3] for row in writer.rows] == [f"n{n}.weixin.qq.com" for n in range(3)]


async def _until(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------
# Write failures


def test_a_failing_writer_is_counted_and_the_others_still_write(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    logs = tmp_path / "logs"
    stats = AuditStats()
    audit = AuditLog([JsonlWriter(str(logs / "audit.jsonl")), SqliteWriter(db)], stats=stats)
    audit.record(event(1))
    audit.flush_now()
    assert stats.write_failures == 0
    assert stats.healthy == {"jsonl": True, "sqlite": True}
    # The directory turns into a file: reopening the rotated-away log fails for real.
    shutil.rmtree(logs)
    logs.write_text("not a directory")
    audit.record(event(2))
    audit.record(event(3))
    audit.flush_now()
    assert stats.write_failures == 1
    assert stats.dropped[("jsonl", "store_failed")] == 2
    assert stats.dropped[("sqlite", "store_failed")] == 0
    assert stats.healthy == {"jsonl": False, "sqlite": True}
    assert qnames_in(db) == [f"n{n}.weixin.qq.com" for n in (1, 2, 3)]
    audit.close_now()


def test_audit_metrics_are_exported() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.audit.bind(["sqlite", "jsonl"])
    metrics.audit.lost("buffer_full", 3)
    metrics.audit.lost("store_failed", 4, "jsonl")
    metrics.audit.healthy["sqlite"] = True
    metrics.audit.write_failures += 2
    value = registry.get_sample_value
    for store, buffer_full, failed in [("sqlite", 3, 0), ("jsonl", 3, 4)]:
        labels = {"store": store, "reason": "buffer_full"}
        assert value("dnsfilter_audit_events_dropped_total", labels) == buffer_full
        labels = {"store": store, "reason": "store_failed"}
        assert value("dnsfilter_audit_events_dropped_total", labels) == failed
    assert value("dnsfilter_audit_store_healthy", {"store": "sqlite"}) == 1
    assert value("dnsfilter_audit_store_healthy", {"store": "jsonl"}) == 0
    assert value("dnsfilter_audit_write_failures_total") == 2


# ---------------------------------------------------------------------------------------
# SQLite: schema, retention, size cap


def test_sqlite_store_is_wal_with_time_and_list_network_indexes(tmp_path: Path) -> None:
    db = tmp_path / "new" / "dir" / "audit.sqlite3"
    writer = SqliteWriter(db)
    writer.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        indexes = {
            name: [col[2] for col in conn.execute(f"PRAGMA index_info({name})")]
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
            )
        }
    assert sorted(indexes.values()) == [["list", "network"], ["time"]]


def test_retention_deletes_rows_older_than_retention_days(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    writer = SqliteWriter(db, retention_days=7)
    ages = [30, 8, 7.01, 6.99, 1, 0]
    writer.write([as_row(event(int(age * 100), when=T0 - age * DAY)) for age in ages])
    writer.maintain(T0)
    assert qnames_in(db) == ["n699.weixin.qq.com", "n100.weixin.qq.com", "n0.weixin.qq.com"]
    writer.close()


def test_retention_zero_keeps_everything(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    writer = SqliteWriter(db, retention_days=0)
    writer.write([as_row(event(1, when=T0 - 3650 * DAY))])
    writer.maintain(T0)
    assert len(rows_in(db)) == 1
    writer.close()


def test_audit_log_prunes_by_age_on_its_clock(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    now = [T0]
    audit = AuditLog([SqliteWriter(db, retention_days=1)], clock=lambda: now[0])
    audit.record(event(1, when=T0))
    audit.flush_now()
    now[0] = T0 + 2 * DAY
    audit.record(event(2, when=now[0]))
    audit.flush_now()
    assert qnames_in(db) == ["n2.weixin.qq.com"]
    audit.close_now()


def test_size_cap_deletes_the_oldest_rows_and_shrinks_the_file(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    cap = 256 * 1024
    writer = SqliteWriter(db, retention_days=0, max_bytes=cap)
    total = 0
    for batch in range(40):
        writer.write([as_row(event(total + i, qname=f"n{total + i:06d}.x")) for i in range(200)])
        total += 200
        with sqlite3.connect(db) as conn:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            size = conn.execute("PRAGMA page_size").fetchone()[0]
        assert pages * size <= cap, f"batch {batch}: {pages * size} bytes"
    names = qnames_in(db)
    # The newest rows survive, as one unbroken run up to the last one written.
    assert 500 < len(names) < total
    assert names == [f"n{n:06d}.x" for n in range(total - len(names), total)]
    writer.close()


# ---------------------------------------------------------------------------------------
# Pseudonymization


@pytest.mark.parametrize(
    ("address", "v4", "v6", "stored"),
    [
        pytest.param("10.1.2.3", 24, 48, "10.1.2.0", id="v4-24"),
        pytest.param("127.0.0.2", 24, 48, "127.0.0.0", id="v4-loopback"),
        pytest.param("10.1.2.3", 16, 48, "10.1.0.0", id="v4-16"),
        pytest.param("10.1.2.3", 32, 48, "10.1.2.3", id="v4-32-keeps"),
        pytest.param("2001:db8:1:2:3::4", 24, 48, "2001:db8:1::", id="v6-48"),
        pytest.param("2001:db8:1:2:3::4", 24, 64, "2001:db8:1:2::", id="v6-64"),
        pytest.param("::ffff:192.0.2.77", 24, 48, "192.0.2.0", id="v4-mapped"),
        pytest.param("not-an-address", 24, 48, "?", id="unparseable"),
    ],
)
def test_truncate(address: str, v4: int, v6: int, stored: str) -> None:
    assert Pseudonymizer.truncate(v4, v6)(address) == stored


def test_keyed_hash_is_stable_for_a_key_and_differs_between_keys() -> None:
    first = Pseudonymizer.keyed_hash(KEY)("10.1.2.3")
    assert first == Pseudonymizer.keyed_hash(KEY)("10.1.2.3")  # a restart with the same key
    assert len(first) == 16 and int(first, 16) >= 0
    assert first != Pseudonymizer.keyed_hash(b"another key, 16+ bytes")("10.1.2.3")
    assert first != Pseudonymizer.keyed_hash(KEY)("10.1.2.4")
    # The canonical form is hashed, so two spellings of one address are one device.
    same = Pseudonymizer.keyed_hash(KEY)
    assert same("2001:db8::1") == same("2001:0db8:0:0::1")


def test_none_stores_the_address() -> None:
    assert Pseudonymizer()("10.1.2.3") == "10.1.2.3"


def test_pseudonymization_happens_before_anything_is_written(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    jsonl = tmp_path / "audit.jsonl"
    hashed = Pseudonymizer.keyed_hash(KEY)("10.1.2.3")
    audit = AuditLog([SqliteWriter(db), JsonlWriter(str(jsonl))], Pseudonymizer.keyed_hash(KEY))
    audit.record(event(1, client="10.1.2.3"))
    audit.close_now()
    assert [row[1] for row in rows_in(db)] == [hashed]
    assert json.loads(jsonl.read_text())["client"] == hashed
    for path in (db, jsonl):
        assert b"10.1.2.3" not in path.read_bytes()


def test_hash_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit.key"
    key = load_hash_key(path)
    assert len(key) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_hash_key(path) == key


def test_hash_key_file_strips_whitespace_and_rejects_short_keys(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    path.write_bytes(b"  " + KEY + b"\n")
    assert load_hash_key(path) == KEY
    path.write_bytes(b"short\n")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        load_hash_key(path)


# ---------------------------------------------------------------------------------------
# JSON lines


def test_json_line_format() -> None:
    row = as_row(event(7, when=1_700_000_000.25))
    assert format_json_line(row) == (
        '{"time":"2023-11-14T22:13:20.250Z","client":"10.1.2.3","network":"office",'
        '"qname":"n7.weixin.qq.com","qtype":"A","result":"blocked","list":"wechat",'
        '"category":"messaging","action":"null","destination":""}'
    )
    other = (*row[:4], 4242, *row[5:])
    assert json.loads(format_json_line(other))["qtype"] == "TYPE4242"


def test_jsonl_file_appends_one_object_per_event(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"kept":"from before"}\n')
    writer = JsonlWriter(str(path))
    writer.write([as_row(event(1)), as_row(event(2, result="forwarded"))])
    writer.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"kept": "from before"}
    assert [line["qname"] for line in lines[1:]] == ["n1.weixin.qq.com", "n2.weixin.qq.com"]
    assert lines[2]["result"] == "forwarded" and lines[2]["list"] == ""


def test_jsonl_file_is_reopened_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writer = JsonlWriter(str(path))
    writer.write([as_row(event(1))])
    os.rename(path, tmp_path / "audit.jsonl.1")
    writer.write([as_row(event(2))])
    writer.close()
    assert json.loads((tmp_path / "audit.jsonl.1").read_text())["qname"] == "n1.weixin.qq.com"
    assert json.loads(path.read_text())["qname"] == "n2.weixin.qq.com"


def test_jsonl_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    writer = JsonlWriter("-")
    writer.write([as_row(event(1)), as_row(event(2))])
    writer.close()
    lines = capsys.readouterr().out.split("\n")
    assert lines == [format_json_line(as_row(event(1))), format_json_line(as_row(event(2))), ""]


# ---------------------------------------------------------------------------------------
# Reading the store


def test_blocked_devices_groups_orders_and_ranks_names(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    writer = SqliteWriter(db)
    events = [
        *(event(client="10.0.0.1", qname="a.wechat", when=T0 + i) for i in range(3)),
        *(event(client="10.0.0.1", qname="b.wechat", when=T0 + 10 + i) for i in range(2)),
        event(client="10.0.0.1", qname="d.wechat", when=T0 + 20),
        event(client="10.0.0.1", qname="c.wechat", when=T0 + 21),
        *(event(client="10.0.0.2", qname="a.wechat", when=T0 + 30 + i) for i in range(9)),
        event(
            client="10.0.0.9", qname="t.tiktok", list_name="tiktok", network="guest", when=T0 + 40
        ),
        event(client="10.0.0.1", qname="allowed.example", result="forwarded"),
    ]
    writer.write([as_row(e) for e in events])
    writer.close()
    store = open_store(db)
    devices = blocked_devices(store)
    assert [(d.list_name, d.network, d.client, d.count) for d in devices] == [
        ("tiktok", "guest", "10.0.0.9", 1),
        ("wechat", "office", "10.0.0.2", 9),
        ("wechat", "office", "10.0.0.1", 7),
    ]
    heavy = devices[2]
    assert (heavy.first_seen, heavy.last_seen) == (T0, T0 + 21)
    # Ties in count go alphabetically: c before d.
    assert heavy.top_names == (("a.wechat", 3), ("b.wechat", 2), ("c.wechat", 1))
    assert [d.client for d in blocked_devices(store, since=T0 + 25)] == ["10.0.0.9", "10.0.0.2"]
    assert [d.client for d in blocked_devices(store, list_name="tiktok")] == ["10.0.0.9"]
    assert [d.client for d in blocked_devices(store, network="office")] == [
        "10.0.0.2",
        "10.0.0.1",
    ]
    assert blocked_devices(store, network="nowhere") == []
    store.close()


#: A store as version 1 of the schema wrote it: no destination column.
_SCHEMA_V1 = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, client TEXT NOT NULL, network TEXT NOT NULL,
    qname TEXT NOT NULL, qtype INTEGER NOT NULL, result TEXT NOT NULL, list TEXT NOT NULL,
    category TEXT NOT NULL, action TEXT NOT NULL
);
CREATE INDEX events_time ON events (time);
CREATE INDEX events_list_network ON events (list, network);
INSERT INTO events (time, client, network, qname, qtype, result, list, category, action)
    VALUES (%s, '10.0.0.1', 'office', 'a.wechat', 1, 'blocked', 'wechat', 'messaging', 'null');
PRAGMA user_version = 1;
"""


def _v1_store(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA_V1 % T0)
    db.close()


def test_a_version_1_store_is_read_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    _v1_store(path)
    store = open_store(path)
    assert [(d.client, d.count, d.kind) for d in blocked_devices(store)] == [
        ("10.0.0.1", 1, "blocked")
    ]
    assert device_attempts(store, ["sni_blocked"]) == []
    store.close()
    with sqlite3.connect(path) as db:  # read-only: still version 1, still without the column
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
        assert "destination" not in {row[1] for row in db.execute("PRAGMA table_info(events)")}


def test_a_writer_brings_a_version_1_store_to_version_2(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    _v1_store(path)
    writer = SqliteWriter(path)
    writer.write([as_row(bypass_event("fd00::7", "[2001:db8::99]:853", kind="dot_other_resolver"))])
    writer.close()
    SqliteWriter(path).close()  # opening a version 2 store again changes nothing
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("SELECT client, destination FROM events ORDER BY id").fetchall() == [
            ("10.0.0.1", ""),
            ("fd00::7", "[2001:db8::99]:853"),
        ]


def test_a_store_of_a_later_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(sqlite3.DatabaseError, match=f"schema version {SCHEMA_VERSION + 1}"):
        SqliteWriter(path)


def bypass_event(
    client: str,
    destination: str,
    kind: str = "flow_banned_prefix",
    list_name: str = "wechat",
    qname: str = "",
    when: float = T0,
) -> AuditEvent:
    return AuditEvent(
        when,
        client,
        "office",
        qname,
        0,
        BYPASS_RESULT,
        list_name,
        "messaging" if list_name else "",
        kind,
        destination,
    )


def test_device_attempts_show_bypass_kinds_beside_blocked_queries(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    writer = SqliteWriter(db)
    events = [
        *(event(client="10.0.0.1", qname="a.wechat", when=T0 + i) for i in range(2)),
        *(event(client="10.0.0.2", qname="a.wechat") for _ in range(3)),
        # 10.0.0.1 also reached a banned prefix (twice), and sent the app's name in a hello.
        bypass_event("10.0.0.1", "203.0.113.10:443", when=T0 + 5),
        bypass_event("10.0.0.1", "203.0.113.10:443", when=T0 + 6),
        bypass_event("10.0.0.1", "203.0.113.10:443", kind="sni_blocked", qname="mp.wechat"),
        # Another resolver, for a name on no list: its list is empty.
        bypass_event("10.0.0.3", "192.0.2.53:53", kind="dns_other_resolver", list_name=""),
        bypass_event(
            "10.0.0.3", "192.0.2.53:53", kind="dns_other_resolver", list_name="", qname="x.org"
        ),
    ]
    writer.write([as_row(e) for e in events])
    writer.close()
    store = open_store(db)
    every = ["blocked", "dns_other_resolver", "flow_banned_prefix", "sni_blocked"]
    rows = device_attempts(store, every)
    # By list; a device's rows together, the device with most attempts of all kinds first.
    assert [(d.list_name, d.client, d.kind, d.count, d.top_names) for d in rows] == [
        ("", "10.0.0.3", "dns_other_resolver", 2, (("192.0.2.53:53", 1), ("x.org", 1))),
        ("wechat", "10.0.0.1", "blocked", 2, (("a.wechat", 2),)),
        ("wechat", "10.0.0.1", "flow_banned_prefix", 2, (("203.0.113.10:443", 2),)),
        ("wechat", "10.0.0.1", "sni_blocked", 1, (("mp.wechat", 1),)),
        ("wechat", "10.0.0.2", "blocked", 3, (("a.wechat", 3),)),
    ]
    flows = rows[2]
    assert (flows.first_seen, flows.last_seen) == (T0 + 5, T0 + 6)
    # Blocked only: what blocked_devices always gave.
    assert [(d.client, d.kind) for d in device_attempts(store, ["blocked"])] == [
        ("10.0.0.2", "blocked"),
        ("10.0.0.1", "blocked"),
    ]
    assert device_attempts(store, ["blocked"]) == blocked_devices(store)
    assert [(d.client, d.kind) for d in device_attempts(store, ["sni_blocked"])] == [
        ("10.0.0.1", "sni_blocked")
    ]
    assert device_attempts(store, []) == []
    store.close()


# ---------------------------------------------------------------------------------------
# Config: the audit section, and building the sink from it


def _parse(text: str, base: Path | None = None) -> AuditConfig:
    return parse_config(textwrap.dedent(text), "cfg.yaml", base=base).audit


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "cfg.yaml", base=None)
    return info.value.problems


def test_audit_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    config = _parse("{}\n")
    assert config == AuditConfig()
    assert config.enabled and not config.log_allowed
    assert config.sqlite_path == str(Path.home() / ".local/state/dnsfilter/audit.sqlite3")
    assert (config.jsonl_path, config.retention_days, config.max_size_mb) == (None, 90, 512)
    assert (config.pseudonymize, config.flush_interval) == ("none", 1.0)


@pytest.mark.parametrize(
    ("env", "path"),
    [
        pytest.param({"STATE_DIRECTORY": "/var/lib/dnsfilter"}, "/var/lib/dnsfilter", id="systemd"),
        pytest.param({"STATE_DIRECTORY": "/a:/b"}, "/a", id="systemd-several"),
        pytest.param({"XDG_STATE_HOME": "/x"}, "/x/dnsfilter", id="xdg"),
    ],
)
def test_default_audit_path_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], path: str
) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert default_audit_path() == f"{path}/audit.sqlite3"


def test_audit_section_with_every_key(tmp_path: Path) -> None:
    config = _parse(
        """\
        audit:
          enabled: true
          sqlite_path: state/audit.sqlite3
          jsonl_path: "-"
          log_allowed: true
          retention_days: 30
          max_size_mb: 0.5
          pseudonymize: hash
          hash_key_file: ~/audit.key
          truncate_ipv4: 16
          truncate_ipv6: 56
          flush_interval: 0.25
          buffer_size: 1000
        """,
        base=tmp_path,
    )
    assert config == AuditConfig(
        enabled=True,
        sqlite_path=str(tmp_path / "state/audit.sqlite3"),
        jsonl_path="-",
        log_allowed=True,
        retention_days=30,
        max_size_mb=0.5,
        pseudonymize="hash",
        hash_key_file=str(Path.home() / "audit.key"),
        truncate_ipv4=16,
        truncate_ipv6=56,
        flush_interval=0.25,
        buffer_size=1000,
    )


def test_audit_null_sqlite_path_turns_sqlite_off() -> None:
    config = _parse("audit: {sqlite_path: null, jsonl_path: /var/log/dnsfilter.jsonl}\n")
    assert (config.sqlite_path, config.jsonl_path) == (None, "/var/log/dnsfilter.jsonl")


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        pytest.param(
            "audit: {colour: red}\n",
            [f"cfg.yaml:1: audit.colour: unknown key (known keys: {AUDIT_KEYS})"],
            id="unknown-key",
        ),
        pytest.param(
            "audit: {pseudonymize: md5}\n",
            ["cfg.yaml:1: audit.pseudonymize: must be one of none, hash, truncate (got 'md5')"],
            id="bad-mode",
        ),
        pytest.param(
            "audit:\n  pseudonymize: hash\n",
            ["cfg.yaml:2: audit: pseudonymize hash needs hash_key_file"],
            id="hash-without-key",
        ),
        pytest.param(
            "audit: {sqlite_path: null}\n",
            [
                "cfg.yaml:1: audit: sqlite_path and jsonl_path are both null; "
                "write enabled: false to keep no audit log"
            ],
            id="no-writer",
        ),
        pytest.param(
            "audit: {truncate_ipv4: 33, truncate_ipv6: -1}\n",
            [
                "cfg.yaml:1: audit.truncate_ipv4: must be between 0 and 32 (got 33)",
                "cfg.yaml:1: audit.truncate_ipv6: must be between 0 and 128 (got -1)",
            ],
            id="prefix-ranges",
        ),
        pytest.param(
            "audit: {flush_interval: 0, buffer_size: 0, log_allowed: yes}\n",
            [
                "cfg.yaml:1: audit.log_allowed: write true or false (got 'yes')",
                "cfg.yaml:1: audit.flush_interval: must be greater than 0 and at most 3600 (got 0)",
                "cfg.yaml:1: audit.buffer_size: must be between 1 and 10000000 (got 0)",
            ],
            id="types-and-ranges",
        ),
        pytest.param(
            'audit: {sqlite_path: "", retention_days: 1.5}\n',
            [
                "cfg.yaml:1: audit.sqlite_path: expected a path (got an empty string)",
                "cfg.yaml:1: audit.retention_days: expected a whole number "
                "(got '1.5', which YAML reads as a number)",
            ],
            id="empty-path-fractional-days",
        ),
    ],
)
def test_audit_section_problems(text: str, problems: list[str]) -> None:
    assert _problems(text) == problems


def test_disabled_audit_builds_no_sink_and_needs_no_writer() -> None:
    config = _parse("audit: {enabled: false, sqlite_path: null}\n")
    assert build_audit_log(config) is None


def test_build_audit_log_opens_the_configured_writers(tmp_path: Path) -> None:
    config = _parse(
        """\
        audit:
          sqlite_path: db/audit.sqlite3
          jsonl_path: audit.jsonl
          pseudonymize: truncate
          log_allowed: true
          buffer_size: 10
        """,
        base=tmp_path,
    )
    audit = build_audit_log(config)
    assert audit is not None
    assert audit.log_allowed and audit.buffer_size == 10
    assert audit.describe() == f"sqlite {tmp_path}/db/audit.sqlite3, jsonl {tmp_path}/audit.jsonl"
    audit.record(event(1, client="10.9.8.7"))
    audit.close_now()
    assert [row[1] for row in rows_in(tmp_path / "db/audit.sqlite3")] == ["10.9.8.0"]


def test_writers_satisfy_the_protocol(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Both used only through AuditWriter (mypy checks the list's type): each stores the row."""
    db, jsonl = tmp_path / "a.sqlite3", tmp_path / "a.jsonl"
    writers: list[AuditWriter] = [SqliteWriter(db), JsonlWriter(str(jsonl)), JsonlWriter("-")]
    assert [(w.kind, w.name) for w in writers] == [
        ("sqlite", f"sqlite {db}"),
        ("jsonl", f"jsonl {jsonl}"),
        ("jsonl", "jsonl stdout"),
    ]
    row = (T0, "10.0.0.1", "lan", "n.example", 1, "blocked", "apps", "social", "null", "")
    for writer in writers:
        writer.write([row])
        writer.maintain(T0)
        writer.close()
    assert [r[3] for r in rows_in(db)] == ["n.example"]
    assert json.loads(jsonl.read_text())["qname"] == "n.example"
    assert json.loads(capfd.readouterr().out)["qname"] == "n.example"


@pytest.mark.parametrize("count", [1, 49, 50, 51, 123, 250])
def test_sqlite_batches_store_every_row_in_order(tmp_path: Path, count: int) -> None:
    """Rows go 50 to a statement and the rest one by one: every count lands whole."""
    writer = SqliteWriter(tmp_path / "audit.sqlite3")
    rows = [
        (T0 + i, f"10.0.{i // 256}.{i % 256}", "lan", f"n{i}.example", 1 + i % 2, "blocked",
         "apps", "social", "null", "")
        for i in range(count)
    ]  # fmt: skip
    writer.write(rows)
    stored = writer.db.execute(
        "SELECT time, client, network, qname, qtype, result, list, category, action,"
        " destination FROM events ORDER BY id"
    ).fetchall()
    writer.close()
    assert stored == rows
