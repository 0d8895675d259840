"""`dnsfilter lists export` loaded into real servers, which must block what dnsfilter blocks.

One NSD serves a wildcard zone, so every name under export.test resolves unless something
blocks it. dnsfilter and the server under test both forward to it; each name of the table is
asked of both (A, AAAA, MX) and the answers are compared record for record, so a mode that
comes out wrong (NXDOMAIN for NODATA, a leaking MX) fails as surely as a missed block.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from tests.fakes import bind_udp_tcp
from tests.integration.harness import DnsFilter, demo_list
from tests.nsd import NsdServer

pytestmark = pytest.mark.integration

ALLOWED_A = "192.0.2.10"
SINKHOLE_A = "192.0.2.99"
ZONE = f"""\
$ORIGIN export.test.
$TTL 300
@   IN SOA ns1.export.test. hostmaster.export.test. 1 3600 900 604800 60
@   IN NS  ns1.export.test.
ns1 IN A   192.0.2.1
*   IN A   {ALLOWED_A}
*   IN AAAA 2001:db8::10
*   IN MX  10 mail.export.test.
"""

# Two lists that overlap on purpose: `other` blocks names that `apps` excepts, and an entry
# below another list's entry has its own mode. A one-to-one copy of entries and exceptions
# into most-specific-wins rules would get these wrong.
APPS = demo_list(
    "apps",
    [
        {"domain": "banned.export.test", "evidence": "test"},
        {"domain": "canary.export.test", "evidence": "test", "mode": "nxdomain"},
        {"domain": "quiet.export.test", "evidence": "test", "mode": "nodata"},
        {"domain": "shared.export.test", "evidence": "test"},
    ],
    exceptions=[
        {"domain": "ok.banned.export.test", "evidence": "test"},
        {"domain": "open.shared.export.test", "evidence": "test"},
    ],
)
OTHER = demo_list(
    "other",
    [
        {"domain": "deep.ok.banned.export.test", "evidence": "test"},
        {"domain": "open.shared.export.test", "evidence": "test"},
        {"domain": "nx.banned.export.test", "evidence": "test", "mode": "nxdomain"},
    ],
)
ALLOWLIST = ["allowed.banned.export.test"]

#: (name, blocked by dnsfilter?, blocked by a nodata-mode entry?)
NAMES: list[tuple[str, bool, bool]] = [
    ("www.export.test", False, False),
    ("banned.export.test", True, False),
    ("a.b.banned.export.test", True, False),
    ("notbanned.export.test", False, False),  # shares the string "banned.export.test"
    ("ok.banned.export.test", False, False),  # apps exception
    ("x.ok.banned.export.test", False, False),
    ("deep.ok.banned.export.test", True, False),  # other blocks what apps excepts
    ("y.deep.ok.banned.export.test", True, False),
    ("allowed.banned.export.test", False, False),  # allowlist beats every list
    ("z.allowed.banned.export.test", False, False),
    ("nx.banned.export.test", True, False),  # other's nxdomain below apps's null
    ("q.nx.banned.export.test", True, False),
    ("canary.export.test", True, False),
    ("w.canary.export.test", True, False),
    ("quiet.export.test", True, True),
    ("v.quiet.export.test", True, True),
    ("shared.export.test", True, False),
    ("open.shared.export.test", True, False),  # excepted by apps, blocked by other
    ("u.open.shared.export.test", True, False),
]
QTYPES = ("A", "AAAA", "MX")

Answer = tuple[str, tuple[str, ...]]


def _binary(name: str, package: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        pytest.fail(f"{name} is not installed: apt-get install {package}")
    return found


def _free_port() -> int:
    udp, tcp = bind_udp_tcp("127.0.0.1")
    try:
        return int(udp.getsockname()[1])
    finally:
        udp.close()
        tcp.close()


def ask(port: int, name: str, qtype: str) -> Answer:
    """(rcode, answer records without TTLs) as a client sees them."""
    query = dns.message.make_query(name, qtype, use_edns=False)
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=3.0)
    records = sorted(
        f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}"
        for rrset in reply.answer
        for rd in rrset
    )
    return dns.rcode.to_text(reply.rcode()), tuple(records)


def is_blocked(answer: Answer) -> bool:
    """Anything but an upstream answer: no record carries the zone's wildcard data."""
    rcode, records = answer
    return rcode != "NOERROR" or not any(
        r.endswith((ALLOWED_A, "2001:db8::10", "mail.export.test.")) for r in records
    )


