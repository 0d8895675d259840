"""`dnsfilter lists export|lint|diff|stats` and `dnsfilter explain`, registered by register().

Exit status: 0 done (lint: clean), 1 lint findings, 2 a usage error or a bad config, list
or revision. Each command imports its module only when it runs, so `dnsfilter serve` pays
for none of them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from dnsfilter.config import load_config
from dnsfilter.errors import ConfigError, ListError
from dnsfilter.operate.loading import load_configured

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_INVALID = 2

_EXPORT_FORMATS = ("rpz", "hosts", "dnsmasq", "unbound", "nftables")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("lists", help="blocklist maintenance: export, lint, diff, stats")
    actions = group.add_subparsers(required=True, metavar="ACTION")

    export = actions.add_parser(
        "export", help="write the configured lists for another DNS server or nftables"
    )
    export.add_argument("--format", required=True, choices=_EXPORT_FORMATS)
    export.add_argument("--config", type=Path, help="YAML config (default: the embedded one)")
    export.add_argument(
        "--policy",
        metavar="NAME",
        help="take the lists and blocking mode of this policy (default: all lists; the mode "
        "the policies agree on)",
    )
    export.add_argument(
        "--output", type=Path, metavar="FILE", help="write FILE (replaced atomically)"
    )
    export.add_argument("lists", nargs="*", metavar="LIST", help="configured list names")
    export.set_defaults(command=cmd_export)

    lint = actions.add_parser("lint", help="check list files for mistakes (exit 1 on findings)")
    lint.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="list files or directories (default: ./blocklists/*.yaml, else the config's lists)",
    )
    lint.add_argument("--config", type=Path, help="YAML config whose lists to lint")
    lint.add_argument("--format", choices=("text", "github"), default="text")
    lint.add_argument(
        "--public-suffix-list",
        type=Path,
        metavar="FILE",
        help="Public Suffix List file (default: /usr/share/publicsuffix/public_suffix_list.dat)",
    )
    lint.add_argument(
        "--quiet",
        action="append",
        default=[],
        metavar="KIND",
        help="neither show nor count findings of this kind (repeatable): loader, duplicate, "
        "covered, public-suffix, wide, known-wide, exception, punycode, evidence, field, network",
    )
    lint.add_argument(
        "--max-per-kind",
        type=_non_negative,
        default=20,
        metavar="N",
        help="show N findings of each kind per file, then how many more (default 20; 0: all)",
    )
    lint.set_defaults(command=cmd_lint)

    diff = actions.add_parser("diff", help="names, exceptions and networks added or removed")
    diff.add_argument(
        "--git",
        action="store_true",
        help="OLD and NEW are git revisions; PATHs (default: blocklists/*.yaml) are compared",
    )
    diff.add_argument("old", metavar="OLD", help="a list file, or REV:path")
    diff.add_argument("new", metavar="NEW", help="a list file, or REV:path")
    diff.add_argument("paths", nargs="*", metavar="PATH", help="with --git: paths in the repo")
    diff.add_argument("--format", choices=("text", "json"), default="text")
    diff.set_defaults(command=cmd_diff)

    stats = actions.add_parser("stats", help="entries, load time and memory per list")
    stats.add_argument("--config", type=Path, help="YAML config (default: the embedded one)")
    stats.add_argument("--format", choices=("text", "json"), default="text")
    stats.set_defaults(command=cmd_stats)

    explain = commands.add_parser(
        "explain", help="why a name is blocked or allowed for a client, and the answer it gets"
    )
    explain.add_argument("name", metavar="NAME", help="the query name")
    explain.add_argument(
        "--client", default="127.0.0.1", metavar="IP", help="client address (default 127.0.0.1)"
    )
    explain.add_argument("--qtype", default="A", metavar="T", help="query type (default A)")
    explain.add_argument("--config", type=Path, help="YAML config (default: the embedded one)")
    explain.add_argument("--format", choices=("text", "json"), default="text")
    explain.set_defaults(command=cmd_explain)


def _report(problems: Sequence[str]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def write_atomically(path: Path, text: str) -> None:
    """Replace path in one rename: a server reloading the file never reads half of it."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        if path.exists():
            os.chmod(temp, path.stat().st_mode & 0o7777)
        else:
            # mkstemp creates 0600; the servers that read an export usually run as
            # their own user, so give it what a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def cmd_export(args: argparse.Namespace) -> int:
    from dnsfilter.lists.export import ExportFormat, export_from_config, render

    try:
        config, lists = load_configured(args.config)
        export = export_from_config(config, lists, args.policy, args.lists)
    except (ConfigError, ListError) as exc:
        _report(exc.problems)
        return EXIT_INVALID
    text = render(ExportFormat(args.format), export)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        write_atomically(args.output, text)
    except OSError as exc:
        print(f"{args.output}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def cmd_lint(args: argparse.Namespace) -> int:
    from dnsfilter.lists.lint import lint_command

    return lint_command(
        args.paths,
        args.config,
        args.format,
        args.public_suffix_list,
        quiet=args.quiet,
        max_per_kind=args.max_per_kind,
    )


def cmd_diff(args: argparse.Namespace) -> int:
    from dnsfilter.lists.diff import diff_command

    return diff_command(args.old, args.new, args.paths, git=args.git, fmt=args.format)


def cmd_stats(args: argparse.Namespace) -> int:
    from dnsfilter.lists.stats import measure, render_json, render_text

    try:
        config = load_config(args.config)
        base = args.config.resolve().parent if args.config else Path.cwd()
        report = measure(config, base)
    except (ConfigError, ListError) as exc:
        _report(exc.problems)
        return EXIT_INVALID
    sys.stdout.write(render_json(report) if args.format == "json" else render_text(report))
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from dnsfilter.observe.explain import ExplainError, explain, render_json, render_text

    try:
        config, lists = load_configured(args.config)
        explanation = explain(config, lists, args.name, args.client, args.qtype)
    except (ConfigError, ListError) as exc:
        _report(exc.problems)
        return EXIT_INVALID
    except ExplainError as exc:
        print(f"dnsfilter explain: {exc}", file=sys.stderr)
        return EXIT_INVALID
    text = render_json(explanation) if args.format == "json" else render_text(explanation)
    sys.stdout.write(text)
    return EXIT_OK


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (got {value})")
    return value
