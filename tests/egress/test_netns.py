"""The exported ruleset and the live monitor, proven inside network namespaces the tests
create (as root). Only addresses assigned here are ever sent to; see netns.py."""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dnslib import DNSRecord
from prometheus_client.parser import text_string_to_metric_families

from tests.egress.builders import client_hello, dns_query
from tests.egress.conftest import APPS_LIST, DOH_LIST, require_root
from tests.egress.netns import (
    BANNED_ADDRESS,
    CLIENT_ADDRESS,
    OTHER_RESOLVER_ADDRESS,
    RESOLVER_ADDRESS,
    Lab,
    NamespaceError,
    Running,
)

pytestmark = pytest.mark.needs_root

TIMEOUT = 15.0


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_root()
    try:
        with Lab() as created:
            yield created
    except NamespaceError as exc:
        # Root but no namespaces (a container without CAP_SYS_ADMIN): say so, fail in CI.
        pytest.skip(f"cannot create network namespaces: {exc}")


def lab_config(directory: Path, metrics: dict[str, Any] | None = None, **egress: Any) -> Path:
    """The config every namespace uses: clients in 198.51.100.0/26, the resolver at .66.

    `serve` (in the server namespace) and `monitor` (in the client's) share its audit store,
    audit.sqlite3 beside it; metrics are off unless given (each namespace has its own
    127.0.0.1, so both processes may take port 0 there).
    """
    (directory / "apps.yaml").write_text(yaml.safe_dump(APPS_LIST))
    (directory / "doh.yaml").write_text(yaml.safe_dump(DOH_LIST))
    config = {
        "server": {"listen": [f"{RESOLVER_ADDRESS}:53"]},
        # Never used: every query these tests send is for a blocked name.
        "upstream": {"servers": ["127.0.0.1:9"], "health_check_interval": 0},
        "networks": {"clients": ["198.51.100.0/26"]},
        "lists": {"apps": {"file": "apps.yaml"}, "doh": {"file": "doh.yaml"}},
        "policies": {"default": {"networks": ["clients"], "lists": ["apps", "doh"]}},
        "metrics": metrics or {"enabled": False},
        "audit": {"sqlite_path": "audit.sqlite3", "flush_interval": 0.2},
        "egress": egress,
    }
    path = directory / "dnsfilter.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_servers(lab: Lab, config: Path) -> Running:
    """dnsfilter on the resolver address (returned); echo servers on the banned and
    unapproved ones."""
    resolver = lab.start(
        lab.server, sys.executable, "-m", "dnsfilter", "serve", "--config", str(config)
    )
    echo = lab.python(
        lab.server,
        "echo.py",
        f"udp:{BANNED_ADDRESS}:9999",
        f"tcp:{BANNED_ADDRESS}:9999",
        f"udp:{OTHER_RESOLVER_ADDRESS}:53",
        f"tcp:{OTHER_RESOLVER_ADDRESS}:53",
        f"tcp:{RESOLVER_ADDRESS}:443",
    )
    resolver.wait_for(f"listening on {RESOLVER_ADDRESS}:53")
    echo.wait_for("ready", name="stdout")
    return resolver


def blocked_answer(probe: str) -> str:
    """The A record dnsfilter answered for a blocked name, from a probe's reply line."""
    assert probe.startswith("reply "), probe
    reply = DNSRecord.parse(bytes.fromhex(probe.split()[1]))
    return str(reply.rr[0].rdata)


def banned_drops(lab: Lab, ns: str) -> int:
    """Packets the `ip daddr @banned_v4 counter drop` rule in ns has counted."""
    listed = lab.run(ns, "nft", "-j", "list", "chain", "inet", "dnsfilter", "egress")
    for item in json.loads(listed.stdout)["nftables"]:
        expressions = item.get("rule", {}).get("expr", [])
        if "@banned_v4" in json.dumps(expressions[:1]):
            return int(next(e["counter"]["packets"] for e in expressions if "counter" in e))
    raise AssertionError(f"no banned_v4 rule in:\n{listed.stdout}")


def apply_ruleset(lab: Lab, ns: str, config: Path, *flags: str) -> None:
    exported = lab.run(
        ns, sys.executable, "-m", "dnsfilter", "egress", "export", "--config", str(config), *flags
    )
    ruleset = config.parent / f"egress-{ns}.nft"
    ruleset.write_text(exported.stdout)
    lab.run(ns, "nft", "-f", str(ruleset))


#: What a client sees when the rules drop or reject its packet: on the host itself the
#: output hook fails the send (EPERM) or resets the connection; through a gateway a drop is
#: silence and a reject an ICMP unreachable or a reset.
HOST = {"drop_udp": "dropped", "drop_tcp": "timeout", "reject_udp": "dropped"}
GATEWAY = {"drop_udp": "timeout", "drop_tcp": "timeout", "reject_udp": "refused"}


