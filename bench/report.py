"""The markdown report of one run: per server and query set, then dnsfilter against the targets.

Ratios are dnsfilter / peer from the same run only: the machine is noisy, so numbers from two
runs are never divided by each other. The targets are issue 12's; the CPU µs per query is the
stable figure (a shared core moves QPS far more), so the per-query cost targets are on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

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
    datapath: str | None = None  #: dnsfilter rows: the datapath it ran, when it said


#: The row the targets judge, and the one shown beside it for comparison.
OURS = "dnsfilter"
PURE = "dnsfilter-pure"
NOAUDIT = "dnsfilter-noaudit"
#: The echo rows, preferred first: the targets use the compiled floor when the run has it.
CEILINGS = ("ceiling-mmsg", "ceiling")


@dataclass(frozen=True, slots=True)
class Target:
    """One line of issue 12's target table."""

    label: str
    goal: str
    #: "cpu": dnsfilter's CPU µs/query on a set ≤ limit * the peer's; "qps": dnsfilter's QPS
    #: ≥ limit * the peer's; "s" and "MB": dnsfilter's own value ≤ limit
    unit: Literal["cpu", "qps", "s", "MB"]
    limit: float
    set_name: str = ""
    #: the peer rows; "best": the one with the lowest CPU µs/query, "first": the first measured
    peers: tuple[str, ...] = ()
    pick: Literal["best", "first"] = "first"
    #: the peers are echo ceilings: a ceiling that dnsperf cannot saturate (bound "client")
    #: still marks the most this load answers, so only dnsfilter's own row can make a QPS
    #: result uncertain, and only when it fails
    ceiling: bool = False
    #: the target is defined on a list this long: a run with a shorter one does not judge it
    list_entries: int = 0


TARGETS = (
    Target(
        "blocked CPU µs/query vs unbound",
        "≤ 1.0x (CPU ratio ≥ 1.00)",
        "cpu",
        1.0,
        "blocked",
        ("unbound",),
    ),
    Target(
        "cached CPU µs/query vs the better of dnsmasq, unbound",
        "≤ 1.0x (CPU ratio ≥ 1.00)",
        "cpu",
        1.0,
        "cached",
        ("dnsmasq", "unbound"),
        "best",
    ),
    Target(
        "miss CPU µs/query vs unbound",
        "≤ 1.3x (CPU ratio ≥ 0.77)",
        "cpu",
        1.3,
        "miss",
        ("unbound",),
    ),
    Target(
        "blocked QPS vs the echo ceiling",
        "≥ 0.95x",
        "qps",
        0.95,
        "blocked",
        CEILINGS,
        ceiling=True,
    ),
    Target(
        "cached QPS vs the echo ceiling", "≥ 0.95x", "qps", 0.95, "cached", CEILINGS, ceiling=True
    ),
    Target("start to first answer (1M list)", "≤ 1.5 s", "s", 1.5, list_entries=1_000_000),
    Target("RSS after load (1M list)", "≤ 100 MB", "MB", 100.0, list_entries=1_000_000),
)


@dataclass(frozen=True, slots=True)
class Judged:
    """One target applied to one dnsfilter row: the cells of its line."""

    shown: str
    peer: str
    ratio: str
    cpu_ratio: str
    result: str


