"""dnsfilter.datapath.policy: client networks, list matching and the ALLOW / BLOCK / REFUSE
decision."""

from __future__ import annotations

import ipaddress

import pytest

import dnsfilter.datapath.policy
from dnsfilter.config import IPNetwork, parse_config
from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.datapath.policy import Action, DomainTable, NetworkMap, Policy, Verdict, build_policy
from dnsfilter.lists.model import BlockList, Category, DomainEntry


def _prefixes(*texts: str) -> list[IPNetwork]:
    return [ipaddress.ip_network(text) for text in texts]


def _entries(*names: str) -> tuple[DomainEntry, ...]:
    return tuple(DomainEntry(name, line) for line, name in enumerate(names, start=1))


# ---------------------------------------------------------------------------------------
# NetworkMap


def _network_map() -> NetworkMap:
    return NetworkMap(
        [
            ("corp", _prefixes("10.0.0.0/8", "2001:db8::/32")),
            ("lab", _prefixes("10.1.0.0/16", "2001:db8:1::/48")),
            ("bench", _prefixes("10.1.2.0/24")),
            ("host", _prefixes("192.0.2.7/32", "2001:db8:ffff::7/128")),
        ]
    )


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param("10.2.3.4", "corp", id="v4-outer"),
        pytest.param("10.0.0.0", "corp", id="v4-network-address"),
        pytest.param("10.255.255.255", "corp", id="v4-last-address"),
        pytest.param("10.1.200.1", "lab", id="v4-nested-longer-prefix-wins"),
        pytest.param("10.1.0.0", "lab", id="v4-nested-network-address"),
        pytest.param("10.1.2.3", "bench", id="v4-doubly-nested"),
        pytest.param("10.1.3.0", "lab", id="v4-just-outside-innermost"),
        pytest.param("192.0.2.7", "host", id="v4-host-prefix"),
        pytest.param("192.0.2.8", None, id="v4-next-to-host-prefix"),
        pytest.param("11.0.0.1", None, id="v4-unknown"),
        pytest.param("9.255.255.255", None, id="v4-just-below"),
        pytest.param("2001:db8::1", "corp", id="v6-outer"),
        pytest.param("2001:db8:1::1", "lab", id="v6-nested"),
        pytest.param("2001:db8:ffff::7", "host", id="v6-host-prefix"),
        pytest.param("2001:DB8:0001:0::1", "lab", id="v6-uppercase-long-form"),
        pytest.param("2001:db9::1", None, id="v6-unknown"),
        pytest.param("::ffff:10.1.2.3", "bench", id="v4-mapped-v6-uses-v4-networks"),
        pytest.param("::ffff:11.0.0.1", None, id="v4-mapped-v6-unknown"),
        pytest.param("::ffff:a01:203", "bench", id="v4-mapped-v6-hex-form"),
        pytest.param("::10.1.2.3", None, id="v4-compatible-v6-is-not-mapped"),
        pytest.param("2001:db8:1::1%eth0", "lab", id="v6-with-scope"),
        pytest.param("garbage", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param("10.1.2.3:53", None, id="with-port"),
        pytest.param("10.1.2.300", None, id="v4-octet-too-big"),
    ],
)
def test_network_map_lookup(address: str, expected: str | None) -> None:
    networks = _network_map()
    assert networks.lookup(address) == expected
    assert networks._memo == {address: expected}

    def not_again(self: NetworkMap, address: str) -> str | None:
        raise AssertionError(f"{address} looked up again, not read from the memo")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(NetworkMap, "_lookup", not_again)
        assert networks.lookup(address) == expected  # the second answer comes from the memo


def test_network_map_default_routes() -> None:
    networks = NetworkMap(
        [
            ("v4-any", _prefixes("0.0.0.0/0")),
            ("v6-any", _prefixes("::/0")),
            ("lan", _prefixes("10.0.0.0/8")),
        ]
    )
    assert [networks.lookup(a) for a in ("203.0.113.1", "10.9.9.9", "2001:db8::1")] == [
        "v4-any",
        "lan",
        "v6-any",
    ]


