"""Where bypass events go: anything with record(event).

The monitor knows only the EventSink protocol. Here are the two the command line uses: a
counter for the closing summary and a line writer. The metrics counter
(dnsfilter_bypass_events_total{network, kind, list}) and the audit log are meant to be further
sinks beside these.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Protocol, TextIO

from dnsfilter.egress.detect import Event, EventKind


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
