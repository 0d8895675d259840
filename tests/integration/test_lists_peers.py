"""Real public lists and generated ones mean the same in dnsfilter and in real peers.

The lists -- excerpts of hagezi, StevenBlack and the AdGuard DNS filter
(tests/vectors/lists) and generated lists with deep exceptions, per-entry modes,
wildcards, $important, $badfilter and IDNs -- are loaded into `dnsfilter serve`, exported
with `dnsfilter lists export` (RPZ and unbound local-zones), and the exports loaded into
real unbound (both) and real BIND named (RPZ). NSD is the one upstream of them all and
answers every name. Every name of a table built from the lists (each entry, a name below
it, one two labels below, its parent, plus hand-picked names) is asked of each server; the
answers (rcode and answer data) must be the same everywhere.

A generated RPZ list is also loaded as a list into dnsfilter and as a zone into unbound and
BIND directly: dnsfilter must read it as they do (the most specific trigger wins).
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from dnsfilter.lists import export as export_module
from dnsfilter.lists.catalog import load_list
from dnsfilter.lists.export import Export, ExportFormat, render
from tests.integration.harness import DnsFilter, demo_list
from tests.integration.test_exports_unbound import Daemon, _binary, _start, export, unbound_conf
from tests.nsd import NsdServer

pytestmark = pytest.mark.integration

VECTORS = Path(__file__).parent.parent / "vectors" / "lists"
ALLOWED_A = "192.0.2.10"

#: The real excerpts: list name -> (file, format).
REAL = {
    "hagezi_adblock": ("hagezi-doh-vpn-proxy-bypass.adblock.txt", "adblock"),
    "hagezi_domains": ("hagezi-doh-vpn-proxy-bypass.domains.txt", "plain"),
    "hagezi_hosts": ("hagezi-doh-vpn-proxy-bypass.hosts.txt", "hosts"),
    "stevenblack": ("stevenblack-hosts.txt", "hosts"),
}

# The AdGuard DNS filter excerpt with the blocks its exceptions lift appended (the excerpt
# holds the exceptions but not, for most, the blocks): real exceptions, often two or more
# labels below their block, with the syntax dnsfilter widens (|x^|, patterns).
ADGUARD_BLOCKS = [
    "||metric.gstatic.com^",
    "||notion.so^",
    "||doubleclick.net^",
    "||exponea.com^",
    "||evergage.com^",
    "||trbo.com^",
    "||exacttarget.com^",
    "||herz-fuer-tiere.de^",
    "||skyeng.ru^",
    "||2o7.net^",
    "||edgekey.net^",
    "||statcounter.com^",
    "||adsterra.com^",
    "||crazyegg.com^",
    "||amplitude.com^",
    "||tradedoubler.com^",
    "||daraz.pk^",
    "||mmstat.com^",
    "||googleadservices.com^",
]

# Generated: an adblock list of every precedence and wildcard case.
PEER_ADBLOCK = """\
! generated for test_lists_peers
||ads.peer.test^
@@||ok.x.ads.peer.test^
||imp.ok.x.ads.peer.test^$important
@@||free.imp.ok.x.ads.peer.test^$important
||*.wild.peer.test^
@@||*.ok.a.wild.peer.test^
||gone.peer.test^
||gone.peer.test^$badfilter
||straße.peer.test^
@@||open.b.c.straße.peer.test^
@@|exact.ads.peer.test^|
@@||cdn*.k.ads.peer.test^
"""
PEER_HOSTS = "0.0.0.0 *.hostwild.peer.test\n0.0.0.0 plainhost.peer.test\n"
PEER_PLAIN = "*.plainwild.peer.test\nbücher.peer.test\n"
PEER_YAML = demo_list(
    "peer_yaml",
    [
        {"domain": "banned.peer.test", "evidence": "test"},
        {"domain": "nx.x.y.banned.peer.test", "evidence": "test", "mode": "nxdomain"},
        {"domain": "quiet.z.banned.peer.test", "evidence": "test", "mode": "nodata"},
        {"domain": "faß.peer.test", "evidence": "test"},
        {"domain": "deep.ok.a.banned.peer.test", "evidence": "test", "mode": "nxdomain"},
    ],
    exceptions=[
        {"domain": "ok.a.banned.peer.test", "evidence": "test"},
        {"domain": "ok.b.c.banned.peer.test", "evidence": "test"},
        {"domain": "münchen.q.banned.peer.test", "evidence": "test"},
    ],
)
# Generated RPZ input: what "most specific wins" means in unbound and BIND. Triggers come
# in pairs (x and *.x), as lists publish them: dnsfilter reads a lone x as x and below.
# No rule sits two labels below another: unbound's own wildcard matching stops at the
# empty non-terminal such a rule makes (see test_rpz_export_fills_empty_non_terminals).
PEER_RPZ = """\
$ORIGIN rpz.local.
$TTL 60
@ SOA localhost. hostmaster.localhost. 1 3600 600 86400 60
@ NS localhost.
*.mixed.rpzin.test CNAME rpz-passthru.
bad.mixed.rpzin.test CNAME .
*.bad.mixed.rpzin.test CNAME .
block.rpzin.test CNAME .
*.block.rpzin.test CNAME .
ok.block.rpzin.test CNAME rpz-passthru.
*.ok.block.rpzin.test CNAME rpz-passthru.
nx.ok.block.rpzin.test CNAME .
*.nx.ok.block.rpzin.test CNAME .
null.rpzin.test A 0.0.0.0
*.null.rpzin.test A 0.0.0.0
quiet.rpzin.test CNAME *.
*.quiet.rpzin.test CNAME *.
"""

#: Names whose answers the table itself must hold (both servers agreeing on a wrong
#: answer must not pass): name -> blocked?
EXPECTED = {
    "ads.peer.test": True,
    "ok.x.ads.peer.test": False,  # exception two labels below its block
    "y.ok.x.ads.peer.test": False,
    "x.ads.peer.test": True,  # the empty non-terminal of the RPZ export
    "z.x.ads.peer.test": True,
    "imp.ok.x.ads.peer.test": True,  # $important beats the exception above it
    "free.imp.ok.x.ads.peer.test": False,  # an important exception beats that
    "wild.peer.test": True,  # ||*.wild^ reads as wild and below
    "q.a.wild.peer.test": True,
    "ok.a.wild.peer.test": False,
    "gone.peer.test": False,  # removed by $badfilter
    "xn--strae-oqa.peer.test": True,  # straße, IDNA 2008
    "strasse.peer.test": False,  # what IDNA 2003 would have made of it
    "open.b.c.xn--strae-oqa.peer.test": False,
    "c.xn--strae-oqa.peer.test": True,
    "exact.ads.peer.test": False,  # @@|x^| read as @@||x^ (widened)
    "k.ads.peer.test": False,  # @@||cdn*.k^ read as @@||k^ (widened)
    "hostwild.peer.test": True,
    "a.hostwild.peer.test": True,
    "plainwild.peer.test": True,
    "xn--bcher-kva.peer.test": True,
    "banned.peer.test": True,
    "ok.a.banned.peer.test": False,
    "deep.ok.a.banned.peer.test": False,  # the list's own exception above lifts it
    "a.banned.peer.test": True,
    "x.a.banned.peer.test": True,
    "ok.b.c.banned.peer.test": False,
    "x.c.banned.peer.test": True,
    "nx.x.y.banned.peer.test": True,
    "y.banned.peer.test": True,
    "quiet.z.banned.peer.test": True,
    "xn--fa-hia.peer.test": True,
    "fass.peer.test": False,
    "xn--mnchen-3ya.q.banned.peer.test": False,
    # the AdGuard DNS filter's exceptions, read so that they never block more
    "a5a6380f-dnsotls-ds.metric.gstatic.com": False,
    "metric.gstatic.com": False,
    "affiliate.notion.so": False,
    "www.notion.so": True,
    # AdGuard excepts these, but StevenBlack blocks doubleclick.net too: an exception
    # lifts only its own list's entries.
    "www3.doubleclick.net": True,
    "5471782.fls.doubleclick.net": True,
    "log.mmstat.com": False,
    "x.log.mmstat.com": False,
    "y.mmstat.com": True,
}
# RPZ input: name -> answer class in unbound/BIND ("" resolved, else the rcode or data).
EXPECTED_RPZ = {
    "mixed.rpzin.test": "",
    "good.mixed.rpzin.test": "",
    "bad.mixed.rpzin.test": "NXDOMAIN",  # most specific wins
    "x.bad.mixed.rpzin.test": "NXDOMAIN",
    "block.rpzin.test": "NXDOMAIN",
    "ok.block.rpzin.test": "",
    "nx.ok.block.rpzin.test": "NXDOMAIN",
    "y.nx.ok.block.rpzin.test": "NXDOMAIN",
    "null.rpzin.test": "0.0.0.0",
    "quiet.rpzin.test": "NODATA",
}
_SPECIAL_TLDS = {"onion", "invalid", "localhost", "local", "arpa", "example", "internal", "lan"}


def _tld_zone(tld: str) -> str:
    return (
        f"$ORIGIN {tld}.\n$TTL 300\n"
        f"@ IN SOA ns1.{tld}. hostmaster.{tld}. 1 3600 900 604800 60\n"
        f"@ IN NS ns1.{tld}.\nns1 IN A 192.0.2.1\n"
        f"* IN A {ALLOWED_A}\n* IN AAAA 2001:db8::10\n"
    )


def _lists(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Every list of the comparison, written to tmp_path: name -> (file, format)."""
    out = {}
    for name, (filename, fmt) in REAL.items():
        target = tmp_path / filename
        shutil.copy(VECTORS / filename, target)
        out[name] = (target, fmt)
    adguard = tmp_path / "adguard.txt"
    adguard.write_text(
        (VECTORS / "adguard-dns-filter.txt").read_text()
        + "! appended for the test: blocks the exceptions above lift\n"
        + "\n".join(ADGUARD_BLOCKS)
        + "\n"
    )
    out["adguard"] = (adguard, "adblock")
    for name, text, fmt in (
        ("peer_adblock", PEER_ADBLOCK, "adblock"),
        ("peer_hosts", PEER_HOSTS, "hosts"),
        ("peer_plain", PEER_PLAIN, "plain"),
    ):
        path = tmp_path / f"{name}.txt"
        path.write_text(text)
        out[name] = (path, fmt)
    path = tmp_path / "peer_yaml.yaml"
    path.write_text(yaml.safe_dump(PEER_YAML, allow_unicode=True))
    out["peer_yaml"] = (path, "yaml")
    return out


