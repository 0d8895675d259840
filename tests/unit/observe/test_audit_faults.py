"""Audit stores that cannot be opened or written: DNS goes on, every event a store does not
get is counted, and the store is tried again until it works (dnsfilter.observe.querylog)."""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from dnsfilter.config import AuditConfig, parse_config
from dnsfilter.errors import ConfigError
from dnsfilter.observe.metrics import AuditStats
from dnsfilter.observe.querylog import (
    AuditEvent,
    AuditLog,
    HashKey,
    JsonlWriter,
    PartialWrite,
    ReopeningWriter,
    Row,
    SqliteWriter,
    StoreUnavailable,
    build_audit_log,
    format_json_line,
    load_hash_key,
)

T0 = float(int(time.time()))


def event(n: int, client: str = "10.1.2.3") -> AuditEvent:
    return AuditEvent(T0 + n, client, "office", f"n{n}.example.test", 1, "blocked", "apps")


def _row(e: AuditEvent) -> Row:
    return (e.time, e.client, e.network, e.qname, e.qtype, e.result, e.list_name, e.category,
            e.action, e.destination)  # fmt: skip


ROW = _row(event(0))


def _parse(text: str, base: Path) -> AuditConfig:
    return parse_config(textwrap.dedent(text), "cfg.yaml", base=base).audit


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "cfg.yaml", base=None)
    return info.value.problems


def _dropped(stats: AuditStats, store: str) -> int:
    return stats.dropped[(store, "buffer_full")] + stats.dropped[(store, "store_failed")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FlakyWriter:
    """A real in-memory writer that fails while `failing` is set (and counts its opens)."""

    name = "flaky"
    kind = "flaky"

    def __init__(self, failing: Callable[[], bool]) -> None:
        self.failing = failing
        self.rows: list[Row] = []
        self.closed = False

    def write(self, rows: Sequence[Row]) -> None:
        if self.failing():
            raise OSError(errno.ENOSPC, "No space left on device")
        self.rows.extend(rows)

    def maintain(self, now: float) -> None:
        del now

    def close(self) -> None:
        self.closed = True


# ---------------------------------------------------------------------------------------
# Config: a bad path is a config error; what the disk does is not


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        pytest.param(
            "audit: {retry_interval: 0}\n",
            ["cfg.yaml:1: audit.retry_interval: must be greater than 0 and at most 3600 (got 0)"],
            id="retry-zero",
        ),
        pytest.param(
            "audit: {retry_interval: 3601}\n",
            [
                "cfg.yaml:1: audit.retry_interval: must be greater than 0 and at most 3600 "
                "(got 3601)"
            ],
            id="retry-too-long",
        ),
        pytest.param(
            'audit: {sqlite_path: "a\\0b"}\n',
            ["cfg.yaml:1: audit.sqlite_path: a path cannot hold a NUL character (got 'a\\x00b')"],
            id="nul-in-path",
        ),
    ],
)
def test_audit_fault_config_problems(text: str, problems: list[str]) -> None:
    assert _problems(text) == problems


def test_retry_interval_defaults_to_ten_seconds(tmp_path: Path) -> None:
    assert _parse("audit: {}\n", tmp_path).retry_interval == 10.0
    assert _parse("audit: {retry_interval: 0.5}\n", tmp_path).retry_interval == 0.5


