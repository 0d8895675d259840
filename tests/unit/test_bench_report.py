"""bench/report.py's target table and bench/servers.py's datapath reading, on made-up rows.

No server runs here: tests/integration/test_bench_smoke.py proves the harness end to end;
these pin what a full run's table would say about issue 12's targets.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from bench.dnsperf import LoadResult
from bench.report import ServerRun, render
from bench.servers import logged_datapath, split_version


def _load(qps: float, cpu_us: float) -> LoadResult:
    """A 10-second set at qps, with server CPU set so that CPU µs/query is cpu_us."""
    completed = int(qps * 10)
    return LoadResult(
        sent=completed,
        completed=completed,
        lost=0,
        runtime=10.0,
        qps=qps,
        mean_ms=0.5,
        p99_ms=1.0,
        rcodes={"NOERROR": completed},
        client_cpu=0.9,
        server_cpu=cpu_us * completed / 1e6 / 10.0,  # share of a core: bound() reads it
        core_busy=0.95,
        rss_kib=50_000,
    )


def _run(name: str, costs: Mapping[str, tuple[float, float]], **extra: object) -> ServerRun:
    run = ServerRun(name, version=f"{name} 1", first_answer_s=1.0, rss_after_kib=60_000)
    run.loads = {set_name: _load(qps, cpu) for set_name, (qps, cpu) in costs.items()}
    for key, value in extra.items():
        setattr(run, key, value)
    return run


def _targets(
    runs: list[ServerRun], *, smoke: bool = False, entries: int = 1_000_000
) -> dict[str, list[str]]:
    """The target table's rows by label: the cells after the label."""
    table = render(runs, title="t", facts=[], smoke=smoke, entries=entries)
    section = table[table.index("| target |") :]
    rows = {}
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


OURS = {"blocked": (131_000, 6.5), "cached": (140_000, 5.5), "miss": (30_000, 33.0)}
UNBOUND = {"blocked": (105_000, 9.0), "cached": (118_000, 7.5), "miss": (36_000, 27.0)}
DNSMASQ = {"blocked": (5_000, 200.0), "cached": (150_000, 5.0), "miss": (2_500, 400.0)}
MMSG = {"blocked": (137_000, 5.4), "cached": (137_000, 5.4), "miss": (137_000, 5.4)}
UVLOOP = {"blocked": (148_000, 5.9), "cached": (158_000, 5.6), "miss": (150_000, 5.8)}


def test_targets_of_issue_12_on_a_full_run() -> None:
    runs = [
        _run("dnsfilter", OURS, datapath="compiled (Cython, recvmmsg/sendmmsg)"),
        _run("unbound", UNBOUND),
        _run("dnsmasq", DNSMASQ),
        _run("ceiling", UVLOOP),
        _run("ceiling-mmsg", MMSG),
    ]
    rows = _targets(runs)
    # target: dnsfilter, peer, ratio, CPU ratio, goal, result
    assert rows["blocked CPU µs/query vs unbound"][:3] == ["6.50 µs", "9.00 µs (unbound)", "1.25x"]
    assert rows["blocked CPU µs/query vs unbound"][3] == "1.38x"
    assert rows["blocked CPU µs/query vs unbound"][-1] == "PASS"
    # dnsmasq's 5.0 µs beats unbound's 7.5: the cached target is against dnsmasq, and fails.
    cached = rows["cached CPU µs/query vs the better of dnsmasq, unbound"]
    assert cached[1] == "5.00 µs (dnsmasq)"
    assert cached[-1] == "FAIL"
    # 33 µs against unbound's 27: within 1.3x.
    assert rows["miss CPU µs/query vs unbound"][-1] == "PASS"
    # The compiled echo is the ceiling when the run has it, though the uvloop one answered more.
    blocked = rows["blocked QPS vs the echo ceiling"]
    assert blocked[1] == "137,000 qps (ceiling-mmsg)"
    assert blocked[-1] == "PASS"
    assert rows["cached QPS vs the echo ceiling"][-1] == "PASS"
    assert rows["start to first answer (1M list)"][-1] == "PASS"
    assert rows["RSS after load (1M list)"][0] == "61 MB"  # 60,000 KiB in MB of 10^6 bytes
    assert rows["RSS after load (1M list)"][-1] == "PASS"
    table = render(runs, title="t", facts=[], smoke=False)
    assert "| dnsfilter (datapath: compiled (Cython, recvmmsg/sendmmsg)) |" in table
    assert "dnsfilter-pure" not in table


