"""The command line: one function per sub-command; main(argv) -> exit status."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dnsfilter import __version__
from dnsfilter.config import Config, default_config_text, with_overrides
from dnsfilter.datapath.fastpath import DATAPATH
from dnsfilter.datapath.server import ListenError
from dnsfilter.egress.cli import register as register_egress
from dnsfilter.errors import ConfigError, ListError, PrivilegeError
from dnsfilter.lists.commands import register as register_lists
from dnsfilter.lists.formats import FORMATS
from dnsfilter.lists.model import BlockList
from dnsfilter.observe.metrics import Metrics
from dnsfilter.observe.report import register as register_report
from dnsfilter.operate.app import Service, run_loop
from dnsfilter.operate.budget import raise_descriptor_limit
from dnsfilter.operate.loading import load_configured, release_memory
from dnsfilter.operate.workers import Supervisor, worker_count

log = logging.getLogger("dnsfilter")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    return command(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnsfilter", description="A protective DNS resolver for government networks."
    )
    parser.add_argument(
        "--version", action="version", version=f"dnsfilter {__version__}, datapath {DATAPATH}"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the resolver")
    serve.add_argument("--config", type=Path, help="YAML config (default: the embedded one)")
    serve.add_argument(
        "--listen",
        action="append",
        metavar="ADDR:PORT",
        help="listen on ADDR:PORT, UDP and TCP (repeatable; IPv6 as [::1]:5353)",
    )
    serve.add_argument(
        "--upstream",
        action="append",
        metavar="ADDR[:PORT]",
        help="forward to this resolver (repeatable; replaces upstream.servers)",
    )
    serve.add_argument(
        "--metrics-listen",
        metavar="ADDR:PORT",
        help="serve /metrics, /healthz and /readyz here (default 127.0.0.1:9153)",
    )
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="log verbosity (default: the config's log_level)",
    )
    serve.add_argument(
        "--user",
        help="started as root: switch to this user once bound (replaces server.user)",
    )
    serve.add_argument(
        "--group",
        help="...and to this group (default: the user's own; replaces server.group)",
    )
    _add_list_flag(serve)
    serve.set_defaults(command=cmd_serve)

    check = commands.add_parser("check-config", help="validate a config and its lists")
    check.add_argument("config", type=Path, nargs="?", help="YAML config (default: embedded)")
    _add_list_flag(check)
    check.set_defaults(command=cmd_check_config)

    show = commands.add_parser("show-default-config", help="print the embedded config")
    show.set_defaults(command=cmd_show_default_config)

    # Each feature keeps its own sub-commands beside its code and registers them here;
    # a register function imports its heavy modules lazily (scapy only for egress).
    for register in FEATURE_COMMANDS:
        register(commands)
    return parser


if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]
#: register(subcommands) functions of the feature modules, in help order.
FEATURE_COMMANDS: list[Callable[[Subcommands], None]] = [
    register_egress,
    register_report,
    register_lists,
]


def _add_list_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--list",
        action="append",
        metavar="[FORMAT:]FILE_OR_URL",
        help=f"add a list for every network (repeatable; FORMAT: {', '.join(FORMATS)}; "
        "detected when not given)",
    )


def _report(problems: Sequence[str]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config, lists = load_configured(
            args.config, lambda config: with_overrides(config, lists=args.list)
        )
    except (ConfigError, ListError) as exc:
        _report(exc.problems)
        return EXIT_INVALID
    _report([warning for b in lists for warning in b.warnings])
    entries = sum(len(b.domains) for b in lists)
    skipped = sum(b.skipped for b in lists)
    print(
        f"{config.source}: OK ({len(config.networks)} networks, {len(config.policies)} policies, "
        f"{len(lists)} lists with {entries} entries"
        + (f"; {skipped} unreadable lines skipped" if skipped else "")
        + ")"
    )
    return EXIT_OK


def cmd_show_default_config(args: argparse.Namespace) -> int:
    del args
    sys.stdout.write(default_config_text())
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    def overrides(config: Config) -> Config:
        return with_overrides(
            config,
            args.listen,
            args.upstream,
            args.log_level,
            args.metrics_listen,
            args.list,
            user=args.user,
            group=args.group,
        )

    def load() -> tuple[Config, list[BlockList]]:
        config, lists = load_configured(args.config, overrides)
        for blocklist in lists:
            for warning in blocklist.warnings:
                log.warning("list %s: %s", blocklist.name, warning)
        return config, lists

    # Set up before the lists load, which may log downloads and skipped lines.
    logging.basicConfig(
        level=(args.log_level or "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Before anything is opened: forked workers inherit the raised limit.
    raise_descriptor_limit()
    try:
        config, lists = load()
        logging.getLogger().setLevel(config.log_level.upper())
        workers = worker_count(config)
        service: Service | Supervisor
        if workers > 1:
            service = Supervisor(config, lists, workers, loader=load)
        else:
            service = Service(config, lists, Metrics(), loader=load)
    except (ConfigError, ListError) as exc:
        _report(exc.problems)
        return EXIT_INVALID
    entries = sum(len(b.domains) for b in lists)
    log.info("loaded %d lists with %d entries from %s", len(lists), entries, config.source)
    # The policy holds what the query path needs; the parsed entries (about 100 MB for a
    # million-entry list) must not outlive the load.
    del lists
    release_memory()
    try:
        return run_loop(service.run())
    except ConfigError as exc:  # the supervisor opens the audit store once bound
        _report(exc.problems)
        return EXIT_INVALID
    except (ListenError, PrivilegeError, OSError) as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