def test_a_store_that_cannot_be_opened_is_no_config_error_and_is_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The parent directory is a file: both stores fail to open, the log says why, every
    event is counted as dropped for each; once the directory is there, both recover."""
    (tmp_path / "file").write_text("")
    stats = AuditStats()
    config = _parse(
        "audit: {sqlite_path: file/audit.sqlite3, jsonl_path: file/a.jsonl,"
        " retry_interval: 0.01}\n",
        tmp_path,
    )
    with caplog.at_level(logging.ERROR):
        audit = build_audit_log(config, stats)
    assert audit is not None
    assert stats.healthy == {"sqlite": False, "jsonl": False}
    assert [r.getMessage().rsplit(": ", 2)[1:] for r in caplog.records] == [
        ["audit.sqlite_path", f"{tmp_path}/file is not a directory"],
        ["audit.jsonl_path", f"{tmp_path}/file is not a directory"],
    ]
    for n in range(3):
        audit.record(event(n))
    audit.flush_now()
    assert (_dropped(stats, "sqlite"), _dropped(stats, "jsonl")) == (3, 3)
    assert not (tmp_path / "file").is_dir()

    (tmp_path / "file").unlink()
    (tmp_path / "file").mkdir()
    # Healthy once a batch of events is stored again: the next try is 10 ms away.
    n = 3
    deadline = time.monotonic() + 10
    while not all(stats.healthy.values()):
        assert time.monotonic() < deadline, stats
        audit.record(event(n))
        audit.flush_now()
        n += 1
    audit.close_now()
    with sqlite3.connect(tmp_path / "file/audit.sqlite3") as db:
        stored = [row[0] for row in db.execute("SELECT qname FROM events ORDER BY id")]
    lines = [json.loads(line)["qname"] for line in (tmp_path / "file/a.jsonl").read_text().split()]
    for store, names in (("sqlite", stored), ("jsonl", lines)):
        assert names[-1] == f"n{n - 1}.example.test"
        assert len(names) + _dropped(stats, store) == n, (store, names, stats)


def test_a_bad_hash_key_is_still_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "audit.key").write_text("short\n")
    config = _parse(
        "audit: {sqlite_path: audit.sqlite3, pseudonymize: hash, hash_key_file: audit.key}\n",
        tmp_path,
    )
    with pytest.raises(ConfigError) as info:
        build_audit_log(config)
    assert info.value.problems == [
        f"audit.hash_key_file: {tmp_path}/audit.key: the hash key must be at least 16 bytes (got 5)"
    ]


# ---------------------------------------------------------------------------------------
# ReopeningWriter: at most one try per interval, and a fresh open after a failure


def test_reopening_writer_tries_once_per_interval_and_reopens_after_a_failure() -> None:
    clock = Clock()
    state = {"open_fails": True, "write_fails": True}
    opened: list[FlakyWriter] = []

    def opener() -> FlakyWriter:
        if state["open_fails"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        opened.append(FlakyWriter(lambda: state["write_fails"]))
        return opened[-1]

    writer = ReopeningWriter("flaky", "flaky store", opener, retry_interval=10, clock=clock)
    with pytest.raises(OSError):
        writer.open()
    assert not writer.healthy
    state["open_fails"] = False
    clock.now += 9.9
    with pytest.raises(StoreUnavailable):  # not due: fails without trying
        writer.write([])
    assert opened == []
    clock.now += 0.1
    with pytest.raises(OSError):  # due: it opens, the write fails, and it is closed
        writer.write([])
    assert len(opened) == 1 and opened[0].closed and not writer.healthy
    state["write_fails"] = False
    clock.now += 5
    with pytest.raises(StoreUnavailable):
        writer.write([])
    clock.now += 5
    writer.write([ROW])
    assert writer.healthy and len(opened) == 2 and opened[1].rows == [ROW]
    writer.close()
    assert opened[1].closed


def test_audit_log_counts_per_store_and_logs_each_outage_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    full = {"value": False}
    flaky = ReopeningWriter(
        "flaky", "flaky store", lambda: FlakyWriter(lambda: full["value"]), 10, clock
    )
    flaky.open()
    steady = FlakyWriter(lambda: False)
    steady.kind = steady.name = "steady"
    stats = AuditStats()
    audit = AuditLog([flaky, steady], stats=stats)
    with caplog.at_level(logging.WARNING):
        audit.record(event(0))
        audit.flush_now()
        full["value"] = True
        for n in range(1, 6):  # the first batch is tried and fails; the others wait
            audit.record(event(n))
            audit.flush_now()
        clock.now += 10  # due: tried again, and fails again
        audit.record(event(6))
        audit.flush_now()
        full["value"] = False
        clock.now += 10
        audit.record(event(7))
        audit.flush_now()
    assert stats.dropped[("flaky", "store_failed")] == 6
    assert stats.dropped[("steady", "store_failed")] == 0
    assert len(steady.rows) == 8
    assert stats.write_failures == 2  # the two tries, not the batches that waited
    assert stats.healthy == {"flaky": True, "steady": True}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("audit: flaky store failed, 1 events lost")
    assert messages[1] == "audit: flaky store is writing again (6 events lost in all)"
    audit.close_now()


# ---------------------------------------------------------------------------------------
# JSON lines: a short write stores its complete lines, and the torn one is ended


def _short_writes(monkeypatch: pytest.MonkeyPatch, budget: list[int]) -> None:
    """os.write that writes at most budget[0] bytes in all, then fails with ENOSPC."""
    real = os.write

    def write(fd: int, data: bytes | memoryview) -> int:
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        done = real(fd, bytes(data[: budget[0]]))
        budget[0] -= done
        return done

    monkeypatch.setattr(os, "write", write)


def test_jsonl_short_write_counts_complete_lines_and_ends_the_torn_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    rows: list[Row] = [_row(event(n)) for n in range(3)]
    writer = JsonlWriter(str(path))
    budget = [len(format_json_line(rows[0])) + 1 + 10]  # the first line and a piece of the next
    _short_writes(monkeypatch, budget)
    with pytest.raises(PartialWrite) as info:
        writer.write(rows)
    assert info.value.stored == 1
    budget[0] = 10**6
    writer.write(rows[2:])
    writer.close()
    lines = path.read_text().split("\n")
    assert len(lines) == 4 and lines[3] == ""
    assert json.loads(lines[0])["qname"] == "n0.example.test"
    assert json.loads(lines[2])["qname"] == "n2.example.test"
    with pytest.raises(json.JSONDecodeError):  # the torn one: broken, and alone
        json.loads(lines[1])


def test_jsonl_reopened_on_a_torn_file_ends_the_torn_line_first(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"time":"2024-05-01T08:15:02.1')  # a line cut short by a full disk
    writer = JsonlWriter(str(path))
    writer.write([_row(event(1))])
    writer.close()
    lines = path.read_text().splitlines()
    assert json.loads(lines[1])["qname"] == "n1.example.test"


# ---------------------------------------------------------------------------------------
# The hash key: a full disk leaves no empty key, and no address is stored unhashed


def test_a_key_that_cannot_be_written_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        load_hash_key(tmp_path / "audit.key")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert len(load_hash_key(tmp_path / "audit.key")) == 64


def test_events_without_a_key_are_dropped_never_stored_unhashed(tmp_path: Path) -> None:
    clock = Clock()
    (tmp_path / "keys").write_text("")  # a file where the key's directory should be
    key = HashKey(tmp_path / "keys" / "audit.key", retry_interval=10, clock=clock)
    stats = AuditStats()
    db = tmp_path / "audit.sqlite3"
    audit = AuditLog([SqliteWriter(db)], key, stats=stats)
    audit.record(event(1, client="10.9.9.9"))
    audit.flush_now()
    assert stats.dropped[("sqlite", "store_failed")] == 1
    assert stats.healthy == {"sqlite": False}
    (tmp_path / "keys").unlink()
    clock.now += 10
    audit.record(event(2, client="10.9.9.9"))
    audit.close_now()
    with sqlite3.connect(db) as conn:
        clients = [row[0] for row in conn.execute("SELECT client FROM events")]
    assert len(clients) == 1 and clients[0] != "10.9.9.9" and len(clients[0]) == 16
    assert stats.healthy == {"sqlite": True}