def test_uvloop_ceiling_without_the_compiled_one_and_the_pure_column() -> None:
    slow = {"blocked": (70_000, 13.0), "cached": (110_000, 8.5), "miss": (18_000, 55.0)}
    runs = [
        _run("dnsfilter", OURS),
        _run("dnsfilter-pure", slow),
        _run("unbound", UNBOUND),
        _run("ceiling", UVLOOP),
    ]
    rows = _targets(runs)
    blocked = rows["blocked QPS vs the echo ceiling"]
    assert blocked[1] == "148,000 qps (ceiling)"
    assert blocked[5] == "FAIL"  # 131k < 0.95 x 148k, on a server-bound row
    # The cached CPU target has unbound alone; the pure row sits in the last column.
    cached = rows["cached CPU µs/query vs the better of dnsmasq, unbound"]
    assert cached[1] == "7.50 µs (unbound)"
    assert cached[-1] == "8.50 µs; 0.88x; FAIL"
    assert rows["blocked QPS vs the echo ceiling"][-1] == "70,000 qps; 0.47x; FAIL"


@pytest.mark.parametrize(
    ("servers", "label", "result"),
    [
        pytest.param(
            ("dnsfilter",), "blocked CPU µs/query vs unbound", "n/a (not measured)", id="no-peer"
        ),
        pytest.param(
            ("unbound", "ceiling-mmsg"),
            "RSS after load (1M list)",
            "n/a (not measured)",
            id="no-dnsfilter",
        ),
        pytest.param(
            ("dnsfilter", "unbound", "ceiling-mmsg"),
            "blocked QPS vs the echo ceiling",
            "n/a (smoke run)",
            id="smoke",
        ),
    ],
)  # fmt: skip
def test_targets_not_judged(servers: tuple[str, ...], label: str, result: str) -> None:
    costs = {"dnsfilter": OURS, "unbound": UNBOUND, "ceiling-mmsg": MMSG}
    runs = [_run(name, costs[name]) for name in servers]
    assert _targets(runs, smoke=label == "blocked QPS vs the echo ceiling")[label][-1] == result


def test_the_start_and_memory_targets_need_the_1m_list() -> None:
    rows = _targets([_run("dnsfilter", OURS)], entries=200_000)
    assert rows["start to first answer (1M list)"][-1] == "n/a (200,000-entry list)"
    assert rows["RSS after load (1M list)"][-1] == "n/a (200,000-entry list)"


def test_a_failing_row_that_is_not_server_bound_is_uncertain_against_a_ceiling() -> None:
    ours = _run("dnsfilter", OURS)
    ours.loads["blocked"] = _load(100_000, 6.0)  # 0.6 of a core, the core 95% busy: shared
    ceiling = _run("ceiling-mmsg", MMSG)
    ceiling.loads["blocked"] = _load(137_000, 3.0)  # 0.41 of a core: client-bound
    rows = _targets([ours, ceiling])
    assert rows["blocked QPS vs the echo ceiling"][-1] == "FAIL?"
    assert rows["cached QPS vs the echo ceiling"][-1] == "PASS"  # a client-bound ceiling


@pytest.mark.parametrize(
    ("stdout", "version", "datapath"),
    [
        pytest.param("dnsfilter 0.1.0\n", "dnsfilter 0.1.0", None, id="before-the-datapath"),
        pytest.param(
            "dnsfilter 0.1.0\ndatapath: compiled (Cython, recvmmsg/sendmmsg)\n",
            "dnsfilter 0.1.0",
            "compiled (Cython, recvmmsg/sendmmsg)",
            id="second-line",
        ),
        pytest.param(
            "dnsfilter 0.1.0, datapath pure Python (DNSFILTER_PURE is set)\n",
            "dnsfilter 0.1.0",
            "pure Python (DNSFILTER_PURE is set)",
            id="same-line",
        ),
        pytest.param("", "dnsfilter ?", None, id="nothing"),
    ],
)
def test_split_version(stdout: str, version: str, datapath: str | None) -> None:
    assert split_version(stdout) == (version, datapath)


def test_logged_datapath_reads_the_start_up_line_only() -> None:
    log = (
        "2026-12-04 00:00:00,000 INFO dnsfilter.datapath.server: the datapath module started\n"
        "2026-12-04 00:00:00,001 INFO dnsfilter.operate.app: datapath: compiled (Cython, x)\n"
        "2026-12-04 00:00:00,002 INFO dnsfilter.operate.app: listening on 127.0.0.1:53\n"
    )
    assert logged_datapath(log) == "compiled (Cython, x)"
    assert logged_datapath("INFO dnsfilter.operate.app: listening on 127.0.0.1:53\n") is None