def test_network_map_stays_right_when_its_memo_fills(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnsfilter.datapath.policy, "_CLIENT_MEMO_LIMIT", 2)
    networks = _network_map()
    addresses = ["10.2.3.4", "10.1.200.1", "10.1.2.3", "11.0.0.1", "2001:db8::1"]
    expected = ["corp", "lab", "bench", None, "corp"]
    assert [networks.lookup(a) for a in addresses] == expected
    assert [networks.lookup(a) for a in reversed(addresses)] == list(reversed(expected))


def test_empty_network_map() -> None:
    assert NetworkMap([]).lookup("127.0.0.1") is None


# ---------------------------------------------------------------------------------------
# DomainTable

APPS = BlockList(
    name="apps",
    source="apps.yaml",
    category=Category.SOCIAL,
    domains=(
        DomainEntry("example.com", 1),
        DomainEntry("tok.com", 2, mode=BlockMode.NXDOMAIN),
        DomainEntry("ads.parent.example", 3),
        DomainEntry("b.a.example.org", 4, mode=BlockMode.NODATA),
        DomainEntry("a.example.org", 5),
    ),
    exceptions=(DomainEntry("ok.example.com", 6),),
)
VIDEO = BlockList(
    name="video",
    source="video.yaml",
    category=Category.VIDEO,
    domains=(
        DomainEntry("example.com", 1),
        DomainEntry("ads.example.com", 2, mode=BlockMode.REFUSED),
        DomainEntry("tiktok.com", 3),
    ),
)
ALLOWLIST = ("safe.example.com", "parent.example")


def _table() -> DomainTable:
    return DomainTable([APPS, VIDEO], ALLOWLIST)


@pytest.mark.parametrize(
    ("qname", "lists", "expected"),
    [
        # exact names and the names below them
        pytest.param("tok.com", ["apps"], ("apps", "tok.com"), id="exact"),
        pytest.param("www.tok.com", ["apps"], ("apps", "tok.com"), id="subdomain"),
        pytest.param("a.b.c.tok.com", ["apps"], ("apps", "tok.com"), id="deep-subdomain"),
        pytest.param("com", ["apps", "video"], None, id="parent-of-entry-not-blocked"),
        # a name that only shares a suffix string is not below the entry
        pytest.param("tiktok.com", ["apps"], None, id="shared-suffix-string-not-a-parent"),
        pytest.param("www.tiktok.com", ["apps"], None, id="shared-suffix-string-subdomain"),
        pytest.param("tiktok.com", ["video"], ("video", "tiktok.com"), id="own-entry"),
        pytest.param("notexample.com", ["apps", "video"], None, id="prefix-glued-to-label"),
        pytest.param("example.com.evil", ["apps", "video"], None, id="entry-as-a-prefix"),
        pytest.param("", ["apps", "video"], None, id="empty-qname"),
        # the most specific entry is reported
        pytest.param(
            "x.ads.example.com",
            ["apps", "video"],
            ("video", "ads.example.com"),
            id="most-specific-entry-other-list",
        ),
        pytest.param(
            "x.b.a.example.org",
            ["apps"],
            ("apps", "b.a.example.org"),
            id="most-specific-entry-same-list",
        ),
        pytest.param(
            "x.a.example.org", ["apps"], ("apps", "a.example.org"), id="sibling-of-specific-entry"
        ),
        # the lowest list index wins when two lists have the very same entry
        pytest.param(
            "www.example.com",
            ["apps", "video"],
            ("apps", "example.com"),
            id="same-entry-first-list",
        ),
        pytest.param(
            "www.example.com",
            ["video"],
            ("video", "example.com"),
            id="same-entry-only-second-enforced",
        ),
        # lists not enforced by the policy are ignored
        pytest.param("tok.com", ["video"], None, id="masked-out"),
        pytest.param("tok.com", [], None, id="no-lists"),
        pytest.param(
            "x.ads.example.com",
            ["apps"],
            ("apps", "example.com"),
            id="masked-specific-falls-back-to-parent",
        ),
        # the allowlist beats every list at any level
        pytest.param("safe.example.com", ["apps", "video"], None, id="allowlisted-exact"),
        pytest.param("x.safe.example.com", ["apps", "video"], None, id="below-allowlisted"),
        pytest.param(
            "unsafe.example.com",
            ["apps", "video"],
            ("apps", "example.com"),
            id="sibling-of-allowlisted-blocked",
        ),
        pytest.param("ads.parent.example", ["apps"], None, id="allowlisted-parent-of-entry"),
        pytest.param("x.ads.parent.example", ["apps"], None, id="allowlisted-grandparent"),
        # an exception only disables its own list
        pytest.param("ok.example.com", ["apps"], None, id="exception-own-list"),
        pytest.param("x.ok.example.com", ["apps"], None, id="below-exception-own-list"),
        pytest.param(
            "ok.example.com",
            ["apps", "video"],
            ("video", "example.com"),
            id="exception-other-list-still-blocks",
        ),
        pytest.param(
            "ok.example.com", ["video"], ("video", "example.com"), id="exception-of-unenforced-list"
        ),
        pytest.param(
            "not-ok.example.com",
            ["apps"],
            ("apps", "example.com"),
            id="exception-shared-suffix-string",
        ),
    ],
)
def test_domain_table_match(qname: str, lists: list[str], expected: tuple[str, str] | None) -> None:
    table = _table()
    hit = table.match(qname, table.mask(lists))
    found = None if hit is None else (table.lists[hit[0]].name, hit[1])
    assert found == expected