def name_table(lists: dict[str, tuple[Path, str]], extra: Iterable[str] = ()) -> list[str]:
    """Each entry and exception, a name below it, one two labels below and its parent."""
    names: set[str] = set(extra)
    for name, (path, fmt) in lists.items():
        blocklist = load_list(path, name, fmt)
        for entry in (*blocklist.domains, *blocklist.exceptions):
            domain = entry.domain
            names.update((domain, f"x.{domain}", f"a.b.{domain}"))
            if domain.count(".") >= 2:
                names.add(domain.partition(".")[2])
    return sorted(n for n in names if n.rpartition(".")[2] not in _SPECIAL_TLDS)


Answer = tuple[str, tuple[str, ...]]


def ask_many(port: int, names: Sequence[str], qtype: str = "A") -> dict[str, Answer]:
    """(rcode, answer data) of every name, many queries in flight at once over UDP."""
    pending = {name: 0 for name in names}
    answers: dict[str, Answer] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        sock.settimeout(0.5)
        for _attempt in range(6):
            todo = [n for n in pending if n not in answers]
            if not todo:
                break
            for start in range(0, len(todo), 64):
                window: dict[int, str] = {}
                for name in todo[start : start + 64]:
                    query = dns.message.make_query(name, qtype, use_edns=False)
                    query.id = secrets.randbits(16)
                    while query.id in window:
                        query.id = secrets.randbits(16)
                    window[query.id] = name
                    sock.send(query.to_wire())
                deadline = time.monotonic() + 3.0
                while window and time.monotonic() < deadline:
                    try:
                        wire = sock.recv(65535)
                    except TimeoutError:
                        continue
                    reply = dns.message.from_wire(wire)
                    name = window.pop(reply.id, "")
                    if not name or reply.flags & dns.flags.TC:
                        continue
                    data = sorted(
                        f"{dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}"
                        for rrset in reply.answer
                        for rd in rrset
                    )
                    answers[name] = (dns.rcode.to_text(reply.rcode()), tuple(data))
    missing = [n for n in names if n not in answers]
    assert not missing, f"no answer from 127.0.0.1:{port} for {len(missing)} names: {missing[:5]}"
    return answers