class Daemon:
    """A DNS server subprocess on 127.0.0.1:port, ready once it answers a probe."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                rcode, _ = ask(self.port, "www.export.test", "A")
            except (dns.exception.Timeout, OSError):
                time.sleep(0.05)
                continue
            if rcode == "NOERROR":
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _start(make_argv: Callable[[int], list[str]], tmp_path: Path, name: str) -> Daemon:
    """Start a daemon on a free port, retrying when another process took the port first."""
    problems = []
    for attempt in range(5):
        port = _free_port()
        daemon = Daemon(make_argv(port), port, tmp_path / f"{name}-{attempt}.log")
        if daemon.wait_ready():
            return daemon
        daemon.stop()
        problems.append(daemon.output())
        if "in use" not in problems[-1]:
            break
    pytest.fail(f"{name} did not start:\n{problems[-1]}")


def unbound_conf(tmp_path: Path, port: int, nsd_port: int, extra: str) -> Path:
    conf = tmp_path / f"unbound-{port}.conf"
    conf.write_text(
        "server:\n"
        "\tinterface: 127.0.0.1\n"
        f"\tport: {port}\n"
        "\tdo-ip6: no\n"
        '\tusername: ""\n'
        '\tchroot: ""\n'
        f'\tdirectory: "{tmp_path}"\n'
        f'\tpidfile: "{tmp_path}/unbound-{port}.pid"\n'
        "\tuse-syslog: no\n"
        '\tlogfile: ""\n'
        "\tnum-threads: 1\n"
        "\tso-reuseport: no\n"
        "\taccess-control: 127.0.0.0/8 allow\n"
        "\tdo-not-query-localhost: no\n"
        '\tmodule-config: "respip iterator"\n'
        # unbound answers the RFC 6761 name test. itself (NXDOMAIN) unless told not to.
        '\tlocal-zone: "test." nodefault\n'
        "\tcache-max-ttl: 0\n"
        f"{extra}"
        "remote-control:\n"
        "\tcontrol-enable: no\n"
        # Everything goes to NSD, so nothing ever leaves loopback.
        "forward-zone:\n"
        '\tname: "."\n'
        f"\tforward-addr: 127.0.0.1@{nsd_port}\n"
    )
    return conf


@pytest.fixture(scope="module")
def nsd() -> Iterator[NsdServer]:
    with NsdServer(zones={"export.test": ZONE}) as server:
        yield server


def _config(nsd: NsdServer, mode: str) -> dict[str, Any]:
    policy: dict[str, Any] = {"networks": ["loopback"], "lists": ["apps", "other"], "mode": mode}
    if mode == "sinkhole":
        policy["sinkhole_ipv4"] = SINKHOLE_A  # no IPv6 address: AAAA gets NODATA
    return {
        "server": {"listen": ["127.0.0.1:0"]},
        "metrics": {"enabled": False},
        "upstream": {"servers": [nsd.address], "health_check_interval": 0},
        "cache": {"enabled": False},
        "networks": {"loopback": ["127.0.0.0/8"]},
        "lists": {"apps": {"file": "apps.yaml"}, "other": {"file": "other.yaml"}},
        "allowlist": ALLOWLIST,
        "policies": {"default": policy},
    }


@pytest.fixture(params=["null", "sinkhole"])
def dnsfilter(
    request: pytest.FixtureRequest, tmp_path: Path, nsd: NsdServer
) -> Iterator[DnsFilter]:
    server = DnsFilter(tmp_path, _config(nsd, request.param), {"apps": APPS, "other": OTHER})
    server.start()
    yield server
    assert server.stop() == 0, server.log


def export(tmp_path: Path, fmt: str) -> Path:
    """The CLI's export of the running dnsfilter's config, as an operator would make it."""
    out = tmp_path / f"export.{fmt}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dnsfilter",
            "lists",
            "export",
            "--format",
            fmt,
            "--config",
            str(tmp_path / "dnsfilter.yaml"),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


def dnsfilter_answers(server: DnsFilter) -> dict[tuple[str, str], Answer]:
    answers = {(n, t): ask(server.port, n, t) for n, _, _ in NAMES for t in QTYPES}
    # The table's own expectations: both servers agreeing on a wrong answer must not pass.
    for name, blocked, _ in NAMES:
        assert is_blocked(answers[(name, "A")]) is blocked, (name, answers[(name, "A")])
    return answers


def assert_same(expected: dict[tuple[str, str], Answer], daemon: Daemon, what: str) -> None:
    got = {key: ask(daemon.port, *key) for key in expected}
    wrong = {key: (expected[key], got[key]) for key in expected if expected[key] != got[key]}
    assert not wrong, f"{what} answers differently from dnsfilter (dnsfilter, {what}): {wrong}"


def test_unbound_with_rpz_export_blocks_what_dnsfilter_blocks(
    dnsfilter: DnsFilter, nsd: NsdServer, tmp_path: Path
) -> None:
    unbound = _binary("unbound", "unbound")
    zone = export(tmp_path, "rpz")
    expected = dnsfilter_answers(dnsfilter)
    rpz = f'rpz:\n\tname: "rpz.dnsfilter."\n\tzonefile: "{zone}"\n'

    def argv(port: int) -> list[str]:
        conf = unbound_conf(tmp_path, port, nsd.port, "")
        conf.write_text(conf.read_text() + rpz)
        return [unbound, "-d", "-c", str(conf)]

    daemon = _start(argv, tmp_path, "unbound-rpz")
    try:
        assert_same(expected, daemon, "unbound (rpz)")
    finally:
        daemon.stop()


def test_unbound_with_local_zone_export_blocks_what_dnsfilter_blocks(
    dnsfilter: DnsFilter, nsd: NsdServer, tmp_path: Path
) -> None:
    unbound = _binary("unbound", "unbound")
    zones = export(tmp_path, "unbound")
    expected = dnsfilter_answers(dnsfilter)

    def argv(port: int) -> list[str]:
        conf = unbound_conf(tmp_path, port, nsd.port, f'\tinclude: "{zones}"\n')
        return [unbound, "-d", "-c", str(conf)]

    checked = subprocess.run(
        [_binary("unbound-checkconf", "unbound"), str(argv(_free_port())[-1])],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    daemon = _start(argv, tmp_path, "unbound-local-zone")
    try:
        assert_same(expected, daemon, "unbound (local-zone)")
    finally:
        daemon.stop()


def _dnsmasq_argv(
    dnsmasq: str, nsd: NsdServer, tmp_path: Path, extra: list[str]
) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        return [
            dnsmasq,
            "--no-daemon",
            "--conf-file=/dev/null",
            f"--port={port}",
            "--no-resolv",
            "--no-hosts",
            f"--server=127.0.0.1#{nsd.port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--user=root",
            "--cache-size=0",
            f"--pid-file={tmp_path}/dnsmasq-{port}.pid",
            *extra,
        ]

    return argv


def test_dnsmasq_with_its_export_blocks_what_dnsfilter_blocks(
    dnsfilter: DnsFilter, nsd: NsdServer, tmp_path: Path
) -> None:
    dnsmasq = _binary("dnsmasq", "dnsmasq")
    conf = export(tmp_path, "dnsmasq")
    checked = subprocess.run(
        [dnsmasq, "--test", "-C", str(conf)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    expected = dnsfilter_answers(dnsfilter)
    # dnsmasq has no per-domain NODATA: the export answers those names NXDOMAIN (and says
    # so in its header); everything else must match exactly.
    for name, _, nodata in NAMES:
        if nodata:
            for qtype in QTYPES:
                assert expected[(name, qtype)] == ("NOERROR", ())
                expected[(name, qtype)] = ("NXDOMAIN", ())
    assert "cannot answer nodata" in conf.read_text()
    argv = _dnsmasq_argv(dnsmasq, nsd, tmp_path, [f"--conf-file={conf}"])
    daemon = _start(argv, tmp_path, "dnsmasq")
    try:
        assert_same(expected, daemon, "dnsmasq")
    finally:
        daemon.stop()


def test_hosts_export_blocks_exactly_the_listed_names_in_dnsmasq(
    dnsfilter: DnsFilter, nsd: NsdServer, tmp_path: Path
) -> None:
    dnsmasq = _binary("dnsmasq", "dnsmasq")
    hosts = export(tmp_path, "hosts")
    listed = {line.split()[1] for line in hosts.read_text().splitlines() if line[:1].isdigit()}
    argv = _dnsmasq_argv(dnsmasq, nsd, tmp_path, [f"--addn-hosts={hosts}"])
    daemon = _start(argv, tmp_path, "dnsmasq-hosts")
    try:
        for name, blocked, _ in NAMES:
            rcode, records = ask(daemon.port, name, "A")
            assert rcode == "NOERROR", name
            # A hosts file cannot hold "and everything below": only listed names are caught.
            hosts_blocked = not any(r.endswith(ALLOWED_A) for r in records)
            assert hosts_blocked is (blocked and name in listed), (name, records)
    finally:
        daemon.stop()
    assert {"banned.export.test", "deep.ok.banned.export.test"} <= listed
    assert not listed & {"ok.banned.export.test", "allowed.banned.export.test"}


def test_nftables_export_is_accepted_by_nft(tmp_path: Path) -> None:
    nft = _binary("nft", "nftables")
    config = {
        "networks": {"loopback": ["127.0.0.0/8"]},
        "lists": {"apps": {"file": "apps.yaml"}},
        "policies": {"default": {"networks": ["loopback"], "lists": ["apps"]}},
    }
    apps = demo_list(
        "apps",
        [{"domain": "banned.export.test", "evidence": "test"}],
        networks=[
            {"prefix": "203.0.113.0/25", "evidence": "test"},
            {"prefix": "203.0.113.128/25", "evidence": "test"},
            {"prefix": "2001:db8:bad::/48", "evidence": "test"},
        ],
    )
    (tmp_path / "apps.yaml").write_text(yaml.safe_dump(apps))
    (tmp_path / "dnsfilter.yaml").write_text(yaml.safe_dump(config))
    ruleset = export(tmp_path, "nftables")
    checked = subprocess.run(
        [nft, "-c", "-f", str(ruleset)], capture_output=True, text=True, timeout=30
    )
    if checked.returncode != 0 and "Operation not permitted" in checked.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN (run as root)")
    assert checked.returncode == 0, checked.stderr
    assert "203.0.113.0/24" in ruleset.read_text()  # the two halves merged