@pytest.mark.parametrize(
    ("list_name", "entry", "expected"),
    [
        pytest.param("apps", "tok.com", BlockMode.NXDOMAIN, id="apps-override"),
        pytest.param("apps", "example.com", None, id="apps-no-override"),
        pytest.param("video", "ads.example.com", BlockMode.REFUSED, id="video-override"),
        pytest.param("video", "tok.com", None, id="entry-of-another-list"),
        pytest.param("apps", "b.a.example.org", BlockMode.NODATA, id="nodata"),
    ],
)
def test_domain_table_override(list_name: str, entry: str, expected: BlockMode | None) -> None:
    table = _table()
    index = [b.name for b in table.lists].index(list_name)
    assert table.override(index, entry) is expected


def test_domain_table_mask_bits() -> None:
    table = _table()
    assert (table.mask([]), table.mask(["apps"]), table.mask(["video"])) == (0, 1, 2)
    assert table.mask(["video", "apps"]) == 3


def test_domain_table_counts_distinct_names() -> None:
    # 5 + 3 entries with example.com shared, 1 exception, 2 allowlisted names.
    assert len(_table()) == 10


# adblock precedence: an exception lifts ordinary entries at any depth; $important entries
# beat ordinary exceptions; $important exceptions beat everything in their list.
ADS = BlockList(
    name="ads",
    source="ads.txt",
    domains=(
        DomainEntry("ads.example", 1),
        DomainEntry("deep.ok.ads.example", 2),
        DomainEntry("imp.ok.ads.example", 3),
        DomainEntry("track.example", 4),
    ),
    exceptions=(
        DomainEntry("ok.ads.example", 5),
        DomainEntry("free.imp.ok.ads.example", 6),
        DomainEntry("track.example", 7),
    ),
    important_domains=frozenset({"imp.ok.ads.example"}),
    important_exceptions=frozenset({"free.imp.ok.ads.example"}),
)
# RPZ precedence (unbound, BIND): the most specific rule decides.
ZONE = BlockList(
    name="zone",
    source="zone.rpz",
    domains=(DomainEntry("bad.mixed.example", 1), DomainEntry("x.ok.blocked.example", 2)),
    exceptions=(DomainEntry("mixed.example", 3), DomainEntry("ok.blocked.example", 4)),
    specific_wins=True,
)
BLOCKED = BlockList(name="blocked", source="b.yaml", domains=(DomainEntry("blocked.example", 1),))


