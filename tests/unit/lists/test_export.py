"""dnsfilter.lists.export: the rules every format is written from, each format's exact text,
and the command line."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfilter import __version__
from dnsfilter.cli import main
from dnsfilter.config import parse_config
from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.datapath.policy import DomainTable
from dnsfilter.errors import ConfigError
from dnsfilter.lists.export import (
    Export,
    ExportFormat,
    NameRule,
    blocked_names,
    export_from_config,
    name_rules,
    nft_set_name,
    render,
)
from dnsfilter.lists.model import BlockList, DomainEntry, NetworkEntry
from dnsfilter.names import suffixes

NULL, NXDOMAIN, NODATA = BlockMode.NULL, BlockMode.NXDOMAIN, BlockMode.NODATA
GENERATED = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)


def entry(name: str, line: int = 1, mode: BlockMode | None = None) -> DomainEntry:
    return DomainEntry(name, line, mode=mode)


APPS = BlockList(
    "apps",
    "apps.yaml",
    domains=(
        entry("banned.test", 3),
        entry("canary.test", 4, NXDOMAIN),
        entry("quiet.test", 5, NODATA),
    ),
    exceptions=(entry("ok.banned.test", 7),),
    networks=(
        NetworkEntry(ipaddress.ip_network("192.0.2.0/25"), 9),
        NetworkEntry(ipaddress.ip_network("192.0.2.128/25"), 10),
        NetworkEntry(ipaddress.ip_network("2001:db8::/32"), 11),
    ),
)
# Blocks a name below one of apps's exceptions: apps's exception must not exempt it.
OTHER = BlockList("other", "other.yaml", domains=(entry("deep.ok.banned.test", 3),))
EXPORT = Export((APPS, OTHER), ("fine.banned.test",), generated=GENERATED, source="dnsfilter.yaml")


def header(fmt: str, prefix: str = "#", domains: bool = True) -> str:
    lines = [
        f"dnsfilter {__version__}: `dnsfilter lists export --format {fmt}`",
        "generated 2026-11-27T12:00:00Z from dnsfilter.yaml",
        "lists:",
        "  apps: 3 domains, 1 exceptions, 3 networks (apps.yaml)",
        "  other: 1 domains, 0 exceptions, 0 networks (other.yaml)",
    ]
    if domains:
        lines += ["allowlist: 1 names", "blocking mode: null (entries may override it), ttl 60"]
    return "".join(f"{prefix} {line}\n" for line in lines)


# ---------------------------------------------------------------------------------------
# The rules


def test_rules_follow_dnsfilter_across_lists_exceptions_and_the_allowlist() -> None:
    assert name_rules([APPS, OTHER], ["fine.banned.test"]) == [
        NameRule("banned.test", NULL, "apps"),
        NameRule("fine.banned.test", None),
        NameRule("ok.banned.test", None),
        NameRule("deep.ok.banned.test", NULL, "other"),
        NameRule("canary.test", NXDOMAIN, "apps"),
        NameRule("quiet.test", NODATA, "apps"),
    ]


@pytest.mark.parametrize(
    ("lists", "allowlist", "expected"),
    [
        pytest.param(
            [BlockList("a", "a", domains=(entry("x.test"), entry("y.x.test")))],
            [],
            [NameRule("x.test", NULL, "a")],
            id="child-of-same-mode-is-redundant",
        ),
        pytest.param(
            [BlockList("a", "a", domains=(entry("x.test"), entry("y.x.test", mode=NXDOMAIN)))],
            [],
            [NameRule("x.test", NULL, "a"), NameRule("y.x.test", NXDOMAIN, "a")],
            id="child-with-own-mode-is-kept",
        ),
        pytest.param(
            [BlockList("a", "a", domains=(entry("x.test"),))],
            ["elsewhere.test", "z.elsewhere.test"],
            [NameRule("x.test", NULL, "a")],
            id="allowlist-outside-every-entry-needs-no-rule",
        ),
        pytest.param(
            [
                BlockList("a", "a", domains=(entry("x.test"),), exceptions=(entry("ok.x.test"),)),
                BlockList("b", "b", domains=(entry("x.test", mode=NXDOMAIN),)),
            ],
            [],
            # Lowest list index wins at the same name; b still blocks what a excepts.
            [NameRule("x.test", NULL, "a"), NameRule("ok.x.test", NXDOMAIN, "b")],
            id="one-lists-exception-is-another-lists-block",
        ),
        pytest.param(
            [
                BlockList(
                    "a", "a", domains=(entry("in.ok.x.test"),), exceptions=(entry("ok.x.test"),)
                )
            ],
            [],
            # An exception covers the entries below it too (DomainTable.match), so nothing blocks.
            [],
            id="entry-below-own-exception-never-blocks",
        ),
        pytest.param(
            [BlockList("a", "a", domains=(entry("x.test"),))],
            ["x.test"],
            [],
            id="allowlisted-entry",
        ),
    ],
)
def test_rule_cases(lists: list[BlockList], allowlist: list[str], expected: list[NameRule]) -> None:
    assert name_rules(lists, allowlist) == expected


_LABELS = st.sampled_from(["a", "b", "c"])
_NAMES = st.lists(_LABELS, min_size=1, max_size=4).map(lambda labels: ".".join([*labels, "t"]))
_MODES = st.sampled_from([None, NULL, NXDOMAIN, NODATA])


@st.composite
def _blocklists(draw: Any, index: int) -> BlockList:
    domains = draw(st.dictionaries(_NAMES, _MODES, max_size=6))
    exceptions = draw(st.lists(_NAMES, max_size=3, unique=True))
    # Every precedence a list can have: adblock's (with $important) or RPZ's.
    important = draw(st.sets(st.sampled_from(sorted(domains)))) if domains else set()
    important_exceptions = draw(st.sets(st.sampled_from(exceptions))) if exceptions else set()
    return BlockList(
        f"l{index}",
        f"l{index}.yaml",
        domains=tuple(DomainEntry(n, 1, mode=m) for n, m in domains.items()),
        exceptions=tuple(DomainEntry(n, 1) for n in exceptions),
        important_domains=frozenset(important),
        important_exceptions=frozenset(important_exceptions),
        specific_wins=draw(st.booleans()),
    )


def _rpz_actions(zone: str) -> dict[str, str]:
    """owner -> its records' data, of the zone's policy records."""
    actions: dict[str, list[str]] = {}
    for line in zone.splitlines():
        if not line or line[0] in ";$@":
            continue
        owner, rtype, rdata = line.split()
        actions.setdefault(owner, []).append(f"{rtype} {rdata}")
    # A passthru answers as no rule does: resolved normally.
    return {
        owner: "" if data == ["CNAME rpz-passthru."] else " ".join(sorted(data))
        for owner, data in actions.items()
    }


def _rpz_lookup(zone: dict[str, str], qname: str) -> str:
    """The action RFC 4592 gives qname: its own records, else the wildcard at its closest
    encloser -- the deepest ancestor that exists, as an owner or as an empty non-terminal."""
    if qname in zone:
        return zone[qname]
    exists = {s for owner in zone for s in suffixes(owner.removeprefix("*."))}
    for encloser in suffixes(qname)[1:]:
        if encloser in exists:
            return zone.get(f"*.{encloser}", "")
    return ""


def _rpz_action_of(mode: BlockMode | None) -> str:
    """What render_rpz writes for a mode (the default Export: no sinkhole addresses)."""
    if mode is None:
        return ""
    return {NULL: "A 0.0.0.0 AAAA ::", NXDOMAIN: "CNAME .", NODATA: "CNAME *."}[mode]


def _most_specific_wins(rules: list[NameRule], qname: str) -> BlockMode | None:
    by_name = {rule.name: rule.mode for rule in rules}
    for name in suffixes(qname):
        if name in by_name:
            return by_name[name]
    return None


@settings(max_examples=500, database=None, deadline=None)
@given(
    lists=st.integers(1, 3).flatmap(lambda n: st.tuples(*(_blocklists(i) for i in range(n)))),
    allowlist=st.lists(_NAMES, max_size=2),
    mode=st.sampled_from([NULL, NXDOMAIN]),
    queries=st.lists(_NAMES, min_size=1, max_size=20),
)
def test_most_specific_wins_over_the_rules_answers_every_name_as_dnsfilter(
    lists: tuple[BlockList, ...], allowlist: list[str], mode: BlockMode, queries: list[str]
) -> None:
    """The property RPZ, unbound and dnsmasq exports rely on, for any lists at all."""
    rules = name_rules(lists, allowlist, mode)
    table = DomainTable(lists, allowlist)
    mask = table.mask(b.name for b in lists)
    mentioned = {e.domain for b in lists for e in (*b.domains, *b.exceptions)} | set(allowlist)
    for qname in [*queries, *mentioned]:
        hit = table.match(qname, mask)
        expected = None
        if hit is not None:
            expected = table.override(*hit) or mode
        assert _most_specific_wins(rules, qname) is expected, (qname, rules)
    # And no rule is redundant: each one changes what its parent rule would answer.
    for rule in rules:
        parent = (
            _most_specific_wins(rules, rule.name.partition(".")[2]) if "." in rule.name else None
        )
        assert rule.mode is not parent, rule
    # The RPZ zone itself, read as unbound reads it (RFC 4592 wildcards), agrees too.
    export = Export(lists, tuple(allowlist), mode=mode, generated=GENERATED)
    zone = _rpz_actions(render(ExportFormat.RPZ, export))
    for qname in [*queries, *mentioned, *(f"x.{n}" for n in mentioned)]:
        hit = table.match(qname, mask)
        expected = None if hit is None else table.override(*hit) or mode
        assert _rpz_lookup(zone, qname) == _rpz_action_of(expected), qname
    # hosts files get exactly the mentioned names that are blocked.
    blocked = {r.name for r in blocked_names(lists, allowlist, mode)}
    assert blocked == {n for n in mentioned if table.match(n, mask) is not None}


# ---------------------------------------------------------------------------------------
# Each format, exactly


def test_rpz() -> None:
    assert render(ExportFormat.RPZ, EXPORT) == header("rpz", ";") + (
        "; Response Policy Zone: `name` and `*.name` carry the same action, so a rule covers\n"
        "; the name and everything below it; rpz-passthru marks exceptions and the allowlist.\n"
        "; Load it with unbound (`rpz:` with name and zonefile) or BIND (response-policy).\n"
        "$TTL 60\n"
        "@ IN SOA localhost. hostmaster.localhost. 1795780800 3600 600 86400 60\n"
        "@ IN NS localhost.\n"
        "banned.test A 0.0.0.0\n"
        "banned.test AAAA ::\n"
        "*.banned.test A 0.0.0.0\n"
        "*.banned.test AAAA ::\n"
        "fine.banned.test CNAME rpz-passthru.\n"
        "*.fine.banned.test CNAME rpz-passthru.\n"
        "ok.banned.test CNAME rpz-passthru.\n"
        "*.ok.banned.test CNAME rpz-passthru.\n"
        "deep.ok.banned.test A 0.0.0.0\n"
        "deep.ok.banned.test AAAA ::\n"
        "*.deep.ok.banned.test A 0.0.0.0\n"
        "*.deep.ok.banned.test AAAA ::\n"
        "canary.test CNAME .\n"
        "*.canary.test CNAME .\n"
        "quiet.test CNAME *.\n"
        "*.quiet.test CNAME *.\n"
    )


def test_unbound() -> None:
    assert render(ExportFormat.UNBOUND, EXPORT) == header("unbound") + (
        "# unbound local-zones: a zone covers the name and everything below it, the most\n"
        "# specific zone wins; transparent zones are exceptions and the allowlist.\n"
        "# Include it from unbound.conf (`include: FILE`). always_* zones answer with\n"
        "# unbound's own TTL, not the policy's ttl.\n"
        "server:\n"
        '\tlocal-zone: "banned.test." always_null\n'
        '\tlocal-zone: "fine.banned.test." transparent\n'
        '\tlocal-zone: "ok.banned.test." transparent\n'
        '\tlocal-zone: "deep.ok.banned.test." always_null\n'
        '\tlocal-zone: "canary.test." always_nxdomain\n'
        '\tlocal-zone: "quiet.test." always_nodata\n'
    )


def test_dnsmasq() -> None:
    assert render(ExportFormat.DNSMASQ, EXPORT) == header("dnsmasq") + (
        "# dnsmasq: /name/ covers the name and everything below it; the most specific wins.\n"
        "# server=/name/# sends exceptions and the allowlist to the usual upstream servers.\n"
        "# Blocked answers carry dnsmasq's local-ttl, not the policy's ttl.\n"
        "# dnsmasq cannot answer nodata for a domain: those entries answer NXDOMAIN.\n"
        "address=/banned.test/0.0.0.0\n"
        "address=/banned.test/::\n"
        "local=/banned.test/\n"
        "server=/fine.banned.test/#\n"
        "server=/ok.banned.test/#\n"
        "address=/deep.ok.banned.test/0.0.0.0\n"
        "address=/deep.ok.banned.test/::\n"
        "local=/deep.ok.banned.test/\n"
        "address=/canary.test/\n"
        "address=/quiet.test/\n"
    )


def test_hosts() -> None:
    assert render(ExportFormat.HOSTS, EXPORT) == header("hosts") + (
        "# hosts files match exact names only: names BELOW these entries are NOT blocked\n"
        "# (a.tiktok.com is not covered by tiktok.com). Use rpz, unbound or dnsmasq for that.\n"
        "# Every blocking mode is written as an address (NXDOMAIN cannot be expressed).\n"
        "0.0.0.0 banned.test\n"
        "0.0.0.0 deep.ok.banned.test\n"
        "0.0.0.0 canary.test\n"
        "0.0.0.0 quiet.test\n"
    )


def test_nftables() -> None:
    empty = "\t\ttype ipv{v}_addr\n\t\tflags interval\n\t\tauto-merge\n"
    assert render(ExportFormat.NFTABLES, EXPORT) == "#!/usr/sbin/nft -f\n" + header(
        "nftables", domains=False
    ) + (
        "# nftables sets of the lists' networks: `nft -f FILE`. Reloading replaces the sets'\n"
        "# elements and leaves the rest of table inet dnsfilter alone.\n"
        "table inet dnsfilter {\n"
        "\tset dnsfilter_apps_v4 {\n" + empty.format(v=4) + "\t}\n"
        "\tset dnsfilter_apps_v6 {\n" + empty.format(v=6) + "\t}\n"
        "\tset dnsfilter_other_v4 {\n" + empty.format(v=4) + "\t}\n"
        "\tset dnsfilter_other_v6 {\n" + empty.format(v=6) + "\t}\n"
        "}\n"
        "flush set inet dnsfilter dnsfilter_apps_v4\n"
        "flush set inet dnsfilter dnsfilter_apps_v6\n"
        "flush set inet dnsfilter dnsfilter_other_v4\n"
        "flush set inet dnsfilter dnsfilter_other_v6\n"
        "table inet dnsfilter {\n"
        "\t# apps: 1 IPv4 prefixes (merged)\n"
        "\tset dnsfilter_apps_v4 {\n" + empty.format(v=4) + "\t\telements = {\n"
        "\t\t\t192.0.2.0/24,\n"
        "\t\t}\n"
        "\t}\n"
        "\t# apps: 1 IPv6 prefixes (merged)\n"
        "\tset dnsfilter_apps_v6 {\n" + empty.format(v=6) + "\t\telements = {\n"
        "\t\t\t2001:db8::/32,\n"
        "\t\t}\n"
        "\t}\n"
        "\t# other: 0 IPv4 prefixes (merged)\n"
        "\tset dnsfilter_other_v4 {\n" + empty.format(v=4) + "\t}\n"
        "\t# other: 0 IPv6 prefixes (merged)\n"
        "\tset dnsfilter_other_v6 {\n" + empty.format(v=6) + "\t}\n"
        "}\n"
    )


def test_nft_set_names_only_use_characters_nft_accepts() -> None:
    assert nft_set_name("tik-tok.cn", 6) == "dnsfilter_tik_tok_cn_v6"


def _body(fmt: ExportFormat, export: Export) -> list[str]:
    return [line for line in render(fmt, export).splitlines() if not line.startswith(("#", ";"))]


def test_sinkhole_mode_uses_the_policy_addresses_and_nodata_for_a_missing_family() -> None:
    export = Export(
        (BlockList("a", "a", domains=(entry("x.test"),)),),
        mode=BlockMode.SINKHOLE,
        ttl=30,
        sinkhole_ipv4=ipaddress.IPv4Address("192.0.2.99"),
        generated=GENERATED,
    )
    assert _body(ExportFormat.RPZ, export)[3:] == ["x.test A 192.0.2.99", "*.x.test A 192.0.2.99"]
    assert _body(ExportFormat.UNBOUND, export) == [
        "server:",
        '\tlocal-zone: "x.test." redirect',
        '\tlocal-data: "x.test. 30 IN A 192.0.2.99"',
    ]
    assert _body(ExportFormat.DNSMASQ, export) == ["address=/x.test/192.0.2.99", "local=/x.test/"]
    assert _body(ExportFormat.HOSTS, export) == ["192.0.2.99 x.test"]


def test_sinkhole_mode_with_only_an_ipv6_address() -> None:
    export = Export(
        (BlockList("a", "a", domains=(entry("x.test"),)),),
        mode=BlockMode.SINKHOLE,
        ttl=30,
        sinkhole_ipv6=ipaddress.IPv6Address("2001:db8::99"),
        generated=GENERATED,
    )
    assert _body(ExportFormat.UNBOUND, export) == [
        "server:",
        '\tlocal-zone: "x.test." redirect',
        '\tlocal-data: "x.test. 30 IN AAAA 2001:db8::99"',
    ]
    assert _body(ExportFormat.DNSMASQ, export) == ["address=/x.test/2001:db8::99", "local=/x.test/"]
    assert _body(ExportFormat.HOSTS, export) == ["2001:db8::99 x.test"]


def test_nftables_without_lists_is_its_header_alone() -> None:
    text = render(ExportFormat.NFTABLES, Export((), generated=GENERATED))
    lines = text.splitlines()
    assert lines[0] == "#!/usr/sbin/nft -f"
    assert len(lines) > 1
    assert all(line == "#" or line.startswith("# ") for line in lines[1:])
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_refused_mode_per_format() -> None:
    export = Export(
        (BlockList("a", "a", domains=(entry("x.test"),)),),
        mode=BlockMode.REFUSED,
        generated=GENERATED,
    )
    assert _body(ExportFormat.UNBOUND, export)[1:] == ['\tlocal-zone: "x.test." always_refuse']
    assert _body(ExportFormat.RPZ, export)[3:] == [
        "x.test CNAME rpz-drop.",
        "*.x.test CNAME rpz-drop.",
    ]
    assert "RPZ has no REFUSED action" in render(ExportFormat.RPZ, export)
    assert "cannot answer refused" in render(ExportFormat.DNSMASQ, export)
    assert _body(ExportFormat.DNSMASQ, export) == ["address=/x.test/"]


def test_header_lines_cannot_be_broken_by_a_path_with_a_newline() -> None:
    export = Export((BlockList("a", "evil\n$TTL 1\n.yaml"),), generated=GENERATED)
    text = render(ExportFormat.RPZ, export)
    assert "\n$TTL 1" not in text


# ---------------------------------------------------------------------------------------
# From a config


CONFIG = """
networks: {office: ["10.0.0.0/8"], lab: ["192.168.0.0/16"]}
lists: {apps: {file: apps.yaml}, other: {file: other.yaml}}
allowlist: [fine.banned.test]
policies:
  office: {networks: [office], lists: [apps], mode: nxdomain, ttl: 30}
  lab: {networks: [lab], lists: [apps, other], mode: nxdomain, ttl: 30}
