"""`dnsfilter monitor --pcap` on captures crafted with scapy: exact event counts per kind,
network and list, with ordinary traffic and broken packets mixed in."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap, wrpcapng

from dnsfilter.observe.querylog import Pseudonymizer
from tests.egress.builders import BIG_KEY_SHARE, SUPPORTED_GROUPS, client_hello, dns_query
from tests.egress.conftest import (
    APPROVED,
    LAB_CLIENT,
    LAB_CLIENT_V6,
    OFFICE_CLIENT,
    OTHER_RESOLVER,
    OTHER_RESOLVER_V6,
    STRAY_CLIENT,
    UPSTREAM,
    dnsfilter,
    egress_config,
    write_config,
)
from tests.integration.harness import DnsFilter

T0 = 1_700_000_000.0


def _ether() -> Packet:
    # Both addresses given: with a default destination scapy would ARP for it on this host.
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


class Capture:
    """Packets with explicit timestamps, in order."""

    def __init__(self) -> None:
        self.packets: list[Packet] = []
        self.now = T0

    def add(self, packet: Packet, after: float = 0.001) -> None:
        self.now += after
        packet.time = self.now
        self.packets.append(packet)

    def udp(self, src: str, dst: str, dport: int, payload: bytes, sport: int = 40000) -> None:
        self.add(_ether() / _ip(src, dst) / UDP(sport=sport, dport=dport) / Raw(payload))

    def tcp(
        self,
        src: str,
        dst: str,
        dport: int,
        payload: bytes = b"",
        flags: str = "PA",
        sport: int = 50000,
    ) -> None:
        layer = TCP(sport=sport, dport=dport, flags=flags)
        self.add(
            _ether() / _ip(src, dst) / layer / Raw(payload)
            if payload
            else _ether() / _ip(src, dst) / layer
        )


def _ip(src: str, dst: str) -> Packet:
    return IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)


def scenario() -> tuple[
    list[Packet], Counter[tuple[str, str, str]], dict[str, int], dict[str, int]
]:
    """The packets, and the events, skips and ignores they must give."""
    c = Capture()
    expected: Counter[tuple[str, str, str]] = Counter()

    # -- DNS to a resolver nobody approved: one event per query message
    c.udp(OFFICE_CLIENT, OTHER_RESOLVER, 53, dns_query("www.example.org"))
    expected["dns_other_resolver", "office", ""] += 1
    c.add(
        _ether()
        / IP(src=OFFICE_CLIENT, dst=OTHER_RESOLVER)
        / UDP(sport=40001)
        / DNS(qd=DNSQR(qname="X.Banned.Example.Test."))
    )
    expected["dns_other_resolver", "office", "apps"] += 1
    c.udp(OFFICE_CLIENT, OTHER_RESOLVER, 53, dns_query("ok.banned.example.test"))  # an exception
    expected["dns_other_resolver", "office", ""] += 1
    c.udp(LAB_CLIENT_V6, OTHER_RESOLVER_V6, 53, dns_query("a.doh.example.test", qtype=28))
    expected["dns_other_resolver", "lab", "doh"] += 1
    c.tcp(OFFICE_CLIENT, OTHER_RESOLVER, 53, flags="S", sport=50053)  # no query yet
    query = dns_query("tcp.example.org")
    c.tcp(OFFICE_CLIENT, OTHER_RESOLVER, 53, struct.pack("!H", len(query)) + query, sport=50053)
    expected["dns_other_resolver", "office", ""] += 1
    # A header that parses with a question that does not: still a query to that resolver.
    c.udp(OFFICE_CLIENT, OTHER_RESOLVER, 53, dns_query("x")[:-6] + b"\x3f")
    expected["dns_other_resolver", "office", ""] += 1
    c.udp(STRAY_CLIENT, OTHER_RESOLVER, 53, dns_query("banned.example.test"))
    expected["dns_other_resolver", "none", "apps"] += 1

    # -- DNS that is fine: to the approved resolver, its own forwarding, answers, junk
    c.udp(OFFICE_CLIENT, APPROVED, 53, dns_query("banned.example.test"))
    c.udp(APPROVED, UPSTREAM, 53, dns_query("www.example.org"))
    c.udp(OTHER_RESOLVER, OFFICE_CLIENT, 40000, dns_query("www.example.org", flags=0x8180))
    c.add(
        _ether()
        / IP(src=OFFICE_CLIENT, dst=OTHER_RESOLVER)
        / UDP(sport=40002, dport=53)
        / DNS(qr=1, qd=DNSQR(qname="banned.example.test"))
    )
    c.udp(OFFICE_CLIENT, OTHER_RESOLVER, 53, b"\x00\x01\x02")  # shorter than a header

    # -- DoT and DoQ to anywhere else: one event per flow
    for packet_flags in ("S", "A", "PA"):
        c.tcp(
            LAB_CLIENT,
            OTHER_RESOLVER,
            853,
            b"\x17\x03\x03\x00\x01x" if packet_flags == "PA" else b"",
            flags=packet_flags,
            sport=51000,
        )
    expected["dot_other_resolver", "lab", ""] += 1
    c.tcp(LAB_CLIENT, OTHER_RESOLVER, 853, flags="S", sport=51001)
    expected["dot_other_resolver", "lab", ""] += 1
    c.udp(STRAY_CLIENT, OTHER_RESOLVER, 853, b"\xc0quic-initial", sport=41000)
    c.udp(STRAY_CLIENT, OTHER_RESOLVER, 853, b"\xc0quic-initial", sport=41000)
    expected["dot_other_resolver", "none", ""] += 1
    c.tcp(LAB_CLIENT, APPROVED, 853, flags="S", sport=51002)  # approved: fine

    # -- TLS server names: blocked app, DoH resolver, ordinary site, a hello cut before its name
    hello = client_hello("cdn.banned.example.test", before=[SUPPORTED_GROUPS])
    c.tcp(OFFICE_CLIENT, "198.51.100.80", 443, hello, sport=52000)
    c.tcp(OFFICE_CLIENT, "198.51.100.80", 443, hello, sport=52000)  # retransmission
    expected["sni_blocked", "office", "apps"] += 1
    hello = client_hello("DoH.Example.Test.", before=[SUPPORTED_GROUPS], after=[BIG_KEY_SHARE])
    c.tcp(LAB_CLIENT, "198.51.100.81", 443, hello[:1200], sport=52001)  # first segment only
    expected["sni_doh_resolver", "lab", "doh"] += 1
    c.tcp(LAB_CLIENT, "198.51.100.81", 443, client_hello("www.example.org"), sport=52002)
    hello = client_hello("banned.example.test", before=[SUPPORTED_GROUPS, BIG_KEY_SHARE])
    c.tcp(LAB_CLIENT, "198.51.100.81", 443, hello[:600], sport=52003)  # name in the next segment
    c.tcp(LAB_CLIENT, "198.51.100.82", 443, client_hello(None), sport=52004)  # no server_name

    # -- flows into banned prefixes (TCP, QUIC, IPv6, a DoH entry point): one event per flow
    for packet_flags in ("S", "A", "PA"):
        c.tcp(
            OFFICE_CLIENT,
            "203.0.113.10",
            443,
            b"data" if packet_flags == "PA" else b"",
            flags=packet_flags,
            sport=53000,
        )
    expected["flow_banned_prefix", "office", "apps"] += 1
    c.udp(OFFICE_CLIENT, "203.0.113.11", 443, b"\xc3quic", sport=53001)
    c.udp(
        OFFICE_CLIENT,
        "203.0.113.11",
        443,
        b"\xc3quic",
        sport=53001,
    )
    expected["flow_banned_prefix", "office", "apps"] += 1
    c.now += 120  # silent for longer than the flow timeout: the same tuple is a new flow
    c.udp(OFFICE_CLIENT, "203.0.113.11", 443, b"\xc3quic", sport=53001)
    expected["flow_banned_prefix", "office", "apps"] += 1
    c.tcp(LAB_CLIENT_V6, "2001:db8:bad::1", 443, flags="S", sport=53002)
    expected["flow_banned_prefix", "lab", "apps"] += 1
    c.tcp(LAB_CLIENT, "192.0.2.200", 443, flags="S", sport=53003)
    expected["flow_banned_prefix", "lab", "doh"] += 1
    # A DNS query to a banned address is both a query elsewhere and a banned flow.
    c.udp(OFFICE_CLIENT, "203.0.113.53", 53, dns_query("www.example.org"), sport=53004)
    expected["dns_other_resolver", "office", ""] += 1
    expected["flow_banned_prefix", "office", "apps"] += 1

    # -- ordinary traffic
    c.tcp(OFFICE_CLIENT, "198.51.100.80", 80, b"GET / HTTP/1.1\r\n\r\n", sport=54000)
    c.udp(LAB_CLIENT_V6, "2001:db8::80", 443, b"\xc3quic", sport=54001)
    c.add(_ether() / ARP(psrc=OFFICE_CLIENT, pdst="10.1.0.1"))
    c.add(_ether() / IP(src=OFFICE_CLIENT, dst="203.0.113.10") / ICMP())  # not a flow we count
    ignored = {"not_ip": 1, "not_tcp_udp": 1}

    # -- broken packets: counted, never classified, never fatal
    big = (
        _ether()
        / IP(src=OFFICE_CLIENT, dst="203.0.113.12")
        / UDP(sport=55000, dport=443)
        / Raw(bytes(3000))
    )
    pieces = fragment(big[IP], fragsize=1400)  # type: ignore[no-untyped-call]
    for piece in pieces:
        c.add(_ether() / piece)
    frag6 = (
        IPv6(src=LAB_CLIENT_V6, dst="2001:db8:bad::2")
        / IPv6ExtHdrFragment(m=1)
        / UDP(dport=443)
        / Raw(b"x" * 64)
    )
    c.add(_ether() / frag6)
    whole = bytes(
        _ether()
        / IP(src=OFFICE_CLIENT, dst="203.0.113.13")
        / TCP(sport=55001, dport=443, flags="S")
    )
    c.add(Ether(whole[:24]))  # cut inside the IP header
    c.add(Ether(whole[:40]))  # cut inside the TCP header
    c.add(_ether() / IP(src=OFFICE_CLIENT, dst="203.0.113.14", ihl=2) / UDP(dport=443))
    c.add(_ether() / IP(src=OFFICE_CLIENT, dst="203.0.113.15") / TCP(dport=443, dataofs=3))
    skipped = {"truncated": 2, "fragment": len(pieces) + 1, "malformed": 2}
    return c.packets, expected, skipped, ignored


def run_monitor(capture: Path, config: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    result = dnsfilter("monitor", "--pcap", str(capture), "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    events = [line for line in lines if line["type"] == "event"]
    summaries = [line for line in lines if line["type"] == "summary"]
    assert len(summaries) == 1 and lines[-1] is summaries[0]
    return events, summaries[0]


@pytest.mark.parametrize("writer", [wrpcap, wrpcapng], ids=["pcap", "pcapng"])
def test_monitor_counts_every_bypass_exactly(
    tmp_path: Path, config_path: Path, writer: Any
) -> None:
    packets, expected, skipped, ignored = scenario()
    capture = tmp_path / "capture"
    writer(str(capture), packets)

    events, summary = run_monitor(capture, config_path)

    assert summary["packets"] == len(packets)
    assert summary["skipped"] == skipped
    assert summary["ignored"] == ignored
    assert summary["errors"] == 0
    assert summary["kernel_drops"] == 0
    got = Counter({(r["kind"], r["network"], r["list"]): r["count"] for r in summary["events"]})
    assert got == expected
    totals: Counter[str] = Counter()
    for (kind, _, _), count in expected.items():
        totals[kind] += count
    assert {k: v for k, v in summary["totals"].items() if v} == dict(totals)
    # The event lines agree with the summary, and carry who, where and what.
    assert Counter((e["kind"], e["network"], e["list"]) for e in events) == expected
    named = {(e["kind"], e["detail"]) for e in events}
    assert ("sni_blocked", "cdn.banned.example.test") in named
    assert ("sni_doh_resolver", "doh.example.test") in named
    assert ("dns_other_resolver", "x.banned.example.test") in named
    doq = [e for e in events if e["kind"] == "dot_other_resolver" and e["network"] == "none"]
    assert [(e["client"], e["destination"]) for e in doq] == [
        (STRAY_CLIENT, f"{OTHER_RESOLVER}:853")
    ]
    v6 = [e for e in events if e["client"] == LAB_CLIENT_V6 and e["kind"] == "dns_other_resolver"]
    assert [e["destination"] for e in v6] == [f"[{OTHER_RESOLVER_V6}]:53"]


def test_egress_lists_limit_what_counts(tmp_path: Path) -> None:
    """egress.lists: [doh] drops the apps list's names and networks from detection."""
    config = write_config(tmp_path, egress_config(lists=["doh"]))
    packets, expected, _, _ = scenario()
    capture = tmp_path / "capture.pcap"
    wrpcap(str(capture), packets)
    _, summary = run_monitor(capture, config)
    got = Counter({(r["kind"], r["network"], r["list"]): r["count"] for r in summary["events"]})
    assert got
    assert all(lst != "apps" for _, _, lst in got)
    assert got["flow_banned_prefix", "lab", "doh"] == expected["flow_banned_prefix", "lab", "doh"]
    assert got["sni_blocked", "office", "apps"] == 0
    # The queries still went to an unapproved resolver; they just name no list now.
    dns = sum(v for (kind, _, _), v in got.items() if kind == "dns_other_resolver")
    assert dns == sum(v for (kind, _, _), v in expected.items() if kind == "dns_other_resolver")


