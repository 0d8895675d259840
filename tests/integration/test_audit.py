"""The audit log of a running dnsfilter, read back with `dnsfilter report`.

Queries come from two configured networks (sources 127.0.0.2 and 127.0.0.3), the server is
stopped with SIGTERM (so whatever is still buffered must be flushed), and the report command
runs as a user would run it.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import DnsFilter, wait_until

pytestmark = pytest.mark.integration

MINISTRY = "127.0.0.2"
AGENCY = "127.0.0.3"
#: What every test sends, and what the report must say about it (before pseudonymization).
EXPECTED = [
    {
        "list": "apps",
        "network": "ministry",
        "client": MINISTRY,
        "count": 5,
        "top_names": [
            {"name": "a.banned.example.test", "count": 3},
            {"name": "b.banned.example.test", "count": 1},
            {"name": "plain.example.test", "count": 1},
        ],
    },
    {
        "list": "apps",
        "network": "agency",
        "client": AGENCY,
        "count": 3,
        "top_names": [
            {"name": "banned.example.test", "count": 2},
            {"name": "canary.example.test", "count": 1},
        ],
    },
    {
        "list": "other",
        "network": "ministry",
        "client": MINISTRY,
        "count": 2,
        "top_names": [{"name": "other.example.test", "count": 2}],
    },
]
BLOCKED = 10
ALLOWED = 2


def _config(upstream: ScriptedUpstream, **audit: Any) -> dict[str, Any]:
    upstream.add("www.example.test", "A", "192.0.2.10")
    upstream.add("other.example.test", "A", "192.0.2.11")
    return base_config(
        [upstream.address],
        networks={"ministry": [f"{MINISTRY}/32"], "agency": [f"{AGENCY}/32", "127.0.0.1/32"]},
        policies={
            "strict": {"networks": ["ministry"], "lists": ["apps", "other"]},
            "light": {"networks": ["agency"], "lists": ["apps"]},
        },
        audit=audit,
    )


def _send_queries(server: DnsFilter) -> None:
    for _ in range(3):
        server.udp("a.banned.example.test", source=MINISTRY)
    server.udp("b.banned.example.test", "AAAA", source=MINISTRY)
    server.udp("plain.example.test", source=MINISTRY)
    server.udp("other.example.test", source=MINISTRY)
    server.udp("other.example.test", "AAAA", source=MINISTRY)
    server.udp("www.example.test", source=MINISTRY)  # allowed
    server.udp("banned.example.test", source=AGENCY)
    server.udp("banned.example.test", source=AGENCY)
    server.udp("canary.example.test", source=AGENCY)  # its entry says nxdomain
    server.udp("other.example.test", source=AGENCY)  # allowed: agency does not block "other"


def _report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dnsfilter", "report", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _report_json(*args: str) -> list[dict[str, Any]]:
    result = _report(*args, "--format", "json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def _without_times(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in ("first_seen", "last_seen")} for row in rows]


def _db_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT client, network, qname, result, list, action FROM events ORDER BY id"
        ).fetchall()


def _stop(server: DnsFilter) -> None:
    assert server.stop() == 0, server.log
    assert "Traceback" not in server.log, server.log


def test_blocked_attempts_survive_a_graceful_stop_and_are_reported(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "audit.sqlite3"
    # No periodic flush within the test: only the final flush on SIGTERM can write the events.
    server = start_dnsfilter(_config(scripted_upstream, flush_interval=3600))
    started = time.time()
    _send_queries(server)
    assert _db_rows(db) == []
    assert server.metric("dnsfilter_audit_events_dropped_total") == 0
    assert server.metric("dnsfilter_audit_write_failures_total") == 0
    _stop(server)
    stopped = time.time()

    rows = _db_rows(db)
    assert len(rows) == BLOCKED  # log_allowed is off: no forwarded rows
    assert {row[3] for row in rows} == {"blocked"}
    assert (AGENCY, "agency", "canary.example.test", "blocked", "apps", "nxdomain") in rows
    assert (MINISTRY, "ministry", "plain.example.test", "blocked", "apps", "null") in rows

    report = _report_json("--db", str(db))
    assert _without_times(report) == EXPECTED
    for row in report:
        first = _parse_time(row["first_seen"])
        last = _parse_time(row["last_seen"])
        # Report times have whole seconds.
        assert int(started) <= first <= last <= stopped

    csv_result = _report("--db", str(db), "--format", "csv")
    assert csv_result.returncode == 0, csv_result.stderr
    table = list(csv.reader(io.StringIO(csv_result.stdout)))
    assert table[0] == [
        "list",
        "network",
        "client",
        "count",
        "first_seen",
        "last_seen",
        "top_names",
    ]
    assert [row[:4] + row[6:] for row in table[1:]] == [
        [
            "apps",
            "ministry",
            MINISTRY,
            "5",
            "a.banned.example.test:3 b.banned.example.test:1 plain.example.test:1",
        ],
        ["apps", "agency", AGENCY, "3", "banned.example.test:2 canary.example.test:1"],
        ["other", "ministry", MINISTRY, "2", "other.example.test:2"],
    ]
    assert [row[4] for row in table[1:]] == [row["first_seen"] for row in report]

    text = _report("--db", str(db))
    assert text.returncode == 0, text.stderr
    lines = [re.split(r"\s{2,}", line) for line in text.stdout.splitlines()]
    assert lines[0] == [
        "LIST",
        "NETWORK",
        "CLIENT",
        "COUNT",
        "FIRST SEEN",
        "LAST SEEN",
        "TOP NAMES",
    ]
    assert [line[:4] + line[6:] for line in lines[1:]] == [
        [
            "apps",
            "ministry",
            MINISTRY,
            "5",
            "a.banned.example.test (3), b.banned.example.test (1), plain.example.test (1)",
        ],
        ["apps", "agency", AGENCY, "3", "banned.example.test (2), canary.example.test (1)"],
        ["other", "ministry", MINISTRY, "2", "other.example.test (2)"],
    ]


def test_report_filters_and_reads_the_path_from_the_config(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "audit.sqlite3"
    server = start_dnsfilter(_config(scripted_upstream))
    _send_queries(server)
    _stop(server)
    config = tmp_path / "dnsfilter.yaml"
    assert _without_times(_report_json("--config", str(config))) == EXPECTED
    assert _without_times(_report_json("--db", str(db), "--list", "other")) == EXPECTED[2:]
    assert _without_times(_report_json("--db", str(db), "--network", "agency")) == EXPECTED[1:2]
    assert _without_times(_report_json("--db", str(db), "--since", "10m")) == EXPECTED
    tomorrow = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)).date()
    assert _report_json("--db", str(db), "--since", tomorrow.isoformat()) == []
    empty = _report("--db", str(db), "--list", "nothing")
    assert (empty.returncode, empty.stdout) == (0, "no blocked attempts recorded\n")


def test_report_usage_errors_exit_2(tmp_path: Path) -> None:
    missing = _report("--db", str(tmp_path / "none.sqlite3"))
    assert missing.returncode == 2
    assert missing.stderr == (
        f"dnsfilter report: no audit database at {tmp_path}/none.sqlite3 "
        "(has `dnsfilter serve` run with this audit config?)\n"
    )
    bad_since = _report("--db", str(tmp_path / "none.sqlite3"), "--since", "last week")
    assert bad_since.returncode == 2
    assert bad_since.stderr == (
        "dnsfilter report: --since: expected a duration such as 30m, 24h or 7d, "
        "or an ISO date (got 'last week')\n"
    )
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    foreign = _report("--db", str(other))
    assert foreign.returncode == 2
    assert foreign.stderr == (
        f"dnsfilter report: {other}: not a dnsfilter audit database (schema 0)\n"
    )
    config = tmp_path / "c.yaml"
    config.write_text("audit: {sqlite_path: null, jsonl_path: '-'}\n")
    no_db = _report("--config", str(config))
    assert no_db.returncode == 2
    assert no_db.stderr == (
        "dnsfilter report: the config has no audit database (audit.sqlite_path is null); use --db\n"
    )
    assert _report("--format", "xml").returncode == 2


def test_log_allowed_records_every_reply_and_jsonl_gets_them_too(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "audit.sqlite3"
    jsonl = tmp_path / "logs" / "audit.jsonl"
    server = start_dnsfilter(
        _config(scripted_upstream, log_allowed=True, jsonl_path="logs/audit.jsonl")
    )
    _send_queries(server)
    _stop(server)
    rows = _db_rows(db)
    assert len(rows) == BLOCKED + ALLOWED
    allowed = [row for row in rows if row[3] != "blocked"]
    assert allowed == [
        (MINISTRY, "ministry", "www.example.test", "forwarded", "", ""),
        (AGENCY, "agency", "other.example.test", "forwarded", "", ""),
    ]
    # Both writers get the same batches in the same order.
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    keys = ("client", "network", "qname", "result", "list", "action")
    assert [tuple(line[key] for key in keys) for line in lines] == rows
    assert [line["qname"] for line in lines if line["qtype"] == "AAAA"] == [
        "b.banned.example.test",
        "other.example.test",
    ]
    # The report is about blocked attempts only, whatever else the store holds.
    assert _without_times(_report_json("--db", str(db))) == EXPECTED


def test_truncated_clients_are_reported_by_prefix(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "audit.sqlite3"
    server = start_dnsfilter(_config(scripted_upstream, pseudonymize="truncate"))
    _send_queries(server)
    _stop(server)
    expected = [{**row, "client": "127.0.0.0"} for row in EXPECTED]
    assert _without_times(_report_json("--db", str(db))) == expected
    assert MINISTRY.encode() not in db.read_bytes()


def test_hashed_clients_keep_their_pseudonym_across_restarts(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "audit.sqlite3"
    config = _config(scripted_upstream, pseudonymize="hash", hash_key_file="audit.key")
    for _ in range(2):
        server = start_dnsfilter(config)
        server.udp("a.banned.example.test", source=MINISTRY)
        server.udp("a.banned.example.test", source=AGENCY)
        _stop(server)
    report = _report_json("--db", str(db))
    # Equal counts: ordered by network name.
    assert [(row["network"], row["count"]) for row in report] == [("agency", 2), ("ministry", 2)]
    pseudonyms = [row["client"] for row in report]
    assert all(re.fullmatch(r"[0-9a-f]{16}", client) for client in pseudonyms)
    assert pseudonyms[0] != pseudonyms[1]
    assert (tmp_path / "audit.key").stat().st_mode & 0o777 == 0o600


def test_report_reads_the_store_while_the_server_writes_it(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "audit.sqlite3"
    server = start_dnsfilter(_config(scripted_upstream, flush_interval=0.1))
    server.udp("a.banned.example.test", source=MINISTRY)

    def reported() -> bool:
        result = _report("--db", str(db), "--format", "json")
        return result.returncode == 0 and len(json.loads(result.stdout)) == 1

    assert wait_until(reported, timeout=10)
    server.udp("a.banned.example.test", source=MINISTRY)
    assert wait_until(lambda: _report_json("--db", str(db))[0]["count"] == 2, timeout=10)
    _stop(server)


def _parse_time(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
