"""The nftables export: sets, merging, the rules' order, and drop_doh."""

from __future__ import annotations

import ipaddress
import re

from dnsfilter.egress.nftables import render_ruleset
from dnsfilter.egress.plan import EgressPlan, ListNetworks


def nets(*texts: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(t) for t in texts)


def plan(drop_doh: bool = False, **changes: object) -> EgressPlan:
    fields: dict[str, object] = {
        "approved": (ipaddress.ip_address("198.51.100.53"), ipaddress.ip_address("2001:db8::53")),
        "upstreams": (ipaddress.ip_address("198.51.100.254"),),
        "lists": (),
        "banned": (
            ListNetworks("apps", nets("203.0.113.0/25", "203.0.113.128/25", "2001:db8:bad::/48")),
            ListNetworks("more", nets("203.0.113.7/32", "198.51.100.0/28")),
        ),
        "doh": (ListNetworks("doh", nets("192.0.2.128/25")),),
        "drop_doh": drop_doh,
    }
    fields.update(changes)
    return EgressPlan(**fields)  # type: ignore[arg-type]


def set_elements(ruleset: str, name: str) -> list[str] | None:
    """The elements of one set, or None when the set is not declared."""
    match = re.search(rf"\tset {name} {{\n(.*?)\n\t}}", ruleset, re.S)
    if match is None:
        return None
    elements = re.search(r"elements = \{\n(.*?)\n\t\t\}", match.group(1), re.S)
    if elements is None:
        return []
    return [line.strip().rstrip(",") for line in elements.group(1).splitlines()]


def egress_chain(ruleset: str) -> list[str]:
    match = re.search(r"\tchain egress {\n(.*?)\n\t}", ruleset, re.S)
    assert match is not None
    return [line.strip() for line in match.group(1).splitlines()]


def test_prefixes_are_merged_per_family_across_lists() -> None:
    text = render_ruleset(plan())
    # The two /25 halves merge into the /24, which also swallows the /32 of another list.
    assert set_elements(text, "banned_v4") == ["198.51.100.0/28", "203.0.113.0/24"]
    assert set_elements(text, "banned_v6") == ["2001:db8:bad::/48"]
    assert set_elements(text, "resolvers_v4") == ["198.51.100.53"]
    assert set_elements(text, "resolvers_v6") == ["2001:db8::53"]
    assert set_elements(text, "upstreams_v4") == ["198.51.100.254"]
    assert set_elements(text, "upstreams_v6") == []
    assert "\t# apps (2), more (2)\n\tset banned_v4 {" in text


def test_table_is_replaced_whole_on_every_load() -> None:
    lines = render_ruleset(plan()).splitlines()
    body = [line for line in lines if not line.startswith("#")]
    assert body[:3] == [
        "table inet dnsfilter",
        "delete table inet dnsfilter",
        "table inet dnsfilter {",
    ]
    assert "flush ruleset" not in "\n".join(lines)


def test_egress_chain_drops_then_allows_then_rejects() -> None:
    chain = egress_chain(render_ruleset(plan()))
    assert chain == [
        "ip daddr @banned_v4 counter drop",
        "ip6 daddr @banned_v6 counter drop",
        "meta l4proto { tcp, udp } th dport { 53, 853 } ip daddr @resolvers_v4 accept",
        "meta l4proto { tcp, udp } th dport { 53, 853 } ip6 daddr @resolvers_v6 accept",
        "meta l4proto tcp th dport { 53, 853 } counter reject with tcp reset",
        "meta l4proto udp th dport { 53, 853 } counter reject",
    ]


def test_hooks_output_and_forward() -> None:
    text = render_ruleset(plan())
    output = re.search(r"\tchain output {\n(.*?)\n\t}", text, re.S)
    forward = re.search(r"\tchain forward {\n(.*?)\n\t}", text, re.S)
    assert output is not None and forward is not None
    assert [line.strip() for line in output.group(1).splitlines()] == [
        "type filter hook output priority filter; policy accept;",
        'oifname "lo" accept',
        "meta l4proto { tcp, udp } th dport { 53, 853 } ip daddr @upstreams_v4 accept",
        "meta l4proto { tcp, udp } th dport { 53, 853 } ip6 daddr @upstreams_v6 accept",
        "jump egress",
    ]
    # Clients behind a gateway get no exemption for the resolver's upstreams.
    assert [line.strip() for line in forward.group(1).splitlines()] == [
        "type filter hook forward priority filter; policy accept;",
        "jump egress",
    ]


def test_doh_networks_only_with_drop_doh() -> None:
    without = render_ruleset(plan(drop_doh=False))
    assert set_elements(without, "doh_v4") is None
    assert "192.0.2.128" not in without
    with_doh = render_ruleset(plan(drop_doh=True))
    assert set_elements(with_doh, "doh_v4") == ["192.0.2.128/25"]
    chain = egress_chain(with_doh)
    assert chain.index("ip daddr @doh_v4 counter drop") < chain.index(
        "meta l4proto { tcp, udp } th dport { 53, 853 } ip daddr @resolvers_v4 accept"
    )


def test_empty_plan_declares_empty_sets() -> None:
    text = render_ruleset(plan(banned=(), approved=(), upstreams=()))
    for name in ("banned_v4", "banned_v6", "resolvers_v4", "resolvers_v6"):
        assert set_elements(text, name) == [], name
    assert "elements = { }" not in text  # nft rejects an empty element list


def test_source_goes_into_a_comment_on_one_line() -> None:
    text = render_ruleset(plan(), "/etc/dnsfilter/x\ny.yaml")
    generated = (
        "# Generated by `dnsfilter egress export --format nftables` from /etc/dnsfilter/x y.yaml."
    )
    assert text.splitlines()[1] == generated
    assert text.splitlines()[2].startswith("#")