def is_blocked(answer: Answer) -> bool:
    rcode, data = answer
    return rcode != "NOERROR" or not any(d.endswith(ALLOWED_A) for d in data)


def _named_argv(
    tmp_path: Path, nsd_port: int, zone: Path, origin: str
) -> Callable[[int], list[str]]:
    named = _binary("named", "bind9")

    def argv(port: int) -> list[str]:
        work = tmp_path / f"named-{port}"
        work.mkdir(exist_ok=True)
        conf = work / "named.conf"
        conf.write_text(
            "options {\n"
            f'\tdirectory "{work}";\n'
            f'\tpid-file "{work}/named.pid";\n'
            f'\tsession-keyfile "{work}/session.key";\n'
            f'\tmanaged-keys-directory "{work}";\n'
            f"\tlisten-on port {port} {{ 127.0.0.1; }};\n"
            "\tlisten-on-v6 { none; };\n"
            "\trecursion yes;\n"
            "\tallow-query { 127.0.0.0/8; };\n"
            f"\tforwarders {{ 127.0.0.1 port {nsd_port}; }};\n"
            "\tforward only;\n"
            "\tdnssec-validation no;\n"
            "\tmax-cache-ttl 1;\n"
            "\tmax-ncache-ttl 1;\n"
            "\tminimal-responses yes;\n"
            f'\tresponse-policy {{ zone "{origin}"; }} qname-wait-recurse no;\n'
            "};\n"
            "controls { };\n"
            f'zone "{origin}" {{ type primary; file "{zone}"; }};\n'
        )
        checkconf = shutil.which("named-checkconf") or "/usr/bin/named-checkconf"
        checked = subprocess.run(
            [checkconf, str(conf)], capture_output=True, text=True, timeout=30, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        return [named, "-g", "-n", "1", "-c", str(conf)]

    return argv


def _unbound_argv(tmp_path: Path, nsd_port: int, extra: str) -> Callable[[int], list[str]]:
    unbound = _binary("unbound", "unbound")

    def argv(port: int) -> list[str]:
        return [unbound, "-d", "-c", str(unbound_conf(tmp_path, port, nsd_port, extra))]

    return argv


def _rpz_clause(zone: Path, origin: str) -> str:
    return f'rpz:\n\tname: "{origin}."\n\tzonefile: "{zone}"\n'


@pytest.fixture(scope="module")
def tld_nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdServer]:
    lists = _lists(tmp_path_factory.mktemp("lists"))
    tlds = {n.rpartition(".")[2] for n in [*name_table(lists), *EXPECTED, *EXPECTED_RPZ]}
    with NsdServer(zones={tld: _tld_zone(tld) for tld in sorted(tlds)}) as server:
        yield server


