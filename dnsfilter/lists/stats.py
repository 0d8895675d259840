"""`dnsfilter lists stats`: how big each configured list is and what loading it costs.

Each list is loaded twice: once timed (tracemalloc slows allocation several-fold, so it must
not run during the timing), once under tracemalloc to measure the memory the loaded list
keeps and the peak while loading. The match table `serve` builds from all of them is
measured the same way.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from dnsfilter.config import Config
from dnsfilter.datapath.policy import DomainTable
from dnsfilter.errors import ListError
from dnsfilter.lists.catalog import list_sources
from dnsfilter.lists.model import BlockList, Role, role_counts
from dnsfilter.lists.sources import HostResolver

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ListStats:
    name: str
    source: str
    domains: int
    exceptions: int
    networks_v4: int
    networks_v6: int
    duplicates: int  #: entries the loader dropped because the name came twice
    load_seconds: float
    memory_bytes: int  #: allocated by loading and still held by the loaded list
    peak_bytes: int  #: most allocated at once while loading
    #: entries per role ("none": entries without one), in Role order
    roles: tuple[tuple[str, int], ...] = ()
    rejected: int = 0  #: names the list records as reviewed and not blocked


@dataclass(frozen=True, slots=True)
class StatsReport:
    source: str  #: the config
    lists: tuple[ListStats, ...]
    table_names: int  #: distinct names in the match table (entries, exceptions, allowlist)
    table_seconds: float
    table_bytes: int

    @property
    def total(self) -> ListStats:
        def total(attr: str) -> int:
            return sum(int(getattr(s, attr)) for s in self.lists)

        return ListStats(
            name="total",
            source="",
            domains=total("domains"),
            exceptions=total("exceptions"),
            networks_v4=total("networks_v4"),
            networks_v6=total("networks_v6"),
            duplicates=total("duplicates"),
            load_seconds=sum(s.load_seconds for s in self.lists),
            memory_bytes=total("memory_bytes"),
            peak_bytes=max((s.peak_bytes for s in self.lists), default=0),
            roles=_merged_roles(s.roles for s in self.lists),
            rejected=total("rejected"),
        )


def _merged_roles(per_list: Iterable[tuple[tuple[str, int], ...]]) -> tuple[tuple[str, int], ...]:
    counts: dict[str, int] = {}
    for roles in per_list:
        for role, count in roles:
            counts[role] = counts.get(role, 0) + count
    order = [*(r.value for r in Role), "none"]
    return tuple((role, counts[role]) for role in order if role in counts)


def _timed(build: Callable[[], _T]) -> tuple[_T, float]:
    start = time.perf_counter()
    value = build()
    return value, time.perf_counter() - start


def _traced(build: Callable[[], object]) -> tuple[int, int]:
    """(bytes the built value keeps, peak bytes while building it)."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        value = build()
        after, peak = tracemalloc.get_traced_memory()
        del value
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return max(after - before, 0), max(peak - before, 0)


def measure(config: Config, base: Path) -> StatsReport:
    """Load every list of the config (relative paths from base); ListError lists them all.

    A URL list is measured on its last good copy, downloaded first when it is stale.
    """
    stats: list[ListStats] = []
    loaded: list[BlockList] = []
    problems: list[str] = []
    for source in list_sources(config.lists, base, HostResolver.from_config(config)):
        try:
            if source.is_url:
                # Download now if the copy is stale, so the measured loads read the copy.
                source.load()
            blocklist, seconds = _timed(source.load)
        except ListError as exc:
            problems.extend(exc.problems)
            continue
        memory, peak = _traced(source.load)
        loaded.append(blocklist)
        stats.append(
            ListStats(
                name=blocklist.name,
                source=blocklist.source,
                domains=len(blocklist.domains),
                exceptions=len(blocklist.exceptions),
                networks_v4=sum(1 for n in blocklist.networks if n.prefix.version == 4),
                networks_v6=sum(1 for n in blocklist.networks if n.prefix.version == 6),
                duplicates=blocklist.duplicates,
                load_seconds=seconds,
                memory_bytes=memory,
                peak_bytes=peak,
                roles=tuple(role_counts(blocklist).items()),
                rejected=len(blocklist.rejected),
            )
        )
    if problems:
        raise ListError(problems)
    table, table_seconds = _timed(lambda: DomainTable(loaded, config.allowlist))
    table_bytes, _ = _traced(lambda: DomainTable(loaded, config.allowlist))
    return StatsReport(config.source, tuple(stats), len(table), table_seconds, table_bytes)


def _kib(size: int) -> str:
    return f"{size / 1024:.1f}"


def render_text(report: StatsReport) -> str:
    header = (
        "list",
        "domains",
        "exceptions",
        "networks v4/v6",
        "dups",
        "load ms",
        "KiB",
        "peak KiB",
    )
    rows: list[Sequence[str]] = []
    for s in (*report.lists, report.total):
        rows.append(
            (
                s.name,
                str(s.domains),
                str(s.exceptions),
                f"{s.networks_v4}/{s.networks_v6}",
                str(s.duplicates),
                f"{s.load_seconds * 1000:.1f}",
                _kib(s.memory_bytes),
                _kib(s.peak_bytes),
            )
        )
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    lines = [f"config: {report.source}", line(header)]
    lines += [line(row) for row in rows[:-1]]
    lines += ["-" * len(line(header)), line(rows[-1])]
    lines.append(
        f"match table: {report.table_names} names, {_kib(report.table_bytes)} KiB, "
        f"built in {report.table_seconds * 1000:.1f} ms"
    )
    lines.append("roles (entries per role; an entry may have several):")
    for s in (*report.lists, report.total):
        roles = ", ".join(f"{role} {count}" for role, count in s.roles) or "no entries"
        lines.append(f"  {s.name}: {roles}; rejected names {s.rejected}")
    lines.append("sources:")
    lines += [f"  {s.name}: {s.source}" for s in report.lists]
    return "\n".join(lines) + "\n"


def _stats_json(s: ListStats) -> dict[str, object]:
    document = asdict(s)
    document["roles"] = dict(s.roles)
    return document


def render_json(report: StatsReport) -> str:
    document = {
        "config": report.source,
        "lists": [_stats_json(s) for s in report.lists],
        "total": _stats_json(report.total),
        "match_table": {
            "names": report.table_names,
            "seconds": report.table_seconds,
            "bytes": report.table_bytes,
        },
    }
    return json.dumps(document, indent=2) + "\n"
