"""Where bypass events go: anything with record(event).

The monitor knows only the EventSink protocol. The command line uses four: a counter for the
closing summary, a line writer, the metric dnsfilter_bypass_events_total{network, kind, list}
and the audit log. Every record() runs on the capture thread.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Protocol, TextIO

from dnsfilter.egress.detect import Event, EventKind
from dnsfilter.observe.metrics import BypassStats
from dnsfilter.observe.querylog import BYPASS_RESULT, AuditEvent


class EventSink(Protocol):
    def record(self, event: Event) -> None:
        """Take one event; called on the capture thread, so it must not block for long."""


class CountingSink:
    """Counts events by (kind, network, list): the labels the metric will carry."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[EventKind, str, str]] = Counter()

    def record(self, event: Event) -> None:
        self.counts[(event.kind, event.network, event.list_name)] += 1

    def by_kind(self) -> dict[str, int]:
        """Every kind, zeros included, so a report shows what was looked for."""
        totals = dict.fromkeys((kind.value for kind in EventKind), 0)
        for (kind, _network, _list), count in self.counts.items():
            totals[kind.value] += count
        return totals

    def rows(self) -> list[dict[str, str | int]]:
        return [
            {"kind": kind.value, "network": network, "list": list_name, "count": count}
            for (kind, network, list_name), count in sorted(
                self.counts.items(), key=lambda item: (item[0][0].value, item[0][1], item[0][2])
            )
        ]


class MetricSink:
    """Counts events into BypassStats, which the monitor's /metrics exports.

    The capture thread is the only writer, so a plain increment loses nothing (see
    BypassStats); the labels are the event's, which the detector takes from the config.
    """

    def __init__(self, stats: BypassStats) -> None:
        self._events = stats.events

    def record(self, event: Event) -> None:
        self._events[(event.network, event.kind.value, event.list_name)] += 1


class AuditRecorder(Protocol):
    def record(self, event: AuditEvent) -> None:
        """Take one audit event; safe to call from the capture thread (AuditThread is)."""


class AuditSink:
    """Turns events into audit rows beside the blocked queries of `serve`: result "bypass",
    the kind as action, the name (if any) as qname, the address reached as destination."""

    def __init__(self, audit: AuditRecorder, categories: Mapping[str, str]) -> None:
        self._audit = audit
        self._categories = dict(categories)  #: list name -> category value

    def record(self, event: Event) -> None:
        self._audit.record(
            AuditEvent(
                event.time,
                event.client,
                event.network,
                event.detail,
                0,
                BYPASS_RESULT,
                event.list_name,
                self._categories.get(event.list_name, ""),
                event.kind.value,
                event.destination,
            )
        )


class LineSink:
    """One line per event: JSON objects, or text for people."""

    def __init__(self, stream: TextIO, as_json: bool) -> None:
        self._stream = stream
        self._json = as_json

    def record(self, event: Event) -> None:
        if self._json:
            line = json.dumps(event_dict(event), separators=(",", ":"))
        else:
            detail = f" {_printable(event.detail)}" if event.detail else ""
            listed = f" list={event.list_name}" if event.list_name else ""
            line = (
                f"{event.kind.value} network={event.network}{listed} "
                f"{event.client} -> {event.destination}{detail}"
            )
        self._stream.write(line + "\n")
        self._stream.flush()


def event_dict(event: Event) -> dict[str, str]:
    return {
        "type": "event",
        "kind": event.kind.value,
        "network": event.network,
        "list": event.list_name,
        "client": event.client,
        "destination": event.destination,
        "detail": event.detail,
    }


def _printable(text: str) -> str:
    """Names come off the wire: escape anything that could steer a terminal."""
    if text.isprintable() and text.isascii():
        return text
    return text.encode("unicode_escape").decode("ascii")