def _disagreements(
    expected: dict[str, Answer], daemon: Daemon, names: Sequence[str]
) -> dict[str, tuple[Answer, Answer]]:
    got = ask_many(daemon.port, names)
    return {n: (expected[n], got[n]) for n in names if expected[n] != got[n]}


def _config(lists: dict[str, tuple[Path, str]], nsd: NsdServer) -> dict[str, Any]:
    return {
        "server": {"listen": ["127.0.0.1:0"]},
        "metrics": {"enabled": False},
        "upstream": {"servers": [nsd.address], "health_check_interval": 0},
        "cache": {"enabled": False},
        "networks": {"loopback": ["127.0.0.0/8"]},
        "lists": {name: {"file": str(path), "format": fmt} for name, (path, fmt) in lists.items()},
        "policies": {"default": {"networks": ["loopback"], "lists": list(lists), "mode": "null"}},
    }


def test_real_and_generated_lists_mean_the_same_in_unbound_and_bind(
    tld_nsd: NsdServer, tmp_path: Path
) -> None:
    lists = _lists(tmp_path)
    names = name_table(lists, EXPECTED)
    server = DnsFilter(tmp_path, _config(lists, tld_nsd))
    server.start()
    try:
        expected = ask_many(server.port, names)
    finally:
        assert server.stop() == 0, server.log
    wrong = {
        n: expected[n] for n, blocked in EXPECTED.items() if is_blocked(expected[n]) != blocked
    }
    assert not wrong, f"dnsfilter itself answers these against the table: {wrong}"
    blocked = sum(1 for n in names if is_blocked(expected[n]))
    assert 0.2 * len(names) < blocked < 0.9 * len(names), (blocked, len(names))

    rpz = export(tmp_path, "rpz")
    local_zones = export(tmp_path, "unbound")
    peers: dict[str, Callable[[int], list[str]]] = {
        "unbound (rpz)": _unbound_argv(tmp_path, tld_nsd.port, _rpz_clause(rpz, "rpz.dnsfilter")),
        "unbound (local-zone)": _unbound_argv(
            tmp_path, tld_nsd.port, f'\tinclude: "{local_zones}"\n'
        ),
        "named (rpz)": _named_argv(tmp_path, tld_nsd.port, rpz, "rpz.dnsfilter"),
    }
    report = {}
    for what, argv in peers.items():
        daemon = _start(argv, tmp_path, what.split()[0])
        try:
            report[what] = _disagreements(expected, daemon, names)
        finally:
            daemon.stop()
    sample = {what: dict(list(wrong.items())[:10]) for what, wrong in report.items() if wrong}
    counts = {what: len(wrong) for what, wrong in report.items()}
    assert not sample, f"{len(names)} names; disagreements {counts}: {sample}"


