"""`dnsfilter monitor` and `dnsfilter egress export`: registered on the main parser by register().

Exit status: 0 done, 1 the capture failed, stopped by itself or was interrupted (Ctrl-C while
reading a file) or the metrics endpoint cannot bind, 2 a bad config, list, audit store or
capture file.

The monitor's events go to the summary, to stdout (unless --summary-only), to
dnsfilter_bypass_events_total on its own /metrics (--metrics-listen; with --iface, the
config's metrics.listen when metrics.enabled) and to the audit store of the config's audit
section (unless --no-audit), where `dnsfilter report --kind all` shows them beside the
blocked queries of `serve`.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from dnsfilter.config import Config, HostPort, with_overrides
from dnsfilter.egress.decode import Skip
from dnsfilter.egress.plan import EgressPlan, build_plan
from dnsfilter.egress.sink import AuditSink, CountingSink, EventSink, LineSink, MetricSink
from dnsfilter.errors import ConfigError, ListError
from dnsfilter.operate.loading import load_configured

if TYPE_CHECKING:
    from dnsfilter.egress.endpoint import StatusThread
    from dnsfilter.egress.monitor import Monitor, MonitorStats

log = logging.getLogger("dnsfilter.egress")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2

_BROKEN = tuple(reason.value for reason in Skip if reason.broken)
_IGNORED = tuple(reason.value for reason in Skip if not reason.broken)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    monitor = commands.add_parser(
        "monitor", help="report traffic that went around the resolver (pcap or interface)"
    )
    source = monitor.add_mutually_exclusive_group(required=True)
    source.add_argument("--iface", metavar="IFACE", help="capture live on this interface")
    source.add_argument("--pcap", type=Path, metavar="FILE", help="read a pcap/pcapng file")
    monitor.add_argument("--config", type=Path, help="YAML config (default: the embedded one)")
    monitor.add_argument("--json", action="store_true", help="JSON lines instead of text")
    monitor.add_argument(
        "--summary-only", action="store_true", help="no line per event, only the summary"
    )
    endpoint = monitor.add_mutually_exclusive_group()
    endpoint.add_argument(
        "--metrics-listen",
        metavar="ADDR:PORT",
        help="serve /metrics, /healthz and /readyz here (default: with --iface, the config's "
        "metrics.listen when metrics.enabled; with --pcap, none)",
    )
    endpoint.add_argument("--no-metrics", action="store_true", help="no metrics endpoint")
    monitor.add_argument(
        "--no-audit",
        action="store_true",
        help="do not record events in the audit log (default: as the config's audit section)",
    )
    monitor.set_defaults(command=cmd_monitor)

    egress = commands.add_parser("egress", help="firewall rules from the config and lists")
    actions = egress.add_subparsers(required=True, metavar="ACTION")
    export = actions.add_parser("export", help="print the egress ruleset")
    export.add_argument("--format", choices=("nftables",), default="nftables")
    export.add_argument("--config", type=Path, help="YAML config (default: the embedded one)")
    export.add_argument(
        "--drop-doh",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also drop the networks of bypass-category lists (default: egress.drop_doh)",
    )
    export.set_defaults(command=cmd_egress_export)


def cmd_egress_export(args: argparse.Namespace) -> int:
    from dnsfilter.egress.nftables import render_ruleset

    try:
        config, lists = load_configured(args.config)
        plan = build_plan(config, lists, args.drop_doh)
    except (ConfigError, ListError) as exc:
        _report(exc.problems)
        return EXIT_INVALID
    sys.stdout.write(render_ruleset(plan, config.source))
    return EXIT_OK


def cmd_monitor(args: argparse.Namespace) -> int:
    from dnsfilter.datapath.policy import NetworkMap
    from dnsfilter.egress.detect import Detector, event_labels
    from dnsfilter.egress.endpoint import StatusThread
    from dnsfilter.egress.monitor import CaptureError, Monitor, MonitorStats, choose_filter
    from dnsfilter.observe.metrics import MonitorMetrics
    from dnsfilter.observe.querylog import AuditThread, build_audit_log

    try:
        config, lists = load_configured(
            args.config, lambda config: with_overrides(config, metrics_listen=args.metrics_listen)
        )
        plan = build_plan(config, lists)
    except (ConfigError, ListError) as exc:
        _report(exc.problems)
        return EXIT_INVALID
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    expression = ""
    if args.iface is not None:
        # The interface and its filter first: a typo opens no store and binds no port.
        try:
            expression = choose_filter(plan, args.iface)
        except CaptureError as exc:
            print(f"dnsfilter monitor: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    stats = MonitorStats()
    counts = CountingSink()
    sinks: list[EventSink] = [counts]
    capturing = threading.Event()
    endpoint: StatusThread | None = None
    metrics: MonitorMetrics | None = None
    address = _metrics_address(config, args)
    if address is not None:
        metrics = MonitorMetrics(stats, [reason.value for reason in Skip])
        # Every series the config allows, at 0, before the first event.
        metrics.bypass.bind(event_labels(plan, [n.name for n in config.networks]))
        sinks.append(MetricSink(metrics.bypass))
        endpoint = StatusThread(metrics.registry, lambda: _readiness(capturing), address)
    audit: AuditThread | None = None
    if not args.no_audit:
        try:
            audit_log = build_audit_log(config.audit, metrics.audit if metrics else None)
        except ConfigError as exc:
            _report(exc.problems)
            return EXIT_INVALID
        if audit_log is not None:
            audit = AuditThread(audit_log)
            audit.start()
            log.info("audit log: %s", audit.describe())
            sinks.append(AuditSink(audit, {b.name: b.category.value for b in plan.lists}))
    if not args.summary_only:
        # Last: once a line is out, the metric and the audit buffer have the event too.
        sinks.append(LineSink(sys.stdout, args.json))
    detector = Detector(plan, NetworkMap((n.name, n.prefixes) for n in config.networks))
    monitor = Monitor(detector, sinks, stats)
    try:
        return _capture(args, plan, expression, monitor, counts, endpoint, capturing)
    finally:
        # The events of the last flush_interval are still in memory: write them.
        if audit is not None:
            audit.close()
        if endpoint is not None:
            endpoint.close()


def _metrics_address(config: Config, args: argparse.Namespace) -> HostPort | None:
    """Where the monitor serves /metrics: --metrics-listen (with_overrides put it in
    config.metrics); with --iface, the config's metrics section; with --pcap, nowhere."""
    if args.no_metrics:
        return None
    if args.metrics_listen is not None or (args.iface is not None and config.metrics.enabled):
        return config.metrics.listen
    return None


