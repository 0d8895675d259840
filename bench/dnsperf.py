"""One dnsperf run against 127.0.0.1:PORT and what it measured.

QPS, mean latency, lost queries and response codes come from dnsperf's own summary. dnsperf
2.10 (Debian 12) has no latency histogram or percentile option (``-O`` knows only
num-queries-per-conn, suppress and the DoH options), so p99 comes from ``-v``: dnsperf then
prints every response with its latency (microsecond resolution), which this module counts into
a histogram. Printing costs dnsperf about 0.1-0.2 µs of CPU per query on top of ~6 µs (measured
against bench/echo.py, three alternating 5 s runs each way): within the machine's noise, and
``--no-latencies`` turns it off.
"""

from __future__ import annotations

import math
import re
import resource
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from bench.process import Child, ChildError
from bench.workload import QuerySet

_SUMMARY = {
    "sent": re.compile(r"Queries sent:\s+(\d+)"),
    "completed": re.compile(r"Queries completed:\s+(\d+)"),
    "lost": re.compile(r"Queries lost:\s+(\d+)"),
    "runtime": re.compile(r"Run time \(s\):\s+([\d.]+)"),
    "qps": re.compile(r"Queries per second:\s+([\d.]+)"),
    "mean": re.compile(r"Average Latency \(s\):\s+([\d.]+)"),
}
_RCODES = re.compile(r"Response codes:\s+(.*)")
_RCODE_ITEM = re.compile(r"([A-Z]+) (\d+)")


@dataclass(frozen=True, slots=True)
class LoadSettings:
    duration: float  #: seconds per measured run (-l)
    clients: int  #: dnsperf -c: client sockets (source ports)
    outstanding: int  #: dnsperf -q: queries in flight at most
    timeout: float  #: dnsperf -t: a query unanswered this long counts as lost
    cores: str | None  #: where dnsperf runs (taskset -c)
    latencies: bool = True  #: -v, for p99


@dataclass(frozen=True, slots=True)
class LoadResult:
    sent: int
    completed: int
    lost: int
    runtime: float  #: seconds dnsperf actually ran (shorter when a read-once file ran out)
    qps: float
    mean_ms: float
    p99_ms: float | None
    rcodes: dict[str, int]
    client_cpu: float | None = None  #: dnsperf's CPU time / its run time (1.0 = one core)
    server_cpu: float | None = None  #: the server's, over the same run (set by the caller)
    core_busy: float | None = None  #: the server's cores, busy by anything (set by the caller)
    rss_kib: int | None = None  #: the server's RSS right after the run (set by the caller)


def find_dnsperf() -> str:
    found = shutil.which("dnsperf")
    if found is None:
        raise RuntimeError("dnsperf is not installed: apt-get install dnsperf")
    return found


def dnsperf_version() -> str:
    result = subprocess.run(
        [find_dnsperf(), "-h"], capture_output=True, text=True, timeout=10, check=False
    )
    match = re.search(r"Version (\S+)", result.stdout + result.stderr)
    return f"dnsperf {match.group(1)}" if match else "dnsperf"


def run_load(port: int, queries: QuerySet, settings: LoadSettings, output: Path) -> LoadResult:
    """Run dnsperf for settings.duration (or until a read-once file ends) and parse its output."""
    argv = [
        find_dnsperf(),
        "-s", "127.0.0.1",
        "-p", str(port),
        "-d", str(queries.path),
        "-l", f"{settings.duration:g}",
        "-c", str(settings.clients),
        "-q", str(settings.outstanding),
        "-t", f"{settings.timeout:g}",
    ]  # fmt: skip
    if queries.once:
        argv += ["-n", "1"]
    if settings.latencies:
        argv.append("-v")
    before = _children_cpu()
    _run(argv, output, settings.cores, settings.duration + settings.timeout + 60)
    used = _children_cpu() - before  # dnsperf is the only child reaped meanwhile
    try:
        result = parse_output(output)
        return replace(result, client_cpu=used / result.runtime if result.runtime else None)
    finally:
        output.unlink(missing_ok=True)  # -v output is ~30 bytes a query


def warm(port: int, queries: QuerySet, output: Path, cores: str | None) -> LoadResult:
    """Ask every query of the set once, a few at a time (fills the caches before measuring)."""
    argv = [
        find_dnsperf(),
        "-s", "127.0.0.1",
        "-p", str(port),
        "-d", str(queries.path),
        "-n", "1",
        "-c", "1",
        "-q", "20",
        "-t", "2",
    ]  # fmt: skip
    _run(argv, output, cores, 120)
    return parse_output(output)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str], output: Path, cores: str | None, limit: float) -> None:
    child = Child("dnsperf", argv, output, cores=cores).start()
    try:
        assert child.proc is not None
        try:
            code = child.proc.wait(limit)
        except subprocess.TimeoutExpired:
            raise ChildError(f"dnsperf ran over {limit:g}s\n{child.log_tail()}") from None
        if code != 0:
            raise ChildError(f"dnsperf exited with status {code}\n{child.log_tail()}")
    finally:
        child.stop()


def parse_output(path: Path) -> LoadResult:
    """dnsperf's summary, plus p99 from the per-response lines when it ran with -v."""
    histogram: Counter[int] = Counter()  # latency in microseconds -> responses
    summary: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.startswith("> "):
                latency = line.rpartition(" ")[2]
                if latency[:1].isdigit():  # timeouts ("> T ...") carry no latency
                    histogram[round(float(latency) * 1e6)] += 1
            else:
                summary.append(line)
    text = "".join(summary)
    values: dict[str, str] = {}
    for key, pattern in _SUMMARY.items():
        match = pattern.search(text)
        if match is None:
            raise ChildError(f"dnsperf printed no {key!r}:\n{text[-3000:]}")
        values[key] = match.group(1)
    rcodes_match = _RCODES.search(text)
    rcodes = (
        {code: int(count) for code, count in _RCODE_ITEM.findall(rcodes_match.group(1))}
        if rcodes_match
        else {}
    )
    return LoadResult(
        sent=int(values["sent"]),
        completed=int(values["completed"]),
        lost=int(values["lost"]),
        runtime=float(values["runtime"]),
        qps=float(values["qps"]),
        mean_ms=float(values["mean"]) * 1000,
        p99_ms=percentile(histogram, 0.99) / 1000 if histogram else None,
        rcodes=rcodes,
    )


def percentile(histogram: Counter[int], fraction: float) -> float:
    """The smallest value at or below which `fraction` of the samples lie (nearest rank)."""
    total = sum(histogram.values())
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    raise ValueError("empty histogram")