def render(
    runs: Sequence[ServerRun],
    *,
    title: str,
    facts: Sequence[str],
    smoke: bool,
    entries: int | None = None,
) -> str:
    """The report; entries (the generated list's size) below a target's list_entries leaves
    that target unjudged."""
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
    ours = by_name.get(OURS)
    others = [by_name[name] for name in (NOAUDIT, PURE) if name in by_name]
    datapath = f" (datapath: {ours.datapath})" if ours is not None and ours.datapath else ""
    header = ["target", f"{OURS}{datapath}", "peer", "ratio", "CPU ratio", "goal", "result"]
    header += [f"{other.name}: value; ratio; result" for other in others]
    lines += [
        "",
        f"{OURS} against the targets of issue 12 (ratios within this run; the ratio is "
        f"{OURS}'s QPS over the peer's, the CPU ratio the peer's CPU µs/query over {OURS}'s: "
        "the QPS ratio if each were limited by its own CPU time alone; a CPU target passes "
        "when the CPU ratio is at least 1/limit):",
        "",
        "| " + " | ".join(header) + " |",
        "|---|---:|---:|---:|---:|---|---|" + "---|" * len(others),
    ]
    for target in TARGETS:
        judged = _judge(target, ours, by_name, smoke, entries)
        cells = [
            target.label,
            judged.shown,
            judged.peer,
            judged.ratio,
            judged.cpu_ratio,
            target.goal,
            judged.result,
        ]
        for row in others:
            other = _judge(target, row, by_name, smoke, entries)
            ratio = other.cpu_ratio if target.unit == "cpu" else other.ratio
            cells.append(
                "; ".join(cell for cell in (other.shown, ratio, other.result) if cell != "—")
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "`?`: a row of a QPS ratio was not server-bound (column bound), so its QPS is not the "
        "server's capacity; trust the CPU ratio there, and run again. Against an echo "
        "ceiling only dnsfilter's row counts (a ceiling that dnsperf cannot saturate still "
        "marks the most this load answers). The CPU targets hold whatever bound a row: CPU "
        "µs/query is the server's own cost.",
    ]
    return "\n".join(lines) + "\n"


def _peer(target: Target, runs: dict[str, ServerRun]) -> tuple[str, LoadResult] | None:
    """The peer row a target compares with, and its load on the target's set."""
    measured = [
        (name, load)
        for name in target.peers
        if (load := _load(runs.get(name), target.set_name)) is not None
    ]
    if not measured:
        return None
    if target.pick == "best":
        costed = [item for item in measured if _cpu_per_query(item[1]) is not None]
        if costed:
            return min(costed, key=lambda item: _cpu_per_query(item[1]) or 0.0)
    return measured[0]


def _judge(
    target: Target,
    ours: ServerRun | None,
    runs: dict[str, ServerRun],
    smoke: bool,
    entries: int | None = None,
) -> Judged:
    value: float | None = None
    ratio = cpu_ratio = "—"
    peer_shown = "—"
    have_peer = True
    if target.unit in ("cpu", "qps"):
        mine = _load(ours, target.set_name)
        found = _peer(target, runs)
        theirs = found[1] if found else None
        have_peer = theirs is not None
        if mine is not None and theirs is not None and theirs.qps:
            ratio = f"{mine.qps / theirs.qps:.2f}x"
        my_cpu, their_cpu = _cpu_per_query(mine), _cpu_per_query(theirs)
        if my_cpu and their_cpu:
            cpu_ratio = f"{their_cpu / my_cpu:.2f}x"
        if target.unit == "cpu":
            value = my_cpu
            shown = f"{my_cpu:.2f} µs" if my_cpu is not None else "—"
            if found is not None and their_cpu is not None:
                peer_shown = f"{their_cpu:.2f} µs ({found[0]})"
            have_peer = their_cpu is not None
            passed = (
                my_cpu is not None
                and their_cpu is not None
                and my_cpu <= (target.limit * their_cpu)
            )
            certain = True
        else:
            value = mine.qps if mine is not None else None
            shown = f"{value:,.0f} qps" if value is not None else "—"
            if found is not None and theirs is not None:
                peer_shown = f"{theirs.qps:,.0f} qps ({found[0]})"
            have_peer = theirs is not None and bool(theirs.qps)
            passed = value is not None and theirs is not None and value >= target.limit * theirs.qps
            rows = (mine,) if target.ceiling else (mine, theirs)
            certain = all(load is not None and bound(load) == "server" for load in rows)
            if target.ceiling and passed:
                certain = True
    else:
        if ours is not None and target.unit == "s":
            value = ours.first_answer_s
        elif ours is not None:
            value = _mb(ours.rss_after_kib)
        digits = 2 if target.unit == "s" else 0
        shown = f"{value:.{digits}f} {target.unit}" if value is not None else "—"
        passed = value is not None and value <= target.limit
        certain = True
    if value is None or not have_peer:
        result = "n/a (not measured)"
    elif smoke:
        result = "n/a (smoke run)"
    elif entries is not None and entries < target.list_entries:
        result = f"n/a ({entries:,}-entry list)"
    else:
        result = ("PASS" if passed else "FAIL") + ("" if certain else "?")
    return Judged(shown, peer_shown, ratio, cpu_ratio, result)


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