@pytest.mark.parametrize(
    ("qname", "lists", "expected"),
    [
        pytest.param("ads.example", ["ads"], ("ads", "ads.example"), id="plain-entry"),
        pytest.param("ok.ads.example", ["ads"], None, id="exception"),
        pytest.param("deep.ok.ads.example", ["ads"], None, id="exception-beats-deeper-entry"),
        pytest.param(
            "imp.ok.ads.example",
            ["ads"],
            ("ads", "imp.ok.ads.example"),
            id="important-beats-exception",
        ),
        pytest.param(
            "x.imp.ok.ads.example",
            ["ads"],
            ("ads", "imp.ok.ads.example"),
            id="important-covers-below",
        ),
        pytest.param(
            "free.imp.ok.ads.example", ["ads"], None, id="important-exception-beats-important"
        ),
        pytest.param("track.example", ["ads"], None, id="exception-and-entry-same-name"),
        pytest.param(
            "bad.mixed.example", ["zone"], ("zone", "bad.mixed.example"), id="rpz-deeper-block"
        ),
        pytest.param(
            "x.bad.mixed.example", ["zone"], ("zone", "bad.mixed.example"), id="rpz-below-block"
        ),
        pytest.param("good.mixed.example", ["zone"], None, id="rpz-passthru"),
        pytest.param(
            "ok.blocked.example",
            ["zone", "blocked"],
            ("blocked", "blocked.example"),
            id="rpz-passthru-own-list-only",
        ),
        pytest.param(
            "x.ok.blocked.example",
            ["zone"],
            ("zone", "x.ok.blocked.example"),
            id="rpz-block-under-passthru",
        ),
        pytest.param(
            "y.x.ok.blocked.example",
            ["zone", "blocked"],
            ("zone", "x.ok.blocked.example"),
            id="deepest-blocking-list-reported",
        ),
    ],
)
def test_domain_table_precedence(
    qname: str, lists: list[str], expected: tuple[str, str] | None
) -> None:
    table = DomainTable([ADS, ZONE, BLOCKED])
    hit = table.match(qname, table.mask(lists))
    assert (None if hit is None else (table.lists[hit[0]].name, hit[1])) == expected
    # blocking_bits (CNAME targets) answers the same question for every list at once.
    bits = table.blocking_bits(qname) & table.mask(lists)
    assert bool(bits) is (expected is not None)


def test_domain_table_allowlist_only() -> None:
    table = DomainTable([], ["example.com"])
    assert table.match("example.com", table.mask([])) is None


# ---------------------------------------------------------------------------------------
# Policy.decide, built from a parsed config

CONFIG = """\
networks:
  staff: ["10.0.0.0/8", "2001:db8::/32"]
  guests: ["10.9.0.0/16"]
  open: ["192.0.2.0/24"]
lists:
  apps: {file: apps.yaml}
  video: {file: video.yaml}
allowlist: ["Safe.Example.com."]
policies:
  strict:
    networks: [staff]
    lists: [apps, video]
    mode: nxdomain
    ttl: 30
  guest:
    networks: [guests]
    lists: [video]
    mode: sinkhole
    sinkhole_ipv4: "192.0.2.1"
  unfiltered:
    networks: [open]
    lists: []
"""


def _policy() -> Policy:
    config = parse_config(CONFIG, "policy.yaml", None)
    return build_policy(config, [APPS, VIDEO])


VerdictFields = tuple[Action, str, str, str, Category, str, BlockMode | None]


def _fields(verdict: Verdict) -> VerdictFields:
    rule = verdict.rule
    return (
        verdict.action,
        rule.network if rule else "",
        rule.policy if rule else "",
        verdict.list_name,
        verdict.category,
        verdict.entry,
        verdict.mode,
    )


ALLOW, BLOCK, REFUSE = Action.ALLOW, Action.BLOCK, Action.REFUSE
SOCIAL, VIDEO_CAT, OTHER = Category.SOCIAL, Category.VIDEO, Category.OTHER


