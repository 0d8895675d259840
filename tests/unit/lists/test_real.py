"""The loaders on excerpts of real public lists (tests/vectors/lists, with their licences)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnsfilter.datapath.policy import DomainTable
from dnsfilter.errors import ListError
from dnsfilter.lists.catalog import load_list
from dnsfilter.lists.formats import parse_list

VECTORS = Path(__file__).parents[2] / "vectors" / "lists"


def test_one_hagezi_list_in_three_formats_blocks_the_same_names() -> None:
    adblock = load_list(VECTORS / "hagezi-doh-vpn-proxy-bypass.adblock.txt")
    domains = load_list(VECTORS / "hagezi-doh-vpn-proxy-bypass.domains.txt")
    hosts = load_list(VECTORS / "hagezi-doh-vpn-proxy-bypass.hosts.txt")
    assert (adblock.warnings, domains.warnings, hosts.warnings) == ((), (), ())
    assert [e.domain for e in domains.domains] == [e.domain for e in hosts.domains]
    assert len(domains.domains) == 793
    # The adblock edition drops names an entry above already covers: 757 of the 793.
    table = DomainTable([adblock])
    mask = table.mask([adblock.name])
    assert len(adblock.domains) == 757
    assert all(table.match(e.domain, mask) for e in domains.domains)


def test_stevenblack_header_lines_are_ignored_without_a_warning() -> None:
    hosts = load_list(VECTORS / "stevenblack-hosts.txt")
    assert hosts.warnings == ()
    names = {e.domain for e in hosts.domains}
    assert not names & {"localhost", "broadcasthost", "local", "localhost.localdomain"}
    assert {"doubleclick.net", "192.168.112.2o7.net", "lb.usemaxserver.de"} <= names


def test_adguard_dns_filter_android_private_dns_exception_is_kept() -> None:
    adguard = load_list(VECTORS / "adguard-dns-filter.txt")
    exceptions = {e.domain for e in adguard.exceptions}
    # @@-ds.metric.gstatic.com^| lifts the names Android's Private DNS check asks for.
    assert "metric.gstatic.com" in exceptions
    assert "affiliate.notion.so" in exceptions  # @@|affiliate.notion.so^|
    assert "exponea.com" in exceptions  # @@||cdn.us*.exponea.com^|
    by_line = {w.split(": ", 1)[0]: w.split(": ", 1)[1] for w in adguard.warnings}
    text = (VECTORS / "adguard-dns-filter.txt").read_text()
    line = next(n for n, t in enumerate(text.splitlines(), 1) if t.startswith("@@-ds."))
    assert by_line[f"{VECTORS / 'adguard-dns-filter.txt'}:{line}"] == (
        "exception read as @@||metric.gstatic.com^ ('-ds.metric.gstatic.com' is a pattern): "
        "it lifts more than its author meant, never less"
    )
    assert adguard.skipped == 0


@pytest.mark.parametrize(
    ("filename", "kind"),
    [
        pytest.param(
            "hagezi-doh-vpn-proxy-bypass.unbound.conf",
            "an unbound config file (local-zone: lines)",
            id="unbound",
        ),
    ],
)
def test_server_config_files_are_refused_once(filename: str, kind: str) -> None:
    for fmt in (None, "plain", "hosts"):
        with pytest.raises(ListError) as info:
            load_list(VECTORS / filename, format=fmt)
        assert len(info.value.problems) == 1
        assert info.value.problems[0].startswith(
            f"{VECTORS / filename}: this is {kind}, not a list"
        )


def test_dnsmasq_config_is_refused_once() -> None:
    text = "# hagezi dnsmasq edition\n" + "".join(f"local=/n{i}.example/\n" for i in range(82000))
    with pytest.raises(ListError) as info:
        parse_list(text, "light.txt", "light")
    assert info.value.problems == [
        "light.txt: this is a dnsmasq config file (address=/.../ lines), not a list: dnsfilter "
        "reads yaml, hosts, plain (one name a line), adblock and rpz lists; use the list's "
        "hosts or domains edition, which list projects publish beside this one"
    ]


def test_exceptions_with_wildcards_are_widened_or_say_they_cannot_be() -> None:
    referral = load_list(VECTORS / "hagezi-whitelist-referral.adblock.txt")
    assert len(referral.domains) == 0
    assert len(referral.exceptions) == 471
    assert referral.warnings[0].endswith(
        "exception 'aax-*.amazon.*' cannot be read without lifting all of '.'; skipped: the "
        "blocks it lifts stay (this may block more than its author meant)"
    )
