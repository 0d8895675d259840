"""The egress config section and the EgressPlan built from it."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from dnsfilter.config import EgressConfig, parse_config
from dnsfilter.egress.plan import build_plan
from dnsfilter.errors import ConfigError
from dnsfilter.lists.model import BlockList, Category, NetworkEntry

LISTS = """\
lists:
  apps: {file: apps.yaml}
  doh: {file: doh.yaml}
"""


def parse(text: str) -> EgressConfig:
    return parse_config(text, "t.yaml", base=Path("/etc/dnsfilter")).egress


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.yaml", base=None)
    return caught.value.problems


def test_defaults() -> None:
    assert parse("") == EgressConfig(approved_resolvers=(), lists=None, drop_doh=False)
    assert parse("egress: {}") == EgressConfig()


def test_values() -> None:
    egress = parse(
        LISTS
        + """\
egress:
  approved_resolvers: ["10.0.0.53", "fd00::53", "10.0.0.53"]
  lists: [doh]
  drop_doh: true
"""
    )
    assert egress.approved_resolvers == (
        ipaddress.ip_address("10.0.0.53"),
        ipaddress.ip_address("fd00::53"),
    )
    assert egress.lists == ("doh",)
    assert egress.drop_doh is True


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        pytest.param("lists: []", (), id="empty-means-none"),
        pytest.param("lists: null", None, id="null-means-all"),
        pytest.param("lists:", None, id="bare-means-all"),
    ],
)
def test_lists_none_versus_empty(section: str, expected: tuple[str, ...] | None) -> None:
    assert parse(LISTS + "egress:\n  " + section + "\n").lists == expected


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        pytest.param(
            'approved_resolvers: ["10.0.0.53:53"]',
            "t.yaml:5: egress.approved_resolvers[0]: '10.0.0.53:53' is not an IP address "
            "(without a port)",
            id="port",
        ),
        pytest.param(
            "approved_resolvers: 10.0.0.53",
            "t.yaml:5: egress.approved_resolvers: expected a list (got the string '10.0.0.53')",
            id="not-a-list",
        ),
        pytest.param(
            "lists: [apps, nope]",
            "t.yaml:5: egress.lists: unknown list 'nope'",
            id="unknown-list",
        ),
        pytest.param(
            "drop_doh: yes",
            "t.yaml:5: egress.drop_doh: write true or false (got 'yes')",
            id="yaml-1.1-bool",
        ),
        pytest.param(
            "drop: true",
            "t.yaml:5: egress.drop: unknown key (known keys: approved_resolvers, drop_doh, lists)",
            id="unknown-key",
        ),
    ],
)
def test_problems(section: str, expected: str) -> None:
    assert problems(LISTS + "egress:\n  " + section + "\n") == [expected]


def blocklist(name: str, category: Category, *prefixes: str) -> BlockList:
    return BlockList(
        name,
        f"{name}.yaml",
        category=category,
        networks=tuple(NetworkEntry(ipaddress.ip_network(p), i) for i, p in enumerate(prefixes)),
    )


APPS = blocklist("apps", Category.MESSAGING, "203.0.113.0/24", "203.0.113.0/24")
DOH = blocklist("doh", Category.BYPASS, "192.0.2.128/25")
NO_NETWORKS = blocklist("names", Category.VIDEO)


def config(egress: str = "", listen: str = '["198.51.100.53:53", "[::1]:5353"]') -> str:
    return f"""\
server: {{listen: {listen}}}
upstream: {{servers: ["198.51.100.254", "[2001:db8::254]:5353"]}}
forward_zones: {{corp.example: ["10.9.9.9"]}}
lists:
  apps: {{file: apps.yaml}}
  doh: {{file: doh.yaml}}
  names: {{file: names.yaml}}
egress:
  {egress or "{}"}
"""


def test_plan_defaults_to_the_listen_addresses_and_every_list() -> None:
    plan = build_plan(parse_config(config(), "t.yaml", None), [APPS, DOH, NO_NETWORKS])
    assert [str(a) for a in plan.approved] == ["198.51.100.53", "::1"]
    assert [str(a) for a in plan.upstreams] == ["198.51.100.254", "2001:db8::254", "10.9.9.9"]
    assert [b.name for b in plan.lists] == ["apps", "doh", "names"]
    assert [(n.name, [str(p) for p in n.prefixes]) for n in plan.banned] == [
        ("apps", ["203.0.113.0/24"])  # duplicates dropped, lists without networks left out
    ]
    assert [n.name for n in plan.doh] == ["doh"]
    assert plan.drop_doh is False


def test_plan_follows_egress_lists_and_drop_doh() -> None:
    text = config("{lists: [doh], drop_doh: true, approved_resolvers: ['10.0.0.53']}")
    plan = build_plan(parse_config(text, "t.yaml", None), [APPS, DOH, NO_NETWORKS])
    assert [str(a) for a in plan.approved] == ["10.0.0.53"]
    assert [b.name for b in plan.lists] == ["doh"]
    assert plan.banned == ()
    assert plan.drop_doh is True
    # The command line overrides the file.
    assert build_plan(parse_config(text, "t.yaml", None), [APPS, DOH], False).drop_doh is False


def test_plan_needs_approved_resolvers_with_a_wildcard_listen() -> None:
    parsed = parse_config(config(listen='["0.0.0.0:53"]'), "t.yaml", None)
    with pytest.raises(ConfigError) as caught:
        build_plan(parsed, [APPS])
    assert caught.value.problems == [
        "t.yaml: egress.approved_resolvers: needed because server.listen has the wildcard "
        "address 0.0.0.0, which says nothing about where clients send their queries"
    ]
    explicit = config("{approved_resolvers: ['10.0.0.53']}", listen='["[::]:53"]')
    assert build_plan(parse_config(explicit, "t.yaml", None), [APPS]).approved


def test_drop_doh_without_a_bypass_list_is_an_error() -> None:
    parsed = parse_config(config("{lists: [apps]}"), "t.yaml", None)
    with pytest.raises(ConfigError) as caught:
        build_plan(parsed, [APPS, DOH], drop_doh=True)
    assert caught.value.problems == [
        "t.yaml: egress.drop_doh: no list of category bypass with networks is among the egress "
        'lists (add lists.bypass: {file: "shipped:bypass.yaml"})'
    ]


def test_upstreams_from_resolv_conf_when_none_are_configured(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.1\nnameserver fe80::1%eth0\nsearch example\n")
    text = f"upstream: {{resolv_conf: {resolv}}}\n"
    plan = build_plan(parse_config(text, "t.yaml", None), [])
    # The scope goes: nft and captures know addresses, not interfaces.
    assert [str(a) for a in plan.upstreams] == ["192.0.2.1", "fe80::1"]
    missing = f"upstream: {{resolv_conf: {tmp_path / 'nope'}}}\n"
    assert build_plan(parse_config(missing, "t.yaml", None), []).upstreams == ()
