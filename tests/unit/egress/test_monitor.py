"""The monitor core: counting skips and errors, and the BPF filter it starts with."""

from __future__ import annotations

import io
import ipaddress
import json
import struct

import pytest

from dnsfilter.datapath.policy import NetworkMap
from dnsfilter.egress.decode import LinkType
from dnsfilter.egress.detect import Detector, Event, EventKind
from dnsfilter.egress.monitor import (
    FALLBACK_FILTER,
    MAX_FILTER_PREFIXES,
    CaptureError,
    Monitor,
    build_filter,
    check_filter,
    choose_filter,
)
from dnsfilter.egress.plan import EgressPlan, ListNetworks
from dnsfilter.egress.sink import CountingSink, LineSink
from tests.egress.builders import dns_query

PLAN = EgressPlan(
    approved=(ipaddress.ip_address("198.51.100.53"),),
    upstreams=(),
    lists=(),
    banned=(
        ListNetworks(
            "apps",
            (
                ipaddress.ip_network("203.0.113.0/25"),
                ipaddress.ip_network("203.0.113.128/25"),
                ipaddress.ip_network("2001:db8:bad::/48"),
            ),
        ),
    ),
    doh=(ListNetworks("doh", (ipaddress.ip_network("192.0.2.128/25"),)),),
    drop_doh=False,
)


def query_frame(dst: str = "198.51.100.99") -> bytes:
    payload = dns_query("www.example.org")
    udp = struct.pack("!HHHH", 40000, 53, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0,
        64,
        17,
        0,
        bytes([10, 1, 0, 5]),
        ipaddress.ip_address(dst).packed,
    )
    return ip + udp


class FailingSink:
    def __init__(self) -> None:
        self.calls = 0

    def record(self, event: Event) -> None:
        self.calls += 1
        raise RuntimeError("sink broke")


def monitor(*sinks: CountingSink | FailingSink) -> Monitor:
    return Monitor(Detector(PLAN, NetworkMap([])), sinks)


def test_feed_counts_packets_skips_and_events() -> None:
    counts = CountingSink()
    m = monitor(counts)
    m.feed(query_frame(), LinkType.RAW, 0.0)
    m.feed(query_frame()[:10], LinkType.RAW, 0.0)
    m.feed(b"\x00" * 28, LinkType.ETHERNET, 0.0)  # ethertype 0: not IP
    assert m.stats.packets == 3
    assert dict(m.stats.skipped) == {"truncated": 1}
    assert dict(m.stats.ignored) == {"not_ip": 1}
    assert sum(counts.counts.values()) == 1


def test_a_failing_sink_is_counted_and_does_not_stop_the_feed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing, counts = FailingSink(), CountingSink()
    m = monitor(failing, counts)
    for _ in range(3):
        m.feed(query_frame(), LinkType.RAW, 0.0)
    assert m.stats.errors == 3
    assert failing.calls == 3
    assert m.stats.packets == 3
    # Logged once, with the traceback; not once per packet.
    assert [r.message for r in caplog.records].count(
        "error on packet 1; counting further errors silently"
    ) == 1


def test_filter_names_the_watched_ports_and_merged_prefixes() -> None:
    assert build_filter(PLAN) == (
        "dst port 53 or dst port 853 or dst port 443 or dst net 192.0.2.128/25 "
        "or dst net 203.0.113.0/24 or dst net 2001:db8:bad::/48"
    )


def test_filter_compiles_and_a_bad_one_fails_before_capturing() -> None:
    assert check_filter(build_filter(PLAN), "lo") > 0
    with pytest.raises(CaptureError, match="BPF filter does not compile for lo"):
        check_filter("dst port 53 or dst port bogus", "lo")
    with pytest.raises(CaptureError, match="nosuch0"):
        check_filter("dst port 53", "nosuch0")


def test_line_sink_escapes_names_off_the_wire() -> None:
    """A query name may hold any byte; text output must not let it steer a terminal."""
    event = Event(
        EventKind.DNS_OTHER_RESOLVER, "office", "", "10.1.0.5", "198.51.100.99:53", "a\x1b[2Jb"
    )
    text, lines = io.StringIO(), io.StringIO()
    LineSink(text, as_json=False).record(event)
    LineSink(lines, as_json=True).record(event)
    assert text.getvalue() == (
        "dns_other_resolver network=office 10.1.0.5 -> 198.51.100.99:53 a\\x1b[2Jb\n"
    )
    assert json.loads(lines.getvalue())["detail"] == "a\x1b[2Jb"


def test_too_many_prefixes_fall_back_to_all_ip(caplog: pytest.LogCaptureFixture) -> None:
    """Past the cap the filter would take libpcap seconds to compile, or the kernel refuse it."""

    def plan_with(count: int) -> EgressPlan:
        # Every other /32, so that merging cannot shrink the list.
        nets = tuple(
            ipaddress.ip_network(f"10.0.{i // 100}.{2 * (i % 100)}/32") for i in range(count)
        )
        return EgressPlan((), (), (), (ListNetworks("big", nets),), (), False)

    at_cap = choose_filter(plan_with(MAX_FILTER_PREFIXES), "lo")
    assert at_cap.count("dst net") == MAX_FILTER_PREFIXES
    assert not caplog.records
    assert choose_filter(plan_with(MAX_FILTER_PREFIXES + 1), "lo") == FALLBACK_FILTER
    assert "capturing all IP traffic" in caplog.text
