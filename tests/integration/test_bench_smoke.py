"""The benchmark still runs end to end: `bench/run.py --smoke` as CI would run it.

This proves the harness (workload, nsd, every server's config, dnsperf parsing, the table),
never the speed: the only number checked is that each row answered something.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SERVERS = ("dnsfilter", "dnsfilter-pure", "unbound", "dnsmasq", "ceiling", "ceiling-mmsg")
SETS = ("blocked", "cached", "miss")
TIMEOUT = 120.0


def _smoke(out: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "run.py"), "--smoke", "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGINT lets the harness stop the servers it started before it exits.
        proc.send_signal(signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"bench/run.py --smoke ran over {TIMEOUT:g}s:\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _qps_by_row(table: str) -> dict[tuple[str, str], str]:
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] in SERVERS and cells[1] in SETS:
            rows[(cells[0], cells[1])] = cells[2]
    return rows


def _notes_by_server(table: str) -> dict[str, str]:
    """The second table's notes column (its rows have 6 cells: server ... version, notes)."""
    notes = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] in SERVERS:
            notes[cells[0]] = cells[5]
    return notes


def test_smoke_run_measures_every_server_and_query_set(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    result = _smoke(out)
    assert result.returncode == 0, result.stderr[-4000:]
    table = out.read_text(encoding="utf-8")
    assert table == result.stdout.rstrip("\n") + "\n"
    rows = _qps_by_row(table)
    for server in SERVERS:
        for set_name in SETS:
            qps = rows.get((server, set_name))
            assert qps is not None, f"no row for {server} / {set_name}:\n{table}"
            assert qps.replace(",", "").isdigit() and int(qps.replace(",", "")) > 0, (
                f"{server} / {set_name} answered nothing (QPS {qps!r}):\n{table}"
            )
    notes = _notes_by_server(table)
    for server in ("dnsfilter", "dnsfilter-pure"):
        assert notes.get(server, "").startswith("datapath"), f"{server}: no datapath:\n{table}"
    assert "pure" in notes["dnsfilter-pure"].split(";")[0].lower(), table