def test_text_summary_and_events(tmp_path: Path, config_path: Path) -> None:
    packets, _, skipped, _ = scenario()
    capture = tmp_path / "capture.pcap"
    wrpcap(str(capture), packets)
    result = dnsfilter("monitor", "--pcap", str(capture), "--config", str(config_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert (
        f"sni_blocked network=office list=apps {OFFICE_CLIENT} -> 198.51.100.80:443 "
        "cdn.banned.example.test" in out
    )
    assert f"packets: {len(packets)}" in out
    reasons = ", ".join(f"{reason} {count}" for reason, count in skipped.items())
    assert f"skipped: {sum(skipped.values())} ({reasons})" in out
    summary_only = dnsfilter(
        "monitor", "--pcap", str(capture), "--config", str(config_path), "--summary-only"
    )
    assert "->" not in summary_only.stdout
    assert "flow_banned_prefix  office   apps" in summary_only.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", "cannot read", id="empty"),
        pytest.param(b"not a capture file at all", "cannot read", id="junk"),
    ],
)
def test_unreadable_capture_exits_2(
    tmp_path: Path, config_path: Path, content: bytes, message: str
) -> None:
    capture = tmp_path / "bad.pcap"
    capture.write_bytes(content)
    result = dnsfilter("monitor", "--pcap", str(capture), "--config", str(config_path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_capture_cut_mid_packet_still_summarises(tmp_path: Path, config_path: Path) -> None:
    packets, _, skipped, _ = scenario()
    capture = tmp_path / "cut.pcap"
    wrpcap(str(capture), packets)
    data = capture.read_bytes()
    # The last record (a malformed TCP header) loses its tail, now inside the IP header.
    capture.write_bytes(data[: len(data) - 30])
    _, summary = run_monitor(capture, config_path)
    assert summary["packets"] == len(packets)
    assert summary["skipped"]["truncated"] == skipped["truncated"] + 1
    assert summary["skipped"]["malformed"] == skipped["malformed"] - 1
    assert summary["errors"] == 0


def test_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("egress:\n  drop_doh: yes\n")
    result = dnsfilter("monitor", "--pcap", str(tmp_path / "x.pcap"), "--config", str(config))
    assert result.returncode == 2
    assert "egress.drop_doh: write true or false (got 'yes')" in result.stderr


def test_unknown_interface_exits_1(config_path: Path) -> None:
    result = dnsfilter("monitor", "--iface", "nosuch0", "--config", str(config_path))
    assert result.returncode == 1
    assert result.stderr.strip() == "dnsfilter monitor: no network interface named 'nosuch0'"


def test_unsupported_link_type_exits_2(tmp_path: Path, config_path: Path) -> None:
    capture = tmp_path / "user0.pcap"
    wrpcap(str(capture), [Raw(b"\x00" * 40)], linktype=147)  # LINKTYPE_USER0
    result = dnsfilter("monitor", "--pcap", str(capture), "--config", str(config_path))
    assert result.returncode == 2
    assert f"{capture}: link type 147 is not supported" in result.stderr


# ---------------------------------------------------------------------------------------
# Events in the audit store, and beside the blocked queries of `serve` in the report


def audit_config(tmp_path: Path, **audit: Any) -> Path:
    config = egress_config()
    config["audit"] = {"sqlite_path": "audit.sqlite3", **audit}
    return write_config(tmp_path, config)


def db_counts(path: Path) -> Counter[tuple[str, str, str]]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT action, network, list, count(*) FROM events WHERE result = 'bypass'"
            " GROUP BY action, network, list"
        ).fetchall()
    return Counter({(kind, network, list_name): count for kind, network, list_name, count in rows})


def report_json(*args: str) -> list[dict[str, Any]]:
    result = dnsfilter("report", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_every_event_is_recorded_in_the_audit_store(tmp_path: Path) -> None:
    # The capture is from 2023: retention 0, or the first batch would prune it at once.
    config = audit_config(tmp_path, retention_days=0, jsonl_path="audit.jsonl")
    packets, expected, _, _ = scenario()
    capture = tmp_path / "capture.pcap"
    wrpcap(str(capture), packets)

    events, summary = run_monitor(capture, config)

    db = tmp_path / "audit.sqlite3"
    assert db_counts(db) == expected
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events WHERE result != 'bypass'").fetchone() == (
            0,
        )
        stored = conn.execute(
            "SELECT time, client, qname, destination FROM events ORDER BY id"
        ).fetchall()
    # Row for row the events the monitor printed, at the packets' own times.
    assert [(client, qname, dest) for _, client, qname, dest in stored] == [
        (e["client"], e["detail"], e["destination"]) for e in events
    ]
    assert all(T0 < when < T0 + 300 for when, _, _, _ in stored)
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert Counter((x["action"], x["network"], x["list"]) for x in lines) == expected
    assert {x["category"] for x in lines if x["list"] == "doh"} == {"bypass"}

    # The report, per (list, network, client, kind), adds up to the same counts.
    rows = report_json("--db", str(db), "--kind", "bypass")
    reported: Counter[tuple[str, str, str]] = Counter()
    for row in rows:
        reported[row["kind"], row["network"], row["list"]] += row["count"]
    assert reported == expected
    flows = [r for r in rows if r["client"] == OFFICE_CLIENT and r["kind"] == "flow_banned_prefix"]
    assert [(r["list"], r["count"], r["top_names"]) for r in flows] == [
        (
            "apps",
            4,
            [
                {"name": "203.0.113.11:443", "count": 2},
                {"name": "203.0.113.10:443", "count": 1},
                {"name": "203.0.113.53:53", "count": 1},
            ],
        )
    ]
    assert summary["packets"] == len(packets)  # the summary is as it was
    # Without --kind, the report is the blocked attempts only, as before: none here.
    assert report_json("--db", str(db)) == []
    assert report_json("--db", str(db), "--kind", "sni_blocked")[0]["top_names"] == [
        {"name": "cdn.banned.example.test", "count": 1}
    ]


def test_no_audit_writes_nothing(tmp_path: Path) -> None:
    config = audit_config(tmp_path)
    capture = tmp_path / "capture.pcap"
    wrpcap(str(capture), scenario()[0])
    result = dnsfilter(
        "monitor", "--pcap", str(capture), "--config", str(config), "--no-audit", "--summary-only"
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "audit.sqlite3").exists()


#: A device of the office network that `serve` sees on loopback, and that the capture shows.
DEVICE = "127.0.0.2"


def test_report_shows_bypass_beside_the_blocked_queries_of_serve(tmp_path: Path) -> None:
    """`serve` and `monitor` with one config write one store; hashed clients still match."""
    config = egress_config()
    config["server"] = {"listen": ["127.0.0.1:0"]}
    config["upstream"] = {"servers": ["127.0.0.1:9"], "health_check_interval": 0}
    config["networks"]["office"].append(f"{DEVICE}/32")
    config["metrics"] = {"listen": "127.0.0.1:0"}
    config["audit"] = {
        "sqlite_path": "audit.sqlite3",
        "pseudonymize": "hash",
        "hash_key_file": "audit.key",
    }
    path = write_config(tmp_path, config)
    db = tmp_path / "audit.sqlite3"

    with DnsFilter(tmp_path, None, args=["--config", str(path)]) as server:
        for name in ("banned.example.test", "banned.example.test", "x.banned.example.test"):
            assert server.udp(name, source=DEVICE).answer  # blocked: 0.0.0.0
    # serve flushed its buffer on SIGTERM.

    c = Capture()
    c.now = time.time() - 60  # recent: inside the default retention and --since 10m
    c.tcp(DEVICE, "198.51.100.80", 443, client_hello("cdn.banned.example.test"), sport=52000)
    c.tcp(DEVICE, "203.0.113.10", 443, flags="S", sport=53000)
    c.udp(DEVICE, OTHER_RESOLVER, 53, dns_query("banned.example.test"))
    c.tcp(DEVICE, OTHER_RESOLVER, 853, flags="S", sport=51000)
    c.tcp(OFFICE_CLIENT, "203.0.113.10", 443, flags="S", sport=53001)
    capture = tmp_path / "capture.pcap"
    wrpcap(str(capture), c.packets)
    result = dnsfilter("monitor", "--pcap", str(capture), "--config", str(path), "--summary-only")
    assert result.returncode == 0, result.stderr
    assert "events: 5 " in result.stdout

    key = (tmp_path / "audit.key").read_bytes().strip()
    device, other = (Pseudonymizer.keyed_hash(key)(a) for a in (DEVICE, OFFICE_CLIENT))
    rows = report_json("--db", str(db), "--kind", "all", "--since", "10m")
    assert [
        (r["list"], r["network"], r["client"], r["kind"], r["count"], r["top_names"]) for r in rows
    ] == [
        ("", "office", device, "dot_other_resolver", 1, [_name(f"{OTHER_RESOLVER}:853")]),
        (
            "apps",
            "office",
            device,
            "blocked",
            3,
            [_name("banned.example.test", 2), _name("x.banned.example.test")],
        ),
        ("apps", "office", device, "dns_other_resolver", 1, [_name("banned.example.test")]),
        ("apps", "office", device, "flow_banned_prefix", 1, [_name("203.0.113.10:443")]),
        ("apps", "office", device, "sni_blocked", 1, [_name("cdn.banned.example.test")]),
        ("apps", "office", other, "flow_banned_prefix", 1, [_name("203.0.113.10:443")]),
    ]
    # Without --kind: the blocked attempts, as before; the table says what it left out.
    assert [(r["client"], r["count"]) for r in report_json("--db", str(db))] == [(device, 3)]
    table = dnsfilter("report", "--db", str(db))
    assert table.returncode == 0, table.stderr
    assert table.stderr == (
        "dnsfilter report: 5 bypass events of `dnsfilter monitor` are not shown; "
        "add --kind all to see them beside the blocked attempts\n"
    )


def _name(name: str, count: int = 1) -> dict[str, Any]:
    return {"name": name, "count": count}


def test_metrics_listen_with_a_capture_file(tmp_path: Path, config_path: Path) -> None:
    capture = tmp_path / "capture.pcap"
    wrpcap(str(capture), scenario()[0])
    args = ("monitor", "--pcap", str(capture), "--config", str(config_path), "--summary-only")
    served = dnsfilter(*args, "--no-audit", "--metrics-listen", "127.0.0.1:0")
    assert served.returncode == 0, served.stderr
    assert re.search(
        r"^dnsfilter monitor: metrics on http://127\.0\.0\.1:\d+/metrics$",
        served.stderr,
        re.MULTILINE,
    ), served.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = dnsfilter(*args, "--no-audit", "--metrics-listen", f"127.0.0.1:{port}")
    assert busy.returncode == 1
    assert busy.stderr.endswith(
        f"dnsfilter monitor: cannot serve metrics on 127.0.0.1:{port}: Address already in use "
        "(give the monitor an address of its own with --metrics-listen, or use --no-metrics)\n"
    ), busy.stderr
    bad = dnsfilter(*args, "--metrics-listen", "nowhere")
    assert bad.returncode == 2
    assert bad.stderr.startswith("--metrics-listen: "), bad.stderr


def test_monitor_on_the_default_config_reports_doh_sni(tmp_path: Path) -> None:
    """No --config: the embedded default enforces bypass, so a TLS hello to dns.google is
    sni_doh_resolver and one to a TikTok name sni_blocked; an ordinary site is nothing."""
    c = Capture()
    c.tcp("127.0.0.1", "8.8.8.8", 443, client_hello("dns.google", before=[SUPPORTED_GROUPS]))
    c.tcp("127.0.0.1", "1.1.1.1", 443, client_hello("mozilla.cloudflare-dns.com"), sport=50001)
    c.tcp("127.0.0.1", "192.0.2.10", 443, client_hello("www.tiktok.com"), sport=50002)
    c.tcp("127.0.0.1", "192.0.2.11", 443, client_hello("www.example.org"), sport=50003)
    capture = tmp_path / "default.pcap"
    wrpcap(str(capture), c.packets)
    result = dnsfilter("monitor", "--pcap", str(capture), "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    events = [(e["kind"], e["list"], e["detail"]) for e in lines if e["type"] == "event"]
    assert events == [
        ("sni_doh_resolver", "bypass", "dns.google"),
        ("sni_doh_resolver", "bypass", "mozilla.cloudflare-dns.com"),
        ("sni_blocked", "tiktok", "www.tiktok.com"),
    ]
