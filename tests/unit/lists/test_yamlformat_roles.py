"""dnsfilter.lists.yamlformat: entry roles and the rejected section, with exact messages."""

from __future__ import annotations

import pytest

from dnsfilter.datapath.policy import DomainTable
from dnsfilter.errors import ListError
from dnsfilter.lists.location import shipped_dir
from dnsfilter.lists.model import ROLES, BlockList, Role, role_counts, select_roles
from dnsfilter.lists.yamlformat import parse_yaml_list

HEAD = """\
name: ads
title: Ads
vendor: Example Corp
category: other
description: A test list
references:
  - {url: "https://example.com/ads", title: "Ads evidence"}
domains:
"""
KNOWN = "backend, telemetry, download, storefront, resolver, canary"


def _parse(body: str) -> BlockList:
    return parse_yaml_list(HEAD + body, "ads.yaml")


def _problems(body: str) -> list[str]:
    with pytest.raises(ListError) as info:
        parse_yaml_list(HEAD + body, "ads.yaml")
    return info.value.problems


def test_roles_one_or_several_and_none() -> None:
    blocklist = _parse(
        "  - domain: app.example\n    role: [backend, storefront]\n"
        "  - domain: dl.app.example\n    role: download\n"
        "  - domain: other.example\n"
        "  - plain.example\n"
    )
    assert [e.roles for e in blocklist.domains] == [
        (Role.BACKEND, Role.STOREFRONT),
        (Role.DOWNLOAD,),
        (),
        (),
    ]
    assert role_counts(blocklist) == {"backend": 1, "download": 1, "storefront": 1, "none": 2}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "  - domain: a.example\n    role: cdn\n",
            [f"ads.yaml:10: domains[0].role: unknown role 'cdn' ({KNOWN})"],
            id="unknown",
        ),
        pytest.param(
            "  - domain: a.example\n    role: [backend, nope]\n",
            [f"ads.yaml:10: domains[0].role[1]: unknown role 'nope' ({KNOWN})"],
            id="unknown-in-list",
        ),
        pytest.param(
            "  - domain: a.example\n    role: []\n",
            ["ads.yaml:10: domains[0].role: needs at least one role"],
            id="empty",
        ),
        pytest.param(
            "  - domain: a.example\n    role: [backend, backend]\n",
            ["ads.yaml:10: domains[0].role[1]: role 'backend' is given twice"],
            id="twice",
        ),
        pytest.param(
            "  - domain: a.example\n    role: {backend: 1}\n",
            ["ads.yaml:10: domains[0].role: expected a role or a list of roles (got a mapping)"],
            id="mapping",
        ),
        pytest.param(
            "  - domain: a.example\n    role: yes\n",
            [
                "ads.yaml:10: domains[0].role: 'yes', which YAML reads as the boolean true; "
                "quote it if a string is meant"
            ],
            id="yaml-boolean",
        ),
        pytest.param(
            "  - domain: a.example\nexceptions:\n  - domain: ok.a.example\n    role: backend\n",
            [
                "ads.yaml:12: exceptions[0].role: unknown key "
                "(known keys: added, domain, evidence, note)"
            ],
            id="exception-has-no-role",
        ),
    ],
)
def test_role_problems(body: str, expected: list[str]) -> None:
    assert _problems(body) == expected


REJECTED_OK = """\
  - domain: app.example
  - domain: example.net
exceptions:
  - domain: help.example.net
rejected:
  - {domain: Shared.Example, reason: "shared apex", source: "https://example.org/list"}
  - domain: help.example.net
    reason: "under an exception: not blocked"
    source: "owner/repo@0123abcd:data/list"
    added: "2026-12-03"
"""


