"""The servers under test: one config each, from the same lists, and the command that runs it.

- **dnsfilter**: ``dnsfilter serve --config`` with the generated list (plain format when the
  installed dnsfilter reads it, else YAML) and every shipped list in ``blocklists/``; mode null,
  upstream nsd, metrics on port 0, health checks off, the audit log (when the build has one) in
  the temp dir; everything else (cache size, list reloading, answer inspection) at its default.
- **unbound** and **dnsmasq**: the same lists through ``dnsfilter lists export`` (from the
  dnsfilter config above, so every peer blocks exactly what dnsfilter blocks), or through the
  writer below when the installed dnsfilter has no exporter.
- **dnsfilter-pure**: the same config with ``DNSFILTER_PURE=1`` in the server's environment,
  so a run shows the compiled datapath (the **dnsfilter** row, when the build has it) beside
  the pure-Python one. Each row's notes say which datapath it ran, from its start-up log line
  ``datapath: ...`` or else from ``dnsfilter --version``.
- **dnsfilter-noaudit**: the **dnsfilter** row with the audit log off: every blocked query
  of the other rows is also a row in SQLite (the audit writer's thread is the server's CPU
  too), which unbound and dnsmasq do not write; this row shows the datapath without it.
- **ceiling**: bench/echo.py, on uvloop: the most a Python server on uvloop can answer.
- **ceiling-mmsg**: bench/echo_mmsg.py, a compiled recvmmsg/sendmmsg echo
  (bench/_echo_mmsg.pyx, built with Cython into the run's temp dir): the kernel's floor.

Every server listens on 127.0.0.1 only, on a port chosen here, so the start-to-first-answer
probe can knock before the server has logged anything.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.workload import ZONE, Workload, write_yaml_list

REPO = Path(__file__).resolve().parents[1]
SHIPPED_LISTS = REPO / "blocklists"
#: Which implementation wrote the peers' list files.
EXPORTER = "dnsfilter lists export"
BENCH_WRITER = "bench/servers.py writer"
#: Peer cache sizes: dnsmasq's is the one issue 5 names; unbound's caches are sized so the miss
#: set never evicts what the cached set warmed.
DNSMASQ_CACHE_SIZE = 10000
UNBOUND_MSG_CACHE = "128m"
UNBOUND_RRSET_CACHE = "256m"


@dataclass(frozen=True, slots=True)
class Features:
    """What the installed dnsfilter supports; the benchmark adapts to a build in progress."""

    plain_lists: bool  #: lists: {NAME: {file, format: plain}}
    audit: bool  #: an audit: section (then the audit log goes to the temp dir)
    workers: bool  #: server.workers
    exporter: bool  #: `dnsfilter lists export`

    def describe(self) -> str:
        names = [name for name in self.__slots__ if getattr(self, name)]
        return ", ".join(names) or "none"


@dataclass(slots=True)
class Prepared:
    """A server ready to start: its command, and what the report says about it."""

    name: str  #: the row label
    argv: list[str]
    directory: Path
    version: str
    notes: list[str] = field(default_factory=list)
    check_answers: bool = True  #: the ceilings answer nothing correctly; every other server must
    env: dict[str, str] | None = None  #: the server's environment (None: the benchmark's own)
    datapath: str | None = None  #: what `dnsfilter --version` says the datapath is


def dnsfilter_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dnsfilter", *args]


def _check_config(directory: Path, config: dict[str, Any], files: dict[str, str]) -> bool:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    path = directory / "probe.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        dnsfilter_cmd("check-config", str(path)), capture_output=True, timeout=60, check=False
    )
    return result.returncode == 0


def probe_features(directory: Path) -> Features:
    """Ask the installed dnsfilter, with small configs through check-config."""
    base: dict[str, Any] = {
        "networks": {"loopback": ["127.0.0.0/8"]},
        "lists": {"probe": {"file": "probe.txt", "format": "plain"}},
        "policies": {"default": {"networks": ["loopback"], "lists": ["probe"]}},
    }
    files = {"probe.txt": "probe.example\n"}
    extras: dict[str, dict[str, Any]] = {
        "audit": {"audit": {"enabled": True, "sqlite_path": str(directory / "audit.sqlite3")}},
        "workers": {"server": {"workers": 1}},
    }
    exporter = (
        subprocess.run(
            dnsfilter_cmd("lists", "export", "--help"), capture_output=True, timeout=60, check=False
        ).returncode
        == 0
    )
    everything = {**base}
    for extra in extras.values():
        everything.update(extra)
    if _check_config(directory, everything, files):
        return Features(plain_lists=True, audit=True, workers=True, exporter=exporter)
    no_lists: dict[str, Any] = {
        "networks": base["networks"],
        "policies": {"default": {"networks": ["loopback"], "lists": []}},
    }
    found = {
        key: _check_config(directory, {**no_lists, **extra}, {}) for key, extra in extras.items()
    }
    return Features(
        plain_lists=_check_config(directory, base, files),
        audit=found["audit"],
        workers=found["workers"],
        exporter=exporter,
    )


# ---------------------------------------------------------------------------------------
# dnsfilter


def write_dnsfilter_config(
    directory: Path,
    workload: Workload,
    features: Features,
    upstream: str,
    port: int,
    *,
    workers: int = 1,
    audit: bool = True,
) -> Path:
    """The config every dnsfilter row runs with, and the one the exporter reads."""
    directory.mkdir(parents=True, exist_ok=True)
    if features.plain_lists:
        generated: dict[str, Any] = {"file": str(workload.generated_list), "format": "plain"}
    else:
        yaml_list = workload.directory / "generated.yaml"
        if not yaml_list.exists():
            write_yaml_list(workload.generated_list, yaml_list)
        generated = {"file": str(yaml_list)}
    lists: dict[str, Any] = {"generated": generated}
    for path in sorted(SHIPPED_LISTS.glob("*.yaml")):
        lists[path.stem] = {"file": str(path)}
    server: dict[str, Any] = {"listen": [f"127.0.0.1:{port}"]}
    if features.workers:
        server["workers"] = workers
    config: dict[str, Any] = {
        "server": server,
        "upstream": {"servers": [upstream], "health_check_interval": 0},
        "networks": {"loopback": ["127.0.0.0/8", "::1/128"]},
        "lists": lists,
        "policies": {
            "default": {"networks": ["loopback"], "lists": list(lists), "mode": "null", "ttl": 60}
        },
        "cache": {"enabled": True, "max_entries": 100000},
        "metrics": {"enabled": True, "listen": "127.0.0.1:0"},
        "log_level": "info",
    }
    if features.audit:
        config["audit"] = (
            {"enabled": True, "sqlite_path": str(directory / "audit.sqlite3")}
            if audit
            else {"enabled": False}
        )
    path = directory / "dnsfilter.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


#: The environment variable that makes dnsfilter run its pure-Python datapath.
PURE_ENV = "DNSFILTER_PURE"
#: What a dnsfilter row's notes say when neither its log nor --version names the datapath.
DATAPATH_UNKNOWN = "not reported (a build before the compiled datapath: pure Python)"
#: `dnsfilter --version`: "datapath: X" on a line of its own, or ", datapath X" after the version.
_VERSION_DATAPATH = re.compile(r"(?:^|, )datapath:?\s+(.+?)\s*$", re.MULTILINE)
#: The start-up log line: "... dnsfilter.operate.app: datapath: X".
_LOGGED_DATAPATH = re.compile(r": datapath: (.+?)\s*$", re.MULTILINE)


def prepare_dnsfilter(
    directory: Path,
    workload: Workload,
    features: Features,
    upstream: str,
    port: int,
    *,
    workers: int = 1,
    audit: bool = True,
    pure: bool = False,
    name: str | None = None,
) -> Prepared:
    """A dnsfilter row; pure sets DNSFILTER_PURE=1 for it, else the variable is removed, so
    the row runs what the installed package runs by default (compiled when built). name:
    the row's, when not dnsfilter or dnsfilter-pure (dnsfilter-noaudit)."""
    config = write_dnsfilter_config(
        directory, workload, features, upstream, port, workers=workers, audit=audit
    )
    base = name or ("dnsfilter-pure" if pure else "dnsfilter")
    name = base if workers == 1 else f"{base} (workers={workers})"
    notes = ["list format: " + ("plain" if features.plain_lists else "YAML (no plain format yet)")]
    if features.audit:
        notes.append("audit log: " + ("SQLite in the temp dir" if audit else "off"))
    env = dnsfilter_env(pure)
    version, datapath = dnsfilter_version(pure)
    return Prepared(
        name,
        dnsfilter_cmd("serve", "--config", str(config)),
        directory,
        version,
        notes,
        env=env,
        datapath=datapath,
    )