@pytest.mark.parametrize(("where", "seen"), [("client", HOST), ("router", GATEWAY)])
def test_ruleset_drops_banned_prefix_and_keeps_dns_to_the_approved_resolver(
    lab: Lab, tmp_path: Path, where: str, seen: dict[str, str]
) -> None:
    config = lab_config(tmp_path)
    start_servers(lab, config)
    query = dns_query("www.banned.example.test")
    framed = len(query).to_bytes(2, "big") + query
    ns = lab.client if where == "client" else lab.router

    # Without the ruleset everything gets through: the probes below can tell drop from pass.
    assert lab.probe("udp", BANNED_ADDRESS, 9999, b"ping") == "reply " + b"ping".hex()
    assert lab.probe("tcp", BANNED_ADDRESS, 9999, b"ping") == "reply " + b"ping".hex()
    assert lab.probe("udp", OTHER_RESOLVER_ADDRESS, 53, query).startswith("reply ")
    assert lab.probe("tcp", OTHER_RESOLVER_ADDRESS, 53, framed).startswith("reply ")
    assert blocked_answer(lab.probe("udp", RESOLVER_ADDRESS, 53, query)) == "0.0.0.0"

    apply_ruleset(lab, ns, config)
    apply_ruleset(lab, ns, config)  # loading again replaces the table, never fails

    # Banned: dropped, by the banned-prefix rule.
    assert lab.probe("udp", BANNED_ADDRESS, 9999, b"ping", timeout=1.0) == seen["drop_udp"]
    assert banned_drops(lab, ns) == 1
    assert lab.probe("tcp", BANNED_ADDRESS, 9999, b"ping", timeout=1.0) == seen["drop_tcp"]
    assert banned_drops(lab, ns) >= 2  # the SYN, and any retry within the second
    # DNS to the approved resolver passes, over UDP and TCP.
    assert blocked_answer(lab.probe("udp", RESOLVER_ADDRESS, 53, query)) == "0.0.0.0"
    tcp_reply = lab.probe("tcp", RESOLVER_ADDRESS, 53, framed)
    assert tcp_reply.startswith("reply "), tcp_reply
    # DNS and DoT anywhere else are rejected at once, so a stub moves on to the approved one.
    assert lab.probe("udp", OTHER_RESOLVER_ADDRESS, 53, query) == seen["reject_udp"]
    assert lab.probe("tcp", OTHER_RESOLVER_ADDRESS, 53, framed) == "refused"
    assert lab.probe("tcp", OTHER_RESOLVER_ADDRESS, 853, b"x") == "refused"
    # Other traffic to a server that is not banned is untouched.
    assert lab.probe("tcp", RESOLVER_ADDRESS, 443, b"hello") == "reply " + b"hello".hex()


def test_drop_doh_drops_the_bypass_lists_networks(lab: Lab, tmp_path: Path) -> None:
    """With drop_doh, the bypass list's prefix is dropped too; without, it is not."""
    doh_list = dict(DOH_LIST, networks=[{"prefix": "192.0.2.0/24", "evidence": "test"}])
    config = lab_config(tmp_path)
    (tmp_path / "doh.yaml").write_text(yaml.safe_dump(doh_list))
    start_servers(lab, config)
    # UDP port 9 has no listener: reachable means an ICMP unreachable ("refused"), dropped
    # on output means EPERM ("dropped").
    for flag, expected in (("--no-drop-doh", "refused"), ("--drop-doh", "dropped")):
        apply_ruleset(lab, lab.client, config, flag)
        assert lab.probe("udp", OTHER_RESOLVER_ADDRESS, 9, b"x", timeout=1.0) == expected, flag


#: Fetches a URL inside a namespace (the monitor's 127.0.0.1 is its namespace's own).
_FETCH = (
    "import sys, urllib.request\n"
    "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\n"
)