@pytest.mark.parametrize(
    ("client", "qname", "expected"),
    [
        # clients outside every network are refused, whatever they ask
        pytest.param(
            "203.0.113.5",
            "example.org",
            (REFUSE, "", "", "", OTHER, "", None),
            id="refuse-unknown-client",
        ),
        pytest.param(
            "203.0.113.5",
            "tok.com",
            (REFUSE, "", "", "", OTHER, "", None),
            id="refuse-even-blocked-name",
        ),
        pytest.param(
            "not-an-address",
            "example.org",
            (REFUSE, "", "", "", OTHER, "", None),
            id="refuse-garbage-client",
        ),
        pytest.param(
            "2001:db9::1",
            "example.org",
            (REFUSE, "", "", "", OTHER, "", None),
            id="refuse-unknown-v6-client",
        ),
        # staff: both lists
        pytest.param(
            "10.1.2.3",
            "www.tok.com",
            (BLOCK, "staff", "strict", "apps", SOCIAL, "tok.com", BlockMode.NXDOMAIN),
            id="block-apps-with-entry-mode",
        ),
        pytest.param(
            "10.1.2.3",
            "www.tiktok.com",
            (BLOCK, "staff", "strict", "video", VIDEO_CAT, "tiktok.com", None),
            id="block-video",
        ),
        pytest.param(
            "2001:db8::5",
            "x.ads.example.com",
            (BLOCK, "staff", "strict", "video", VIDEO_CAT, "ads.example.com", BlockMode.REFUSED),
            id="block-v6-client-most-specific",
        ),
        pytest.param(
            "::ffff:10.1.2.3",
            "example.com",
            (BLOCK, "staff", "strict", "apps", SOCIAL, "example.com", None),
            id="block-v4-mapped-client",
        ),
        pytest.param(
            "10.1.2.3",
            "ok.example.com",
            (BLOCK, "staff", "strict", "video", VIDEO_CAT, "example.com", None),
            id="exception-in-apps-video-still-blocks",
        ),
        pytest.param(
            "10.1.2.3",
            "safe.example.com",
            (ALLOW, "staff", "strict", "", OTHER, "", None),
            id="allowlist-beats-lists",
        ),
        pytest.param(
            "10.1.2.3",
            "example.org",
            (ALLOW, "staff", "strict", "", OTHER, "", None),
            id="allow-unlisted",
        ),
        # guests: nested inside staff's 10.0.0.0/8, video only
        pytest.param(
            "10.9.1.1",
            "www.tok.com",
            (ALLOW, "guests", "guest", "", OTHER, "", None),
            id="guest-apps-not-enforced",
        ),
        pytest.param(
            "10.9.1.1",
            "tiktok.com",
            (BLOCK, "guests", "guest", "video", VIDEO_CAT, "tiktok.com", None),
            id="guest-video-enforced",
        ),
        pytest.param(
            "10.9.1.1",
            "ok.example.com",
            (BLOCK, "guests", "guest", "video", VIDEO_CAT, "example.com", None),
            id="guest-exception-of-unenforced-list",
        ),
        # unfiltered: no lists
        pytest.param(
            "192.0.2.77",
            "tok.com",
            (ALLOW, "open", "unfiltered", "", OTHER, "", None),
            id="unfiltered-allows-listed-name",
        ),
    ],
)
def test_policy_decide(client: str, qname: str, expected: VerdictFields) -> None:
    assert _fields(_policy().decide(client, qname)) == expected


def test_policy_decides_the_same_once_clients_are_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The per-client memo (and its reset when full) must not change any decision."""
    monkeypatch.setattr(dnsfilter.datapath.policy, "_CLIENT_MEMO_LIMIT", 3)
    policy = _policy()
    cases = [("203.0.113.5", "tok.com"), ("10.1.2.3", "www.tok.com"), ("192.0.2.77", "a.b")]
    cases += [("2001:db9::1", "example.org"), ("10.200.0.1", "clip.example")]
    first = [_fields(policy.decide(client, qname)) for client, qname in cases]
    again = [_fields(policy.decide(client, qname)) for client, qname in cases * 2]
    assert again == first * 2
    assert first[0][0] is REFUSE and first[3][0] is REFUSE


def test_build_policy_rules() -> None:
    policy = _policy()
    rules = {
        network: (rule.policy, rule.mask, rule.answers.mode, rule.answers.ttl)
        for network, rule in policy.rules.items()
    }
    assert rules == {
        "staff": ("strict", 0b11, BlockMode.NXDOMAIN, 30),
        "guests": ("guest", 0b10, BlockMode.SINKHOLE, 60),
        "open": ("unfiltered", 0, BlockMode.NULL, 60),
    }
    assert [b.name for b in policy.table.lists] == ["apps", "video"]


def test_allow_verdicts_are_shared_per_network() -> None:
    policy = _policy()
    first = policy.decide("10.1.2.3", "example.org")
    assert policy.decide("10.200.0.1", "other.example") is first
    assert policy.decide("10.9.0.1", "example.org") is not first


def test_policy_from_the_default_config_with_no_lists_loaded() -> None:
    config = parse_config(
        "networks:\n  loopback: ['127.0.0.0/8', '::1/128']\n"
        "policies:\n  default: {networks: [loopback], lists: []}\n",
        "cfg.yaml",
        None,
    )
    policy = build_policy(config, [])
    assert _fields(policy.decide("::1", "example.com")) == (
        ALLOW,
        "loopback",
        "default",
        "",
        OTHER,
        "",
        None,
    )
    assert policy.decide("192.0.2.1", "example.com").action is Action.REFUSE
