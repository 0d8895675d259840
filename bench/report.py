"""The markdown report of one run: per server and query set, then dnsfilter against the targets.

Ratios are dnsfilter / peer from the same run only: the machine is noisy, so numbers from two
runs are never divided by each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.dnsperf import LoadResult
from bench.workload import SET_NAMES

#: A row is server-bound when the server used at least this share of a core...
SERVER_BOUND = 0.8
#: ...and its core was shared when it was this busy without the server being server-bound.
SHARED_BUSY = 0.9
#: MB here is 10^6 bytes (VmRSS is in KiB).
_KIB_TO_MB = 1024 / 1_000_000


@dataclass(slots=True)
class ServerRun:
    """What one server did in this run; error set when it failed part-way."""

    name: str
    version: str = ""
    notes: list[str] = field(default_factory=list)
    first_answer_s: float | None = None
    rss_start_kib: int | None = None
    rss_after_kib: int | None = None
    loads: dict[str, LoadResult] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """One line of issue 5's target table."""

    label: str
    goal: str
    unit: str  #: "qps": dnsfilter / peer on one query set; "s" and "MB": dnsfilter's own value
    limit: float  #: the lowest ratio (qps), or the highest value (s, MB)
    set_name: str = ""
    peer: str = ""


TARGETS = (
    Target("blocked QPS vs unbound", "≥ 0.9x", "qps", 0.9, "blocked", "unbound"),
    Target("blocked QPS vs ceiling", "≥ 0.8x", "qps", 0.8, "blocked", "ceiling"),
    Target("cached QPS vs dnsmasq", "≥ 0.9x", "qps", 0.9, "cached", "dnsmasq"),
    Target("miss QPS vs unbound", "≥ 1.5x", "qps", 1.5, "miss", "unbound"),
    Target("start to first answer", "≤ 2 s", "s", 2.0),
    Target("RSS after load", "≤ 150 MB", "MB", 150.0),
)


def render(runs: Sequence[ServerRun], *, title: str, facts: Sequence[str], smoke: bool) -> str:
    lines = [f"## {title}", ""]
    lines += [f"- {fact}" for fact in facts]
    lines += [
        "",
        "| server | set | QPS | mean ms | p99 ms | lost | server CPU | CPU µs/query "
        "| its core busy | dnsperf CPU | bound | RSS after (MB) | answers |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for run in runs:
        for set_name in SET_NAMES:
            load = run.loads.get(set_name)
            cells = [run.name, set_name]
            if load is None:
                cells += ["—"] * 10 + ["not measured"]
            else:
                cells += [
                    f"{load.qps:,.0f}",
                    f"{load.mean_ms:.3f}",
                    _opt(load.p99_ms, ".3f"),
                    _lost(load),
                    _opt(load.server_cpu, ".0%"),
                    _opt(_cpu_per_query(load), ".1f"),
                    _opt(load.core_busy, ".0%"),
                    _opt(load.client_cpu, ".0%"),
                    bound(load),
                    _opt(_mb(load.rss_kib), ".0f"),
                    _rcodes(load),
                ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| server | start → first answer (s) | RSS after start (MB) | RSS after load (MB) "
        "| version | notes |",
        "|---|---:|---:|---:|---|---|",
    ]
    for run in runs:
        notes = "; ".join(run.notes + ([f"**failed**: {run.error}"] if run.error else []))
        lines.append(
            f"| {run.name} | {_opt(run.first_answer_s, '.2f')} | "
            f"{_opt(_mb(run.rss_start_kib), '.0f')} | {_opt(_mb(run.rss_after_kib), '.0f')} | "
            f"{run.version} | {_cell(notes)} |"
        )
    by_name = {run.name: run for run in runs}
    lines += [
        "",
        "dnsfilter against the targets of issue 5 (ratios within this run; the CPU ratio is the "
        "peer's CPU µs/query over dnsfilter's: the QPS ratio if each were limited by its own CPU "
        "time alone):",
        "",
        "| target | dnsfilter | peer | ratio | CPU ratio | goal | result |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    lines += [_target_row(target, by_name, smoke) for target in TARGETS]
    lines += [
        "",
        "`?`: a row of the ratio was not server-bound (column bound), so its QPS is not the "
        "server's capacity; trust the CPU ratio there, and run again.",
    ]
    return "\n".join(lines) + "\n"


def _target_row(target: Target, runs: dict[str, ServerRun], smoke: bool) -> str:
    ours = runs.get("dnsfilter")
    value: float | None = None
    peer: float | None = None
    ratio = cpu_ratio = "—"
    if target.unit == "qps":
        mine, theirs = _load(ours, target.set_name), _load(runs.get(target.peer), target.set_name)
        value = mine.qps if mine else None
        peer = theirs.qps if theirs else None
        if value is not None and peer:
            ratio = f"{value / peer:.2f}x"
        my_cpu, their_cpu = _cpu_per_query(mine), _cpu_per_query(theirs)
        if my_cpu and their_cpu:
            cpu_ratio = f"{their_cpu / my_cpu:.2f}x"
        shown = f"{value:,.0f} qps" if value is not None else "—"
        peer_shown = f"{peer:,.0f} qps" if peer is not None else "—"
        passed = value is not None and peer is not None and value >= target.limit * peer
        certain = all(load is not None and bound(load) == "server" for load in (mine, theirs))
    else:
        if ours is not None and target.unit == "s":
            value = ours.first_answer_s
        elif ours is not None:
            value = _mb(ours.rss_after_kib)
        digits = 2 if target.unit == "s" else 0
        shown = f"{value:.{digits}f} {target.unit}" if value is not None else "—"
        peer_shown = "—"
        passed = value is not None and value <= target.limit
        certain = True
    if value is None or (target.unit == "qps" and not peer):
        result = "n/a (not measured)"
    elif smoke:
        result = "n/a (smoke run)"
    else:
        result = ("PASS" if passed else "FAIL") + ("" if certain else "?")
    cells = [target.label, shown, peer_shown, ratio, cpu_ratio, target.goal, result]
    return "| " + " | ".join(cells) + " |"


def bound(load: LoadResult) -> str:
    """What limited a row: "server" (it used most of a core), "shared" (its core was busy,
    but not with the server: other processes, or loopback work for a very light server), or
    "client" (its core sat idle part of the time: dnsperf or the upstream set the pace).
    """
    if load.server_cpu is not None and load.server_cpu >= SERVER_BOUND:
        return "server"
    if load.core_busy is not None and load.core_busy >= SHARED_BUSY:
        return "shared"
    return "client"


def _load(run: ServerRun | None, set_name: str) -> LoadResult | None:
    return run.loads.get(set_name) if run is not None else None


def _cpu_per_query(load: LoadResult | None) -> float | None:
    """Server CPU time per answered query, in µs: what the server spent, whoever else ran."""
    if load is None or load.server_cpu is None or not load.completed:
        return None
    return load.server_cpu * load.runtime / load.completed * 1e6


def _mb(kib: int | None) -> float | None:
    return kib * _KIB_TO_MB if kib is not None else None


def _opt(value: float | None, fmt: str) -> str:
    return format(value, fmt) if value is not None else "—"


def _lost(load: LoadResult) -> str:
    if not load.lost:
        return "0"
    return f"{load.lost:,} ({100 * load.lost / max(1, load.sent):.2f}%)"


def _rcodes(load: LoadResult) -> str:
    total = sum(load.rcodes.values())
    if not total:
        return "none"
    parts = [
        f"{code} {100 * count / total:.1f}%"
        for code, count in sorted(load.rcodes.items(), key=lambda item: -item[1])
    ]
    return ", ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