def test_an_rpz_list_means_in_dnsfilter_what_it_means_in_unbound_and_bind(
    tld_nsd: NsdServer, tmp_path: Path
) -> None:
    zone = tmp_path / "rpzin.rpz"
    zone.write_text(PEER_RPZ)
    origin = "rpzin.test"
    names = sorted(
        {*EXPECTED_RPZ, *(f"{p}.{origin}" for p in ("x.block", "x.ok.block", "a.quiet", "z.null"))}
    )
    server = DnsFilter(tmp_path, _config({"rpzin": (zone, "rpz")}, tld_nsd))
    server.start()
    try:
        expected = ask_many(server.port, names)
    finally:
        assert server.stop() == 0, server.log
    for name, want in EXPECTED_RPZ.items():
        rcode, data = expected[name]
        got = (
            ""
            if not is_blocked(expected[name])
            else rcode
            if rcode != "NOERROR"
            else "NODATA"
            if not data
            else data[0].split()[-1]
        )
        assert got == want, (name, expected[name])
    for what, argv in {
        "unbound": _unbound_argv(tmp_path, tld_nsd.port, _rpz_clause(zone, "rpz.local")),
        "named": _named_argv(tmp_path, tld_nsd.port, zone, "rpz.local"),
    }.items():
        daemon = _start(argv, tmp_path, f"{what}-rpzin")
        try:
            wrong = _disagreements(expected, daemon, names)
        finally:
            daemon.stop()
        assert not wrong, f"{what} reads the zone differently: {wrong}"


def test_rpz_export_without_filled_empty_non_terminals_leaks(
    tld_nsd: NsdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why render_rpz fills empty non-terminals: without them named (any rule two labels
    below its cover) and unbound (three labels below) resolve names dnsfilter blocks."""
    all_lists = _lists(tmp_path)
    lists = [load_list(*all_lists[name]) for name in ("peer_adblock", "peer_yaml")]
    filled = tmp_path / "filled.rpz"
    filled.write_text(render(ExportFormat.RPZ, Export(tuple(lists))))
    monkeypatch.setattr(export_module, "_with_filled_empty_non_terminals", list)
    stripped = tmp_path / "stripped.rpz"
    stripped.write_text(render(ExportFormat.RPZ, Export(tuple(lists))))
    assert len(stripped.read_text()) < len(filled.read_text())
    leaks = {"named": "x.ads.peer.test", "unbound": "x.c.banned.peer.test"}
    for zone, leaking in ((stripped, True), (filled, False)):
        for what, argv in {
            "unbound": _unbound_argv(tmp_path, tld_nsd.port, _rpz_clause(zone, "rpz.dnsfilter")),
            "named": _named_argv(tmp_path, tld_nsd.port, zone, "rpz.dnsfilter"),
        }.items():
            daemon = _start(argv, tmp_path, f"{what}-ent")
            try:
                answers = ask_many(daemon.port, [leaks[what], "ads.peer.test"])
            finally:
                daemon.stop()
            assert is_blocked(answers["ads.peer.test"]), what
            assert is_blocked(answers[leaks[what]]) is not leaking, (what, zone.name, answers)