def dnsfilter_env(pure: bool) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != PURE_ENV}
    if pure:
        env[PURE_ENV] = "1"
    return env


@functools.cache
def dnsfilter_version(pure: bool = False) -> tuple[str, str | None]:
    """`dnsfilter --version` (with the git commit), and the datapath it names, if it does."""
    result = subprocess.run(
        dnsfilter_cmd("--version"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dnsfilter_env(pure),
    )
    version, datapath = split_version(result.stdout)
    head = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.strip()
    return (f"{version} (git {head})" if head else version), datapath


def split_version(text: str) -> tuple[str, str | None]:
    """`dnsfilter --version`'s output as (version, datapath or None when it names none).

    Either form is read: a second line ``datapath: compiled (...)``, or ``, datapath ...``
    after the version on the first.
    """
    text = text.strip()
    first = text.splitlines()[0] if text else ""
    version = _VERSION_DATAPATH.sub("", first).strip() or "dnsfilter ?"
    match = _VERSION_DATAPATH.search(text)
    return version, match.group(1) if match else None


def logged_datapath(log_text: str) -> str | None:
    """The datapath a dnsfilter server logged at start-up (``datapath: ...``), if it did."""
    match = _LOGGED_DATAPATH.search(log_text)
    return match.group(1) if match else None


# ---------------------------------------------------------------------------------------
# The peers' list files: the exporter, or the fallback writer


def export_lists(fmt: str, config: Path, destination: Path, features: Features) -> str:
    """Write the lists of config's default policy in fmt (unbound | dnsmasq); say who wrote them.

    This is the one place that switches between dnsfilter's exporter and the writer below.
    """
    if features.exporter:
        result = subprocess.run(
            dnsfilter_cmd(
                "lists",
                "export",
                "--format",
                fmt,
                "--config",
                str(config),
                "--policy",
                "default",
                "--output",
                str(destination),
            ),
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"dnsfilter lists export --format {fmt} failed:\n{result.stderr}")
        return EXPORTER
    _write_lists(fmt, config, destination)
    return BENCH_WRITER


def _write_lists(fmt: str, config: Path, destination: Path) -> None:
    """unbound local-zones or dnsmasq lines for every list of the config (mode null).

    The same answers as the exporter for what the benchmark asks: null for blocked names,
    nxdomain and nodata entries (dnsmasq has no nodata: NXDOMAIN), exceptions forwarded.
    Redundant entries (names below another entry) are kept; both servers take the most
    specific match, so the answers do not change.
    """
    from dnsfilter.config import load_config
    from dnsfilter.datapath.blocking import BlockMode
    from dnsfilter.lists.catalog import load_lists

    loaded = load_config(config)
    lists = load_lists(((item.name, item.file) for item in loaded.lists), config.parent)
    unbound_types = {
        BlockMode.NULL: "always_null",
        BlockMode.NXDOMAIN: "always_nxdomain",
        BlockMode.NODATA: "always_nodata",
        BlockMode.REFUSED: "always_refuse",
    }
    with destination.open("w", encoding="utf-8") as out:
        if fmt == "unbound":
            out.write("server:\n")
        for blocklist in lists:
            for entry in blocklist.domains:
                mode = entry.mode or BlockMode.NULL
                if fmt == "unbound":
                    out.write(f'\tlocal-zone: "{entry.domain}." {unbound_types[mode]}\n')
                elif mode is BlockMode.NULL:
                    out.write(f"address=/{entry.domain}/#\nlocal=/{entry.domain}/\n")
                else:
                    out.write(f"address=/{entry.domain}/\n")
            for entry in blocklist.exceptions:
                if fmt == "unbound":
                    out.write(f'\tlocal-zone: "{entry.domain}." transparent\n')
                else:
                    out.write(f"server=/{entry.domain}/#\n")


# ---------------------------------------------------------------------------------------
# unbound, dnsmasq, the ceilings


def prepare_unbound(
    directory: Path, dnsfilter_config: Path, features: Features, upstream: str, port: int
) -> Prepared:
    directory.mkdir(parents=True, exist_ok=True)
    lists = directory / "lists.conf"
    writer = export_lists("unbound", dnsfilter_config, lists, features)
    host, _, upstream_port = upstream.rpartition(":")
    conf = directory / "unbound.conf"
    conf.write_text(
        "\n".join(
            [
                "server:",
                "    interface: 127.0.0.1",
                f"    port: {port}",
                "    do-ip4: yes",
                "    do-ip6: no",
                "    do-udp: yes",
                "    do-tcp: yes",
                "    num-threads: 1",
                "    so-reuseport: no",
                '    chroot: ""',
                '    username: ""',
                f'    directory: "{directory}"',
                '    pidfile: ""',
                "    do-daemonize: no",
                "    use-syslog: no",
                '    logfile: ""',
                "    verbosity: 0",
                "    access-control: 127.0.0.0/8 allow",
                "    do-not-query-localhost: no",
                '    module-config: "iterator"',
                f"    msg-cache-size: {UNBOUND_MSG_CACHE}",
                f"    rrset-cache-size: {UNBOUND_RRSET_CACHE}",
                "    num-queries-per-thread: 4096",
                "    outgoing-range: 8192",
                "    qname-minimisation: no",
                # unbound answers the RFC 6761 names (test. among them) itself by default.
                f'    local-zone: "{ZONE.rpartition(".")[2]}." nodefault',
                f'include: "{lists}"',
                "",
                "remote-control:",
                "    control-enable: no",
                "",
                "forward-zone:",
                '    name: "."',
                f"    forward-addr: {host}@{upstream_port}",
                "",
            ]
        )
    )
    binary = _binary("unbound")
    check = subprocess.run(
        [_binary("unbound-checkconf"), str(conf)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check.returncode != 0:
        raise RuntimeError(f"unbound-checkconf rejected {conf}:\n{check.stdout}{check.stderr}")
    return Prepared(
        "unbound",
        [binary, "-d", "-p", "-c", str(conf)],
        directory,
        _version([binary, "-V"], r"Version (\S+)", "unbound"),
        [f"lists: {writer}", f"msg/rrset cache {UNBOUND_MSG_CACHE}/{UNBOUND_RRSET_CACHE}"],
    )


def prepare_dnsmasq(
    directory: Path, dnsfilter_config: Path, features: Features, upstream: str, port: int
) -> Prepared:
    directory.mkdir(parents=True, exist_ok=True)
    lists = directory / "lists.conf"
    writer = export_lists("dnsmasq", dnsfilter_config, lists, features)
    host, _, upstream_port = upstream.rpartition(":")
    binary = _binary("dnsmasq")
    argv = [
        binary,
        "--no-daemon",
        "--no-resolv",
        "--no-hosts",
        f"--server={host}#{upstream_port}",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        f"--cache-size={DNSMASQ_CACHE_SIZE}",
        f"--conf-file={lists}",
    ]
    return Prepared(
        "dnsmasq",
        argv,
        directory,
        _version([binary, "--version"], r"version (\S+)", "dnsmasq"),
        [f"lists: {writer}", f"cache-size {DNSMASQ_CACHE_SIZE}"],
    )


def prepare_ceiling(directory: Path, port: int) -> Prepared:
    directory.mkdir(parents=True, exist_ok=True)
    from importlib.metadata import version

    return Prepared(
        "ceiling",
        [sys.executable, str(Path(__file__).with_name("echo.py")), "--port", str(port)],
        directory,
        f"bench/echo.py on uvloop {version('uvloop')}",
        ["uvloop echo: answers every query by setting QR; no parsing, no policy"],
        check_answers=False,
    )


def prepare_ceiling_mmsg(directory: Path, port: int) -> Prepared:
    build = build_echo_mmsg(directory / "build")
    from importlib.metadata import version

    launcher = Path(__file__).with_name("echo_mmsg.py")
    return Prepared(
        "ceiling-mmsg",
        [sys.executable, str(launcher), "--build-dir", str(build), "--port", str(port)],
        directory,
        f"bench/_echo_mmsg.pyx, Cython {version('Cython')}",
        [
            "compiled echo: recvmmsg/sendmmsg batches of up to 64, sets QR; no parsing; "
            "the kernel's floor"
        ],
        check_answers=False,
    )


def build_echo_mmsg(build: Path) -> Path:
    """Compile bench/_echo_mmsg.pyx into build with cythonize; return build (the import path).

    Built for every run, with the interpreter that runs the benchmark, and never installed.
    """
    if importlib.util.find_spec("Cython") is None:
        raise RuntimeError("ceiling-mmsg needs Cython: .venv/bin/pip install cython")
    source = Path(__file__).with_name("_echo_mmsg.pyx")
    build.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, build / source.name)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "Cython.Build.Cythonize", "-i", "-3", "-q", source.name],
            cwd=build,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"building {source.name} took over {exc.timeout:g} s") from exc
    built = list(build.glob(f"{source.stem}.*.so"))
    if result.returncode != 0 or not built:
        output = (result.stdout + result.stderr).strip()
        raise RuntimeError(f"building {source.name} failed:\n{output[-3000:]}")
    return build


def _binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/local/sbin/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError(f"{name} is not installed: apt-get install {name.split('-')[0]}")


def _version(argv: list[str], pattern: str, name: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    match = re.search(pattern, result.stdout + result.stderr)
    return f"{name} {match.group(1)}" if match else name
