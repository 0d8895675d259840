"""`dnsfilter report`: per banned app, the devices that tried to reach it (from the audit store).

It answers "which devices still have WeChat installed": one row per (list, network, client)
with its blocked attempts, first and last seen and the names it asked for most. Clients are
shown as stored, so a pseudonymized store yields pseudonyms.

With --kind, the bypass events of `dnsfilter monitor` (same store) are shown beside them:
one row per (list, network, client, kind), a device's rows together, and a kind column.
Without --kind the output is the blocked attempts only, in the columns it always had.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import re
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from dnsfilter.config import load_config
from dnsfilter.egress.detect import EventKind
from dnsfilter.errors import ConfigError
from dnsfilter.observe.querylog import DeviceAttempts, NotAnAuditStore, device_attempts, format_time
from dnsfilter.observe.querylog import open_store as open_audit_store

if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_OK = 0
EXIT_INVALID = 2

FORMATS = ("table", "csv", "json")
COLUMNS = ("list", "network", "client", "count", "first_seen", "last_seen", "top_names")
#: The columns with --kind.
KIND_COLUMNS = (
    "list",
    "network",
    "client",
    "kind",
    "count",
    "first_seen",
    "last_seen",
    "top_names",
)
BLOCKED = "blocked"
#: The bypass event kinds, as the monitor records them.
BYPASS_KINDS = tuple(kind.value for kind in EventKind)
#: --kind values: blocked, a bypass kind, or a group of them.
KIND_GROUPS = {"all": (BLOCKED, *BYPASS_KINDS), "bypass": BYPASS_KINDS}
KINDS = (*KIND_GROUPS, BLOCKED, *BYPASS_KINDS)
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def register(commands: Subcommands) -> None:
    report = commands.add_parser(
        "report", help="per banned app, the devices that tried to reach it (audit log)"
    )
    report.add_argument("--config", type=Path, help="YAML config whose audit.sqlite_path to read")
    report.add_argument(
        "--db", type=Path, metavar="PATH", help="the audit database (overrides the config's)"
    )
    report.add_argument(
        "--since",
        metavar="WHEN",
        help="only attempts since then: a duration back from now (30m, 24h, 7d, 2w) or an "
        "ISO date or time, UTC unless it says otherwise (2024-05-01, 2024-05-01T08:00)",
    )
    report.add_argument("--list", dest="list_name", metavar="L", help="only this list (app)")
    report.add_argument("--network", metavar="N", help="only clients in this network")
    report.add_argument(
        "--kind",
        action="append",
        choices=KINDS,
        metavar="KIND",
        help="show these kinds, with a kind column (repeatable): blocked (queries dnsfilter "
        "blocked), a bypass kind of `dnsfilter monitor` (" + ", ".join(BYPASS_KINDS) + "), "
        "bypass (all of those) or all (default: blocked, without the kind column)",
    )
    report.add_argument("--format", choices=FORMATS, default="table", help="default: table")
    report.set_defaults(command=cmd_report)


def parse_since(text: str, now: float) -> float:
    """Unix time from a duration back from now (7d) or an ISO date; raise ValueError."""
    match = _DURATION.fullmatch(text.strip())
    if match:
        return now - int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"expected a duration such as 30m, 24h or 7d, or an ISO date (got {text!r})"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def cmd_report(args: argparse.Namespace) -> int:
    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since, time.time())
        except ValueError as exc:
            return _fail(f"--since: {exc}")
    path: Path | None = args.db
    if path is None:
        try:
            audit = load_config(args.config).audit
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return EXIT_INVALID
        if audit.sqlite_path is None:
            return _fail("the config has no audit database (audit.sqlite_path is null); use --db")
        path = Path(audit.sqlite_path)
    try:
        db = open_audit_store(path)
    except FileNotFoundError:
        return _fail(
            f"no audit database at {path} (has `dnsfilter serve` run with this audit config?)"
        )
    except (NotAnAuditStore, sqlite3.Error) as exc:
        return _fail(str(exc))
    kinds = expand_kinds(args.kind or [BLOCKED])
    try:
        rows = device_attempts(db, kinds, since, args.list_name, args.network)
        hidden = 0
        if args.kind is None and args.format == "table":
            bypass = device_attempts(db, BYPASS_KINDS, since, args.list_name, args.network)
            hidden = sum(row.count for row in bypass)
    except sqlite3.Error as exc:
        return _fail(f"{path}: {exc}")
    finally:
        db.close()
    write_report(rows, args.format, sys.stdout, with_kind=args.kind is not None)
    if hidden:
        print(
            f"dnsfilter report: {hidden} bypass events of `dnsfilter monitor` are not shown; "
            "add --kind all to see them beside the blocked attempts",
            file=sys.stderr,
        )
    return EXIT_OK


def expand_kinds(chosen: Sequence[str]) -> tuple[str, ...]:
    """--kind values to kinds, groups expanded, in KIND_GROUPS["all"] order."""
    wanted = {kind for choice in chosen for kind in KIND_GROUPS.get(choice, (choice,))}
    return tuple(kind for kind in KIND_GROUPS["all"] if kind in wanted)


def _fail(message: str) -> int:
    print(f"dnsfilter report: {message}", file=sys.stderr)
    return EXIT_INVALID


def write_report(
    rows: Sequence[DeviceAttempts], style: str, out: TextIO, with_kind: bool = False
) -> None:
    if style == "json":
        json.dump([_as_json(row, with_kind) for row in rows], out, indent=2)
        out.write("\n")
    elif style == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(KIND_COLUMNS if with_kind else COLUMNS)
        writer.writerows(_cells(row, with_kind, csv_names=True) for row in rows)
    else:
        _table(rows, out, with_kind)


def _as_json(row: DeviceAttempts, with_kind: bool) -> dict[str, object]:
    document: dict[str, object] = {
        "list": row.list_name,
        "network": row.network,
        "client": row.client,
    }
    if with_kind:
        document["kind"] = row.kind
    document.update(
        count=row.count,
        first_seen=format_time(row.first_seen),
        last_seen=format_time(row.last_seen),
        top_names=[{"name": name, "count": count} for name, count in row.top_names],
    )
    return document


def _cells(row: DeviceAttempts, with_kind: bool, csv_names: bool = False) -> list[str]:
    # Domain names hold neither spaces nor colons, so name:count pairs split back cleanly;
    # an address:port target splits at its last colon.
    if csv_names:
        names = " ".join(f"{name}:{count}" for name, count in row.top_names)
    else:
        names = ", ".join(f"{name} ({count})" for name, count in row.top_names)
    # A query for an unlisted name to another resolver has no list: "-" for people.
    list_name = row.list_name if csv_names else row.list_name or "-"
    return [
        list_name,
        row.network,
        row.client,
        *([row.kind] if with_kind else []),
        str(row.count),
        format_time(row.first_seen),
        format_time(row.last_seen),
        names,
    ]


def _table(rows: Sequence[DeviceAttempts], out: TextIO, with_kind: bool) -> None:
    if not rows:
        out.write(
            "nothing of these kinds recorded\n" if with_kind else "no blocked attempts recorded\n"
        )
        return
    columns = KIND_COLUMNS if with_kind else COLUMNS
    header = [column.upper().replace("_", " ") for column in columns]
    lines = [header, *(_cells(row, with_kind) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        # The last column is left ragged: it is the long one.
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        out.write("  ".join([*padded, line[-1]]).rstrip() + "\n")