def test_rejected_names_are_kept_and_never_blocked() -> None:
    blocklist = _parse(REJECTED_OK)
    assert [(r.domain, r.line, r.reason, r.source, r.added) for r in blocklist.rejected] == [
        ("shared.example", 14, "shared apex", "https://example.org/list", ""),
        (
            "help.example.net",
            15,
            "under an exception: not blocked",
            "owner/repo@0123abcd:data/list",
            "2026-12-03",
        ),
    ]
    assert "shared.example" not in {e.domain for e in blocklist.domains}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "  - domain: a.example\nrejected:\n  - domain: x.example\n    reason: r\n",
            ["ads.yaml:11: rejected[0]: missing required key 'source'"],
            id="no-source",
        ),
        pytest.param(
            "  - domain: a.example\nrejected:\n  - {domain: x.example, source: s}\n",
            ["ads.yaml:11: rejected[0]: missing required key 'reason'"],
            id="no-reason",
        ),
        pytest.param(
            "  - domain: a.example\nrejected:\n  - {domain: x.example, source: s, reason: ' '}\n",
            ["ads.yaml:11: rejected[0].reason: say why the name is not blocked"],
            id="blank-reason",
        ),
        pytest.param(
            "  - domain: a.example\nrejected:\n  - x.example\n",
            [
                "ads.yaml:11: rejected[0]: a rejected name is a mapping with "
                + "domain, reason and source"
            ],
            id="plain-string",
        ),
        pytest.param(
            "  - domain: a.example\nrejected:\n"
            + "  - {domain: x.example, source: s, reason: r, why: 1}\n",
            [
                "ads.yaml:11: rejected[0].why: unknown key "
                + "(known keys: added, domain, reason, source)"
            ],
            id="unknown-key",
        ),
        pytest.param(
            "  - domain: a.example\nrejected:\n  - {domain: 'bad name', source: s, reason: r}\n",
            [
                "ads.yaml:11: rejected[0].domain: label 'bad name' has characters other than "
                "a-z 0-9 - _"
            ],
            id="bad-name",
        ),
        pytest.param(
            "  - domain: a.example\nrejected:\n"
            "  - {domain: x.example, source: s, reason: r}\n"
            "  - {domain: X.example., source: s, reason: r}\n",
            ["ads.yaml:12: rejected[1]: x.example is already rejected (line 11)"],
            id="twice",
        ),
        pytest.param(
            "  - domain: a.example\nrejected:\n  - {domain: a.example, source: s, reason: r}\n",
            [
                "ads.yaml:11: rejected[0]: a.example is domains entry a.example (line 9), so the "
                "list blocks it: drop the rejection or the entry"
            ],
            id="also-an-entry",
        ),
        pytest.param(
            "  - domain: a.example\nrejected:\n  - {domain: log.a.example, source: s, reason: r}\n",
            [
                "ads.yaml:11: rejected[0]: log.a.example is under domains entry a.example "
                "(line 9), so the list blocks it: drop the rejection or the entry"
            ],
            id="under-an-entry",
        ),
    ],
)
def test_rejected_problems(body: str, expected: list[str]) -> None:
    assert _problems(body) == expected


def test_select_roles_keeps_chosen_roles_role_less_entries_and_exceptions() -> None:
    blocklist = _parse(
        "  - domain: api.example\n    role: backend\n"
        "  - domain: dl.example\n    role: download\n"
        "  - domain: site.example\n    role: [storefront, download]\n"
        "  - domain: old.example\n"
        "exceptions:\n  - domain: help.site.example\n"
    )
    narrowed = select_roles(blocklist, frozenset({Role.DOWNLOAD}))
    assert [e.domain for e in narrowed.domains] == ["dl.example", "site.example", "old.example"]
    assert narrowed.exceptions == blocklist.exceptions
    assert select_roles(blocklist, ROLES) is blocklist


SHIPPED = ("wechat", "tiktok", "kaspersky", "bypass")


def _shipped() -> list[BlockList]:
    base = shipped_dir()
    return [parse_yaml_list((base / f"{n}.yaml").read_text(), f"{n}.yaml") for n in SHIPPED]


def test_every_shipped_entry_has_a_role_and_evidence() -> None:
    for blocklist in _shipped():
        missing = [e.domain for e in blocklist.domains if not e.roles or not e.evidence]
        assert missing == [], blocklist.name


def test_no_shipped_list_blocks_a_name_another_rejected() -> None:
    lists = _shipped()
    table = DomainTable(lists)
    mask = table.mask(SHIPPED)
    rejected = [(b.name, r.domain) for b in lists for r in b.rejected]
    assert len(rejected) > 500
    blocked = [(name, domain) for name, domain in rejected if table.match(domain, mask)]
    assert blocked == []