"""


def test_export_from_config_defaults_to_all_lists_and_the_shared_mode() -> None:
    config = parse_config(CONFIG, "dnsfilter.yaml", base=None)
    export = export_from_config(config, [APPS, OTHER], generated=GENERATED)
    assert [b.name for b in export.lists] == ["apps", "other"]
    assert (export.mode, export.ttl, export.allowlist) == (NXDOMAIN, 30, ("fine.banned.test",))
    assert export.source == "dnsfilter.yaml"


def test_export_from_config_takes_a_policys_lists_or_the_named_ones() -> None:
    config = parse_config(CONFIG, "dnsfilter.yaml", base=None)
    by_policy = export_from_config(config, [APPS, OTHER], policy="office")
    assert [b.name for b in by_policy.lists] == ["apps"]
    named = export_from_config(config, [APPS, OTHER], policy="office", names=["other"])
    assert [b.name for b in named.lists] == ["other"]


@pytest.mark.parametrize(
    ("text", "policy", "names", "message"),
    [
        pytest.param(
            CONFIG.replace("lab], lists: [apps, other], mode: nxdomain", "lab], lists: [apps]"),
            None,
            [],
            "dnsfilter.yaml: the policies answer blocked names differently (office: nxdomain, "
            "ttl 30; lab: null, ttl 30); choose one with --policy",
            id="policies-disagree",
        ),
        pytest.param(
            CONFIG,
            "nope",
            [],
            "dnsfilter.yaml: no policy 'nope' (policies: office, lab)",
            id="policy",
        ),
        pytest.param(
            CONFIG,
            None,
            ["apps", "gone"],
            "dnsfilter.yaml: no list 'gone' (lists: apps, other)",
            id="list",
        ),
        pytest.param(
            "lists: {apps: {file: apps.yaml}}\n",
            "nope",
            [],
            "dnsfilter.yaml: no policy 'nope' (policies: none)",
            id="policy-without-policies",
        ),
    ],
)
def test_export_from_config_errors(
    text: str, policy: str | None, names: list[str], message: str
) -> None:
    config = parse_config(text, "dnsfilter.yaml", base=None)
    with pytest.raises(ConfigError) as caught:
        export_from_config(config, [APPS, OTHER], policy=policy, names=names)
    assert caught.value.problems == [message]


# ---------------------------------------------------------------------------------------
# Command line


def _write_config(tmp_path: Path) -> Path:
    apps = {
        "name": "apps",
        "title": "Apps",
        "vendor": "Test",
        "category": "other",
        "description": "test",
        "references": [{"url": "https://example.org/", "title": "t"}],
        "domains": [{"domain": "banned.test", "evidence": "https://example.org/"}],
    }
    (tmp_path / "apps.yaml").write_text(yaml.safe_dump(apps))
    config = tmp_path / "dnsfilter.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "networks": {"lan": ["10.0.0.0/8"]},
                "lists": {"apps": {"file": "apps.yaml"}},
                "policies": {"default": {"networks": ["lan"], "lists": ["apps"]}},
            }
        )
    )
    return config


def test_cli_writes_the_same_bytes_for_the_same_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write_config(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1795780800")
    out = tmp_path / "out" / "zone.rpz"
    out.parent.mkdir()
    args = ["lists", "export", "--format", "rpz", "--config", str(config)]
    assert main([*args, "--output", str(out)]) == 0
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert out.read_text() == printed
    assert "generated 2026-11-27T12:00:00Z" in printed
    assert "banned.test CNAME" not in printed and "*.banned.test A 0.0.0.0" in printed
    # Only the export itself is left behind: the temporary file was renamed over it.
    assert os.listdir(out.parent) == ["zone.rpz"]


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        pytest.param(["--policy", "nope"], "no policy 'nope'", id="unknown-policy"),
        pytest.param(["nope"], "no list 'nope'", id="unknown-list"),
        pytest.param(["--output", "/nonexistent-dir/x"], "cannot write", id="unwritable"),
    ],
)
def test_cli_usage_errors_exit_2(
    tmp_path: Path, args: list[str], stderr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write_config(tmp_path)
    assert main(["lists", "export", "--format", "unbound", "--config", str(config), *args]) == 2
    assert stderr in capsys.readouterr().err


def test_cli_bad_config_and_bad_format_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lists: {apps: {file: missing.yaml}}\n")
    assert main(["lists", "export", "--format", "hosts", "--config", str(bad)]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["lists", "export", "--format", "bind"])
    assert caught.value.code == 2


def test_cli_default_config_exports_the_shipped_lists(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lists", "export", "--format", "unbound"]) == 0
    out = capsys.readouterr().out
    assert '\tlocal-zone: "weixin.qq.com." always_null\n' in out
    assert '\tlocal-zone: "support.kaspersky.com." transparent\n' in out