def scrape(lab: Lab, ns: str, url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    body = lab.run(ns, sys.executable, "-c", _FETCH, url).stdout
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def test_live_monitor_counts_what_the_client_sends(lab: Lab, tmp_path: Path) -> None:
    """Events on stdout, in the summary, on /metrics while capturing (the config's metrics
    section: --iface's default) and in the audit store beside the resolver's blocked query."""
    config = lab_config(
        tmp_path, metrics={"listen": "127.0.0.1:0"}, approved_resolvers=[RESOLVER_ADDRESS]
    )
    resolver = start_servers(lab, config)
    monitor = lab.start(
        lab.client,
        sys.executable,
        "-m",
        "dnsfilter",
        "monitor",
        "--iface",
        lab.client_if,
        "--config",
        str(config),
        "--json",
    )
    monitor.wait_for("capturing on")
    announced = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", monitor.output("stderr"))
    assert announced, monitor.output("stderr")
    base = announced.group(1)
    assert lab.run(lab.client, sys.executable, "-c", _FETCH, f"{base}/readyz").stdout == "ready\n"

    query = dns_query("www.banned.example.test")
    assert lab.probe("udp", OTHER_RESOLVER_ADDRESS, 53, query).startswith("reply ")
    assert lab.probe("udp", RESOLVER_ADDRESS, 53, query).startswith("reply ")  # approved
    assert lab.probe("udp", BANNED_ADDRESS, 9999, b"ping").startswith("reply ")
    assert lab.probe("tcp", BANNED_ADDRESS, 9999, b"ping").startswith("reply ")
    hello = client_hello("doh.example.test")
    assert lab.probe("tcp", RESOLVER_ADDRESS, 443, hello).startswith("reply ")
    hello = client_hello("cdn.banned.example.test")
    assert lab.probe("tcp", RESOLVER_ADDRESS, 443, hello).startswith("reply ")
    assert lab.probe("tcp", RESOLVER_ADDRESS, 80, b"x") == "refused"  # ordinary, filtered out

    # The capture thread hands packets over asynchronously: wait for the last one.
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and "cdn.banned.example.test" not in monitor.output("stdout"):
        time.sleep(0.1)
    expected = Counter(
        {
            ("dns_other_resolver", "clients", "apps"): 1,
            ("flow_banned_prefix", "clients", "apps"): 2,
            ("sni_doh_resolver", "clients", "doh"): 1,
            ("sni_blocked", "clients", "apps"): 1,
        }
    )
    # Scraped while the capture runs: every bound series, the events counted exactly.
    samples = scrape(lab, lab.client, f"{base}/metrics")
    events = {
        (dict(labels)["kind"], dict(labels)["network"], dict(labels)["list"]): value
        for (name, labels), value in samples.items()
        if name == "dnsfilter_bypass_events_total"
    }
    assert {key: value for key, value in events.items() if value} == expected
    assert events[("dot_other_resolver", "none", "")] == 0  # bound at start
    assert len(events) == 2 * 8  # networks clients and none; 8 (kind, list) pairs per network
    scraped_packets = samples[("dnsfilter_monitor_packets_total", ())]
    assert scraped_packets >= 7
    assert samples[("dnsfilter_monitor_kernel_drops_total", ())] == 0
    assert samples[("dnsfilter_monitor_packet_errors_total", ())] == 0
    skipped = "dnsfilter_monitor_packets_skipped_total"
    assert {dict(k[1])["reason"]: v for k, v in samples.items() if k[0] == skipped} == {
        "truncated": 0,
        "fragment": 0,
        "malformed": 0,
        "not_ip": 0,
        "not_tcp_udp": 0,
    }
    status, out, err = monitor.stop()
    assert status == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    summary = lines[-1]
    assert summary["type"] == "summary", out
    got = Counter({(r["kind"], r["network"], r["list"]): r["count"] for r in summary["events"]})
    assert got == expected, out
    assert summary["errors"] == 0
    assert summary["kernel_drops"] == 0
    # At least one packet per probe went through the decoder; late ACKs may follow the scrape.
    assert summary["packets"] >= scraped_packets >= 7
    printed = [line for line in lines if line["type"] == "event"]
    assert {e["client"] for e in printed} == {CLIENT_ADDRESS}

    # The resolver's blocked query and the monitor's events, in one store, in one report.
    assert resolver.stop()[0] == 0
    report = lab.run(
        lab.client,
        sys.executable,
        "-m",
        "dnsfilter",
        "report",
        "--config",
        str(config),
        "--kind",
        "all",
        "--format",
        "json",
    )
    rows = [
        (r["list"], r["client"], r["kind"], r["count"], [n["name"] for n in r["top_names"]])
        for r in json.loads(report.stdout)
    ]
    assert rows == [
        ("apps", CLIENT_ADDRESS, "blocked", 1, ["www.banned.example.test"]),
        ("apps", CLIENT_ADDRESS, "dns_other_resolver", 1, ["www.banned.example.test"]),
        ("apps", CLIENT_ADDRESS, "flow_banned_prefix", 2, [f"{BANNED_ADDRESS}:9999"]),
        ("apps", CLIENT_ADDRESS, "sni_blocked", 1, ["cdn.banned.example.test"]),
        ("doh", CLIENT_ADDRESS, "sni_doh_resolver", 1, ["doh.example.test"]),
    ]


def test_monitor_exits_when_its_interface_disappears(lab: Lab, tmp_path: Path) -> None:
    """The capture thread's death is noticed (scapy#3567 would leave it 'running')."""
    config = lab_config(tmp_path, approved_resolvers=[RESOLVER_ADDRESS])
    monitor = lab.start(
        lab.client,
        sys.executable,
        "-m",
        "dnsfilter",
        "monitor",
        "--iface",
        lab.client_if,
        "--config",
        str(config),
    )
    monitor.wait_for("capturing on")
    lab.run(lab.client, "ip", "link", "del", lab.client_if)
    status, _, err = monitor.wait(TIMEOUT)
    assert status == 1, err
    assert f"capture on {lab.client_if} stopped" in err
