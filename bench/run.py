"""Benchmark dnsfilter against unbound, dnsmasq and two bare echo ceilings, one core each.

    .venv/bin/python bench/run.py                 # 1M-entry list, 20 s per query set
    .venv/bin/python bench/run.py --smoke         # seconds; proves the harness works (CI)

Generates a seeded workload into a temp dir (bench/workload.py), starts nsd on loopback as the
upstream, then runs each server in turn on 127.0.0.1 with the same lists, the server pinned to
one core and dnsperf (and nsd) to another. dnsfilter runs twice: as installed (the compiled
datapath when it is built) and with DNSFILTER_PURE=1 (dnsfilter-pure); the ceilings are a uvloop
echo (ceiling) and a compiled recvmmsg/sendmmsg echo (ceiling-mmsg, the kernel's floor).
Prints a markdown table and writes it to --out.
Exit status: 0 when every server ran every set, 1 when one failed (the table says which),
2 on bad arguments or missing tools.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py`: make the bench package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import servers
from bench.dnsperf import LoadSettings, dnsperf_version, find_dnsperf, run_load, warm
from bench.process import (
    Child,
    ChildError,
    ask,
    first_address,
    free_port,
    idle_seconds,
    parse_cores,
    wait_first_answer,
)
from bench.report import ServerRun, render
from bench.upstream import NsdUpstream, find_nsd
from bench.workload import SET_NAMES, WILDCARD_A, ZONE, ZONE_TEXT, Workload, generate

SERVERS = (
    "dnsfilter",
    "dnsfilter-noaudit",
    "dnsfilter-pure",
    "unbound",
    "dnsmasq",
    "ceiling",
    "ceiling-mmsg",
)
#: The rows that run dnsfilter (and take --workers).
DNSFILTER_ROWS = ("dnsfilter", "dnsfilter-noaudit", "dnsfilter-pure")
#: Unique names in the miss file per second of --duration: more than any server here forwards.
MISS_NAMES_PER_SECOND = 150_000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark dnsfilter against unbound, dnsmasq and two echo ceilings.",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds in all: 10k entries, 1 s per set (proves the harness; no thresholds)",
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated, run in this order (default {','.join(SERVERS)})",
    )
    parser.add_argument("--entries", type=int, help="generated list size (default 1000000)")
    parser.add_argument("--duration", type=float, help="seconds per query set (default 20)")
    parser.add_argument("--clients", type=int, default=10, help="dnsperf -c (default 10)")
    parser.add_argument(
        "--outstanding", type=int, default=100, help="dnsperf -q, queries in flight (default 100)"
    )
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="dnsperf -t, seconds until lost (default 2)"
    )
    parser.add_argument("--seed", type=int, default=5, help="workload RNG seed (default 5)")
    parser.add_argument(
        "--workers",
        default="1",
        help="server.workers values for the dnsfilter rows, e.g. 1,2 (when the build has workers)",
    )
    parser.add_argument(
        "--no-audit",
        action="store_true",
        help="switch dnsfilter's audit log off (default: on, SQLite in the temp dir)",
    )
    parser.add_argument(
        "--no-latencies",
        action="store_true",
        help="run dnsperf without -v (no p99 column; dnsperf spends less CPU)",
    )
    parser.add_argument(
        "--no-exporter",
        action="store_true",
        help="write the peer lists with bench/servers.py even if `dnsfilter lists export` exists",
    )
    parser.add_argument("--server-cores", default="0", help="taskset -c for servers (default 0)")
    parser.add_argument(
        "--client-cores", default="1", help="taskset -c for dnsperf and nsd (default 1)"
    )
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in names if name not in SERVERS]
    if unknown or not names:
        parser.error(f"--servers: unknown {', '.join(unknown)} (known: {', '.join(SERVERS)})")
    try:
        workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers: expected numbers like 1,2 (got {args.workers!r})")
    entries = args.entries or (10_000 if args.smoke else 1_000_000)
    duration = args.duration or (1.0 if args.smoke else 20.0)
    settings = LoadSettings(
        duration=duration,
        clients=args.clients,
        outstanding=args.outstanding,
        timeout=args.timeout,
        cores=args.client_cores,
        latencies=not args.no_latencies,
    )
    try:
        find_dnsperf()
        find_nsd()
    except RuntimeError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2

    # SIGTERM unwinds like Ctrl-C, through the finally blocks that stop every server.
    signal.signal(signal.SIGTERM, _interrupt)
    load_before = os.getloadavg()[0]
    temp = Path(tempfile.mkdtemp(prefix="dnsfilter-bench-"))
    runs: list[ServerRun] = []
    facts: list[str] = []
    try:
        log(f"workload: {entries:,} entries, seed {args.seed}, in {temp}")
        workload = generate(
            temp / "workload",
            entries=entries,
            blocked_lines=min(200_000, max(10_000, entries // 5)),
            miss_lines=int(MISS_NAMES_PER_SECOND * duration),
            seed=args.seed,
        )
        features = servers.probe_features(temp / "probe")
        if args.no_exporter:
            features = dataclasses.replace(features, exporter=False)
        log(f"dnsfilter features: {features.describe()}")
        if not features.workers and workers != [1]:
            log("this dnsfilter has no server.workers: running workers=1 only")
            workers = [1]
        upstream = NsdUpstream(temp / "nsd", ZONE, ZONE_TEXT, args.client_cores)
        try:
            upstream.start()
            # The config every dnsfilter row uses; the exporter reads it for the peers.
            base_config = servers.write_dnsfilter_config(
                temp / "dnsfilter", workload, features, upstream.address, free_port()
            )
            for name in names:
                for count in workers if name in DNSFILTER_ROWS else [1]:
                    runs.append(
                        _run_server(
                            name, count, temp, workload, features, upstream, base_config,
                            settings, args,
                        )
                    )  # fmt: skip
        finally:
            upstream.stop()
        facts = _facts(workload, settings, features, args, runs, upstream.binary)
        facts.append(
            f"1-minute load average: {load_before:.2f} before the run, "
            f"{os.getloadavg()[0]:.2f} after it ({os.cpu_count()} cores)"
        )
    except KeyboardInterrupt:
        log("interrupted")
        return 1
    except (ChildError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        if args.keep:
            log(f"kept {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)

    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    title = f"dnsfilter benchmark, {stamp}{' (smoke run)' if args.smoke else ''}"
    table = render(runs, title=title, facts=facts, smoke=args.smoke, entries=entries)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table, encoding="utf-8")
    failed = [run for run in runs if run.error]
    for run in failed:
        print(f"bench: {run.name} failed: {run.error}", file=sys.stderr)
    return 1 if failed else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run_server(
    name: str,
    workers: int,
    temp: Path,
    workload: Workload,
    features: servers.Features,
    upstream: NsdUpstream,
    base_config: Path,
    settings: LoadSettings,
    args: argparse.Namespace,
) -> ServerRun:
    label = name if workers == 1 else f"{name} (workers={workers})"
    run = ServerRun(label)
    directory = temp / label.replace(" ", "").replace("(", "-").replace(")", "")
    port = free_port()
    try:
        log(f"{label}: preparing")
        if name in DNSFILTER_ROWS:
            prepared = servers.prepare_dnsfilter(
                directory, workload, features, upstream.address, port,
                workers=workers, audit=not args.no_audit and name != "dnsfilter-noaudit",
                pure=name == "dnsfilter-pure", name=name,
            )  # fmt: skip
        elif name == "unbound":
            prepared = servers.prepare_unbound(
                directory, base_config, features, upstream.address, port
            )
        elif name == "dnsmasq":
            prepared = servers.prepare_dnsmasq(
                directory, base_config, features, upstream.address, port
            )
        elif name == "ceiling-mmsg":
            prepared = servers.prepare_ceiling_mmsg(directory, port)
        else:
            prepared = servers.prepare_ceiling(directory, port)
        run.version, run.notes = prepared.version, prepared.notes
        cores = args.server_cores if workers == 1 else _cores_for(workers, args.server_cores)
        child = Child(
            label, prepared.argv, directory / "server.log",
            cores=cores, cwd=directory, env=prepared.env,
        )  # fmt: skip
        log(f"{label}: starting on 127.0.0.1:{port}, cores {cores}")
        child.start()
        try:
            _measure(run, child, port, workload, settings, prepared, directory, parse_cores(cores))
        finally:
            code = child.stop()
            if name in DNSFILTER_ROWS:
                problem = _record_datapath(run, child, prepared, pure=name == "dnsfilter-pure")
                if run.error is None:
                    run.error = problem or _dnsfilter_log_problem(child, port, code)
    except (ChildError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        run.error = str(exc)
    if run.error:
        log(f"{label}: FAILED: {run.error}")
        run.error = run.error.splitlines()[0][:300]
    return run


def _measure(
    run: ServerRun,
    child: Child,
    port: int,
    workload: Workload,
    settings: LoadSettings,
    prepared: servers.Prepared,
    directory: Path,
    server_cores: set[int],
) -> None:
    start_timeout = 60 + workload.entries / 2000  # YAML-only builds parse ~10k entries a second
    run.first_answer_s = wait_first_answer(child, port, workload.blocked_probe, start_timeout)
    log(f"{run.name}: first answer after {run.first_answer_s:.2f}s")
    if prepared.check_answers:
        _check_answers(run.name, port, workload)
    run.rss_start_kib = child.rss_kib()
    for set_name in SET_NAMES:
        queries = workload.sets[set_name]
        if set_name == "cached":
            warmed = warm(port, queries, directory / "warm.out", settings.cores)
            if warmed.completed < queries.lines:
                raise ChildError(
                    f"warming the cache: {warmed.completed} of {queries.lines} answered"
                )
        child.check_running()
        cpu_before, idle_before = child.cpu_seconds(), idle_seconds(server_cores)
        started = time.monotonic()
        result = run_load(port, queries, settings, directory / f"dnsperf-{set_name}.out")
        wall = (time.monotonic() - started) * len(server_cores)
        idle = idle_seconds(server_cores) - idle_before
        child.check_running()
        result = dataclasses.replace(
            result,
            server_cpu=(child.cpu_seconds() - cpu_before) / max(result.runtime, 1e-3),
            core_busy=max(0.0, 1 - idle / wall),
            rss_kib=child.rss_kib(),
        )
        run.loads[set_name] = result
        log(
            f"{run.name}: {set_name}: {result.qps:,.0f} qps, mean {result.mean_ms:.3f} ms, "
            f"p99 {result.p99_ms if result.p99_ms is not None else '-'} ms, lost {result.lost}, "
            f"cpu: server {result.server_cpu or 0:.0%}, its cores {result.core_busy or 0:.0%}, "
            f"dnsperf {result.client_cpu or 0:.0%}; RSS {(result.rss_kib or 0) / 1024:.0f} MiB"
        )
        if result.completed == 0:
            raise ChildError(f"{set_name}: no query answered")
    run.rss_after_kib = child.rss_kib()


def _check_answers(name: str, port: int, workload: Workload) -> None:
    """One blocked and one allowed name answer as they must: the configs are what we think."""
    expected = ((workload.blocked_probe, "0.0.0.0"), (workload.allowed_probe, WILDCARD_A))
    for qname, address in expected:
        reply = ask(port, qname, "A", timeout=3.0)
        got = first_address(reply) if reply is not None else None
        if got != address:
            raise ChildError(f"{name} answered {qname} A with {got}, expected {address}")


def _record_datapath(
    run: ServerRun, child: Child, prepared: servers.Prepared, *, pure: bool
) -> str | None:
    """Put the datapath a dnsfilter row ran at the head of its notes: from its start-up log,
    else from `dnsfilter --version`. Returns a problem when a pure row did not run pure."""
    log_text = child.log_path.read_text(errors="replace") if child.log_path.exists() else ""
    logged = servers.logged_datapath(log_text)
    if logged is not None:
        datapath, note = logged, f"datapath: {logged}"
    elif prepared.datapath is not None:
        datapath, note = prepared.datapath, f"datapath (from --version): {prepared.datapath}"
    else:
        datapath, note = None, f"datapath: {servers.DATAPATH_UNKNOWN}"
    run.datapath = datapath
    run.notes = [note, *run.notes]
    if pure and datapath is not None and not datapath.lower().startswith("pure"):
        return f"{servers.PURE_ENV}=1 was set, yet the datapath was {datapath}"
    return None


def _dnsfilter_log_problem(child: Child, port: int, code: int | None) -> str | None:
    log_text = child.log_path.read_text(errors="replace") if child.log_path.exists() else ""
    if f"listening on 127.0.0.1:{port} (udp, tcp)" not in log_text:
        return f"dnsfilter never logged 'listening on 127.0.0.1:{port} (udp, tcp)'"
    if "Traceback" in log_text:
        return "dnsfilter logged a traceback:\n" + log_text[log_text.index("Traceback") :][:3000]
    if code != 0:
        return f"dnsfilter exited with status {code} on SIGTERM"
    return None


def _cores_for(workers: int, server_cores: str) -> str:
    """Cores for N workers: as many as there are, starting at the server cores."""
    count = os.cpu_count() or 1
    first = int(server_cores.split(",")[0].split("-")[0])
    return ",".join(str((first + i) % count) for i in range(min(workers, count)))


def _facts(
    workload: Workload,
    settings: LoadSettings,
    features: servers.Features,
    args: argparse.Namespace,
    runs: Sequence[ServerRun],
    nsd_binary: str,
) -> list[str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = [dnsperf_version(), _nsd_version(nsd_binary)]
    versions += [f"{run.name}: {run.version}" for run in runs if run.version]
    lines_p = "-v (p99 from per-response latencies)" if settings.latencies else "no -v (no p99)"
    return [
        f"machine: {os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        "versions: " + "; ".join(versions),
        f"workload: {workload.entries:,} generated entries + the shipped lists in blocklists/, "
        f"seed {workload.seed}; {settings.duration:g} s per set; blocked "
        f"{_lines(workload, 'blocked')} names looped, cached {_lines(workload, 'cached')} "
        f"names warmed first, miss {_lines(workload, 'miss')} unique names read once",
        f"load: dnsperf -c {settings.clients} -q {settings.outstanding} -t {settings.timeout:g} "
        f"{lines_p} on cores {settings.cores}; servers on cores {args.server_cores}; nsd "
        f"(upstream, RRL off) on cores {settings.cores}",
        f"dnsfilter build features: {features.describe()}",
    ]


def _lines(workload: Workload, set_name: str) -> str:
    return f"{workload.sets[set_name].lines:,}"


def _nsd_version(binary: str) -> str:
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    first = (result.stdout + result.stderr).strip().splitlines()
    return first[0].replace("NSD version", "nsd") if first else "nsd"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] bench: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
