"""The markdown report of one run: per server and query set, then dnsfilter against the targets.

Ratios are dnsfilter / peer from the same run only: the machine is noisy, so numbers from two
runs are never divided by each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.dnsperf import LoadResult
from bench.workload import SET_NAMES

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
    value: Callable[[dict[str, ServerRun]], tuple[float | None, float | None]]
    passes: Callable[[float, float | None], bool]
    unit: str


def _qps(server: str, set_name: str) -> Callable[[dict[str, ServerRun]], float | None]:
    def get(runs: dict[str, ServerRun]) -> float | None:
        run = runs.get(server)
        load = run.loads.get(set_name) if run else None
        return load.qps if load else None

    return get


def _ratio_target(set_name: str, peer: str, minimum: float) -> Target:
    ours, theirs = _qps("dnsfilter", set_name), _qps(peer, set_name)
    return Target(
        label=f"{set_name} QPS vs {peer}",
        goal=f"≥ {minimum:g}x",
        value=lambda runs: (ours(runs), theirs(runs)),
        passes=lambda value, peer_value: peer_value is not None and value >= minimum * peer_value,
        unit="qps",
    )


def _first_answer(runs: dict[str, ServerRun]) -> tuple[float | None, float | None]:
    run = runs.get("dnsfilter")
    return (run.first_answer_s if run else None), None


def _rss_after(runs: dict[str, ServerRun]) -> tuple[float | None, float | None]:
    run = runs.get("dnsfilter")
    if run is None or run.rss_after_kib is None:
        return None, None
    return run.rss_after_kib * _KIB_TO_MB, None


TARGETS = (
    _ratio_target("blocked", "unbound", 0.9),
    _ratio_target("blocked", "ceiling", 0.8),
    _ratio_target("cached", "dnsmasq", 0.9),
    _ratio_target("miss", "unbound", 1.5),
    Target("start to first answer", "≤ 2 s", _first_answer, lambda v, _: v <= 2.0, "s"),
    Target("RSS after load", "≤ 150 MB", _rss_after, lambda v, _: v <= 150.0, "MB"),
)


def render(runs: Sequence[ServerRun], *, title: str, facts: Sequence[str], smoke: bool) -> str:
    lines = [f"## {title}", ""]
    lines += [f"- {fact}" for fact in facts]
    lines += [
        "",
        "| server | set | QPS | mean ms | p99 ms | lost | server CPU | CPU µs/query "
        "| its core busy | dnsperf CPU | answers |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        for set_name in SET_NAMES:
            load = run.loads.get(set_name)
            cells = [run.name, set_name]
            if load is None:
                cells += ["—"] * 8 + ["not measured"]
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
        "dnsfilter against the targets of issue 5 (ratios within this run):",
        "",
        "| target | dnsfilter | peer | ratio | goal | result |",
        "|---|---:|---:|---:|---|---|",
    ]
    for target in TARGETS:
        value, peer = target.value(by_name)
        ratio = f"{value / peer:.2f}x" if value is not None and peer else "—"
        if value is None or (target.unit == "qps" and not peer):
            result = "n/a (not measured)"
        elif smoke:
            result = "n/a (smoke run)"
        else:
            result = "PASS" if target.passes(value, peer) else "FAIL"
        fmt = ",.0f" if target.unit == "qps" else ".2f" if target.unit == "s" else ".0f"
        shown = f"{value:{fmt}} {target.unit}" if value is not None else "—"
        peer_shown = f"{peer:{fmt}} {target.unit}" if peer is not None else "—"
        lines.append(
            f"| {target.label} | {shown} | {peer_shown} | {ratio} | {target.goal} | {result} |"
        )
    return "\n".join(lines) + "\n"


def _cpu_per_query(load: LoadResult) -> float | None:
    """Server CPU time per answered query, in µs: what the server spent, whoever else ran."""
    if load.server_cpu is None or not load.completed:
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