def _readiness(capturing: threading.Event) -> tuple[bool, str]:
    if capturing.is_set():
        return True, ""
    return False, "the capture is not running"


def _capture(
    args: argparse.Namespace,
    plan: EgressPlan,
    expression: str,
    monitor: Monitor,
    counts: CountingSink,
    endpoint: StatusThread | None,
    capturing: threading.Event,
) -> int:
    from dnsfilter.egress.monitor import CaptureError, run_iface, run_pcap

    try:
        if endpoint is not None:
            try:
                bound = endpoint.start()
            except OSError as exc:
                print(
                    f"dnsfilter monitor: {exc.strerror or exc} (give the monitor an address of "
                    "its own with --metrics-listen, or use --no-metrics)",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
            print(f"dnsfilter monitor: metrics on http://{bound}/metrics", file=sys.stderr)
        if args.pcap is not None:
            # SIGTERM as Ctrl-C: a summary, and the audit buffer written, before exiting.
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            capturing.set()
            run_pcap(args.pcap, monitor)
        else:
            stop = threading.Event()
            _stop_on_signals(stop)

            def started() -> None:
                capturing.set()
                _announce(args.iface, expression, plan)

            run_iface(args.iface, monitor, expression, stop, started)
    except CaptureError as exc:
        print(f"dnsfilter monitor: {exc}", file=sys.stderr)
        status = EXIT_INVALID if args.pcap is not None else EXIT_FAILURE
        if monitor.stats.packets:
            _summary(monitor.stats, counts, args.json)
        return status
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM) while reading a file: what was read is still worth a summary.
        print("dnsfilter monitor: interrupted", file=sys.stderr)
        _summary(monitor.stats, counts, args.json)
        return EXIT_FAILURE
    finally:
        capturing.clear()
    _summary(monitor.stats, counts, args.json)
    return EXIT_OK


def _report(problems: Sequence[str]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def _announce(iface: str, expression: str, plan: EgressPlan) -> None:
    # Tests and operators wait for this line: from here on, packets are seen.
    approved = ", ".join(str(a) for a in plan.approved) or "none"
    print(
        f"dnsfilter monitor: capturing on {iface} (approved resolvers: {approved}; "
        f"filter: {expression})",
        file=sys.stderr,
        flush=True,
    )


def _summary(stats: MonitorStats, counts: CountingSink, as_json: bool) -> None:
    skipped = {reason: stats.skipped.get(reason, 0) for reason in _BROKEN}
    ignored = {reason: stats.ignored.get(reason, 0) for reason in _IGNORED}
    if as_json:
        document = {
            "type": "summary",
            "packets": stats.packets,
            "skipped": skipped,
            "ignored": ignored,
            "errors": stats.errors,
            "kernel_drops": stats.kernel_drops,
            "totals": counts.by_kind(),
            "events": counts.rows(),
        }
        print(json.dumps(document, separators=(",", ":")), flush=True)
        return
    lines = [
        f"packets: {stats.packets}",
        f"skipped: {sum(skipped.values())} ({_pairs(skipped)})",
        f"ignored: {sum(ignored.values())} ({_pairs(ignored)})",
    ]
    if stats.errors:
        lines.append(f"errors: {stats.errors} (see the log)")
    if stats.kernel_drops:
        lines.append(f"dropped by the kernel (the monitor fell behind): {stats.kernel_drops}")
    lines.append(f"events: {sum(counts.counts.values())} ({_pairs(counts.by_kind())})")
    rows = counts.rows()
    if rows:
        widths = [max(len(str(row[key])) for row in rows) for key in ("kind", "network", "list")]
        widths = [max(w, len(h)) for w, h in zip(widths, ("kind", "network", "list"), strict=True)]
        header = ("kind", "network", "list")
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  count")
        for row in rows:
            cells = [str(row[key] or "-") for key in header]
            lines.append(
                "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
                + f"  {row['count']}"
            )
    print("\n".join(lines), flush=True)


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items())
