"""dnsfilter.lists: the YAML list format, its exact error messages, and loading list files."""

from __future__ import annotations

import importlib
import ipaddress
from pathlib import Path

import pytest

from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.errors import ListError
from dnsfilter.lists.catalog import load_list, load_lists
from dnsfilter.lists.location import resolve_list_path, shipped_dir
from dnsfilter.lists.model import BlockList, Category, DomainEntry, NetworkEntry, Reference
from dnsfilter.lists.yamlformat import parse_yaml_list

TOP_KEYS = ", ".join(
    [
        "category",
        "description",
        "domains",
        "exceptions",
        "name",
        "networks",
        "references",
        "rejected",
        "title",
        "vendor",
    ]
)
ENTRY_KEYS = "added, domain, evidence, mode, note, role"
EXCEPTION_KEYS = "added, domain, evidence, note"
CATEGORIES = "messaging, social, video, security, bypass, other"
MODES = "null, nxdomain, nodata, refused, sinkhole"

# Eight header lines; the first line of a test's body is line 9 of the file.
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


def _parse(body: str) -> BlockList:
    return parse_yaml_list(HEAD + body, "ads.yaml")


def _problems(text: str) -> list[str]:
    with pytest.raises(ListError) as info:
        parse_yaml_list(text, "ads.yaml")
    return info.value.problems


def _write_list(path: Path, name: str, body: str) -> Path:
    path.write_text(HEAD.replace("name: ads", f"name: {name}") + body, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------
# Valid lists

FULL_LIST = """\
name: apps
title: "Example Apps"
vendor: Example Corp
category: messaging
description: >-
  Names the example app
  uses to reach its backend.
references:
  - url: https://example.com/ban
    title: "The ban"
  - {url: "https://example.com/list", title: "A public list"}
domains:
  - domain: App.Example.COM.
    note: "Wide entry: the app's own apex"
    evidence: "owner/repo@0123abcd:list.txt"
    added: "2026-11-27"
    mode: nxdomain
  - domain: cdn.example.net
    note: CDN alias
    evidence: https://example.com/evidence
    added: 2026-11-28
  - domain: dns.example.org
    mode: "null"
  - plain.example.org
exceptions:
  - domain: help.app.example.com
    note: "Documentation admins still need"
    evidence: https://example.com/help
    added: "2026-11-29"
  - docs.app.example.com
networks:
  - prefix: 192.0.2.0/24
    note: AS64500
    evidence: "owner/repo@0123abcd:as/64500.json"
  - prefix: "2001:db8::/32"
  - {prefix: 198.51.100.7/32}
"""


def test_valid_list_with_every_key() -> None:
    assert parse_yaml_list(FULL_LIST, "apps.yaml") == BlockList(
        name="apps",
        source="apps.yaml",
        title="Example Apps",
        vendor="Example Corp",
        category=Category.MESSAGING,
        description="Names the example app uses to reach its backend.",
        references=(
            Reference("https://example.com/ban", "The ban"),
            Reference("https://example.com/list", "A public list"),
        ),
        domains=(
            DomainEntry(
                "app.example.com",
                13,
                "Wide entry: the app's own apex",
                "owner/repo@0123abcd:list.txt",
                "2026-11-27",
                BlockMode.NXDOMAIN,
            ),
            DomainEntry(
                "cdn.example.net", 18, "CDN alias", "https://example.com/evidence", "2026-11-28"
            ),
            DomainEntry("dns.example.org", 22, mode=BlockMode.NULL),
            DomainEntry("plain.example.org", 24),
        ),
        exceptions=(
            DomainEntry(
                "help.app.example.com",
                26,
                "Documentation admins still need",
                "https://example.com/help",
                "2026-11-29",
            ),
            DomainEntry("docs.app.example.com", 30),
        ),
        networks=(
            NetworkEntry(
                ipaddress.ip_network("192.0.2.0/24"),
                32,
                "AS64500",
                "owner/repo@0123abcd:as/64500.json",
            ),
            NetworkEntry(ipaddress.ip_network("2001:db8::/32"), 35),
            NetworkEntry(ipaddress.ip_network("198.51.100.7/32"), 36),
        ),
        duplicates=0,
    )


def test_plain_string_entries() -> None:
    blocklist = _parse("  - one.example\n  - two.example\n")
    assert blocklist.domains == (DomainEntry("one.example", 9), DomainEntry("two.example", 10))


@pytest.mark.parametrize("category", [pytest.param(c, id=c.value) for c in Category])
def test_every_category(category: Category) -> None:
    text = HEAD.replace("category: other", f"category: {category.value}") + "  - a.example\n"
    assert parse_yaml_list(text, "ads.yaml").category is category


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param("Example.COM", "example.com", id="uppercase"),
        pytest.param("example.com.", "example.com", id="trailing-dot"),
        pytest.param('"EXAMPLE.com."', "example.com", id="quoted-uppercase-trailing-dot"),
        pytest.param("bücher.de", "xn--bcher-kva.de", id="idn"),
        pytest.param("BÜCHER.de.", "xn--bcher-kva.de", id="idn-uppercase-trailing-dot"),
        pytest.param("xn--bcher-kva.de", "xn--bcher-kva.de", id="punycode"),
        pytest.param("_dns.resolver.arpa", "_dns.resolver.arpa", id="underscore"),
        pytest.param('"no.example"', "no.example", id="no-as-a-label"),
        pytest.param("{domain: Mixed.Case.Example.}", "mixed.case.example", id="mapping"),
    ],
)
def test_entries_are_normalized(entry: str, expected: str) -> None:
    assert [e.domain for e in _parse(f"  - {entry}\n").domains] == [expected]


def test_duplicates_are_counted_and_dropped() -> None:
    blocklist = _parse(
        "  - example.com\n"
        "  - other.example\n"
        "  - Example.COM.\n"
        "  - domain: example.com\n"
        "    note: the second note is dropped with its entry\n"
        "  - bücher.de\n"
        "  - xn--bcher-kva.de\n"
    )
    assert blocklist.domains == (
        DomainEntry("example.com", 9),
        DomainEntry("other.example", 10),
        DomainEntry("xn--bcher-kva.de", 14),
    )
    assert blocklist.duplicates == 3


def test_duplicate_exceptions_are_dropped_but_not_counted() -> None:
    blocklist = _parse("  - example.com\nexceptions:\n  - a.example.com\n  - A.example.com.\n")
    assert blocklist.exceptions == (DomainEntry("a.example.com", 11),)
    assert blocklist.duplicates == 0


@pytest.mark.parametrize(
    ("added", "expected"),
    [
        pytest.param("2026-11-27", "2026-11-27", id="unquoted-date"),
        pytest.param('"2026-11-27"', "2026-11-27", id="quoted-date"),
        pytest.param("2024-02-29", "2024-02-29", id="leap-day"),
    ],
)
def test_added_dates(added: str, expected: str) -> None:
    blocklist = _parse(f"  - domain: example.com\n    added: {added}\n")
    assert blocklist.domains[0].added == expected


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("null", BlockMode.NULL, id="null-unquoted"),
        pytest.param('"null"', BlockMode.NULL, id="null-quoted"),
        pytest.param("nxdomain", BlockMode.NXDOMAIN, id="nxdomain"),
        pytest.param("nodata", BlockMode.NODATA, id="nodata"),
        pytest.param("refused", BlockMode.REFUSED, id="refused"),
    ],
)
def test_entry_modes(mode: str, expected: BlockMode) -> None:
    blocklist = _parse(f"  - domain: example.com\n    mode: {mode}\n")
    assert blocklist.domains[0].mode is expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("", id="domains-null"),
        pytest.param("  []\n", id="domains-empty-list"),
    ],
)
def test_empty_domains(body: str) -> None:
    assert _parse(body).domains == ()


# ---------------------------------------------------------------------------------------
# Every problem, with its exact file:line: path: message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "  - NO\n",
            [
                "ads.yaml:9: domains[0]: 'NO', which YAML reads as the boolean false; "
                "quote it if a string is meant"
            ],
            id="unquoted-NO",
        ),
        pytest.param(
            "  - domain: off\n",
            [
                "ads.yaml:9: domains[0].domain: 'off', which YAML reads as the boolean false; "
                "quote it if a string is meant"
            ],
            id="unquoted-off-in-mapping",
        ),
        pytest.param(
            "  - 12\n  - 1.5\n  - ~\n  - [a, b]\n",
            [
                "ads.yaml:9: domains[0]: '12', which YAML reads as the number 12; "
                "quote it if a string is meant",
                "ads.yaml:10: domains[1]: '1.5', which YAML reads as a number; "
                "quote it if a string is meant",
                "ads.yaml:11: domains[2]: '~', which YAML reads as null; "
                "quote it if a string is meant",
                "ads.yaml:12: domains[3]: expected a string (got a list)",
            ],
            id="entries-of-the-wrong-type",
        ),
        pytest.param(
            '  - ""\n  - a..b\n  - .example.com\n',
            [
                "ads.yaml:9: domains[0]: empty name",
                "ads.yaml:10: domains[1]: 'a..b' has an empty label",
                "ads.yaml:11: domains[2]: '.example.com' has an empty label",
            ],
            id="empty-labels",
        ),
        pytest.param(
            f"  - {'a' * 64}.com\n",
            [
                "ads.yaml:9: domains[0]: label 'aaaaaaaaaaaaaaaaaaaa'... "
                "is longer than 63 characters"
            ],
            id="label-too-long",
        ),
        pytest.param(
            "  - " + ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62]) + "\n",
            ["ads.yaml:9: domains[0]: name longer than 253 characters (254)"],
            id="name-too-long",
        ),
        pytest.param(
            '  - "bad char!.com"\n  - exa mple.com\n  - domain: "-bad.com"\n',
            [
                "ads.yaml:9: domains[0]: label 'bad char!' has characters other than a-z 0-9 - _",
                "ads.yaml:10: domains[1]: label 'exa mple' has characters other than a-z 0-9 - _",
                "ads.yaml:11: domains[2]: label '-bad' starts or ends with '-'",
            ],
            id="bad-characters",
        ),
        pytest.param(
            '  - "*.wild.example"\n',
            [
                "ads.yaml:9: domains[0]: '*.wild.example': an entry already matches every name "
                "below it; drop the '*.'"
            ],
            id="wildcard",
        ),
        pytest.param(
            "  - domain: a.example\n    bogus: 1\n",
            [f"ads.yaml:10: domains[0].bogus: unknown key (known keys: {ENTRY_KEYS})"],
            id="unknown-entry-key",
        ),
        pytest.param(
            "  - note: where is the domain\n    evidence: x\n",
            ["ads.yaml:9: domains[0]: missing required key 'domain'"],
            id="entry-without-domain",
        ),
        pytest.param(
            "  - domain: a.example\n    note: 5\n    evidence: [x]\n",
            [
                "ads.yaml:10: domains[0].note: '5', which YAML reads as the number 5; "
                "quote it if a string is meant",
                "ads.yaml:11: domains[0].evidence: expected a string (got a list)",
            ],
            id="note-and-evidence-not-strings",
        ),
        pytest.param(
            '  - domain: a.example\n    added: "yesterday"\n'
            "  - domain: b.example\n    added: 2026-11\n",
            [
                "ads.yaml:10: domains[0].added: expected an ISO date YYYY-MM-DD (got 'yesterday')",
                "ads.yaml:12: domains[1].added: expected an ISO date YYYY-MM-DD (got '2026-11')",
            ],
            id="bad-date",
        ),
        pytest.param(
            "  - domain: a.example\n    added: 2026-13-01\n",
            ["ads.yaml:10: domains[0].added: expected an ISO date YYYY-MM-DD (got '2026-13-01')"],
            id="impossible-unquoted-date",
        ),
        pytest.param(
            "  - domain: a.example\n    mode: blackhole\n"
            "  - domain: b.example\n    mode: ~\n"
            "  - domain: c.example\n    mode: NXDOMAIN\n",
            [
                f"ads.yaml:10: domains[0].mode: unknown mode 'blackhole' ({MODES})",
                "ads.yaml:12: domains[1].mode: '~', which YAML reads as null; "
                "quote it if a string is meant",
                f"ads.yaml:14: domains[2].mode: unknown mode 'NXDOMAIN' ({MODES})",
            ],
            id="bad-mode",
        ),
        pytest.param(
            "  - a.example\nexceptions:\n  - domain: b.a.example\n    mode: nxdomain\n",
            [f"ads.yaml:12: exceptions[0].mode: unknown key (known keys: {EXCEPTION_KEYS})"],
            id="exception-with-mode",
        ),
        pytest.param(
            '  - a.example\nexceptions:\n  - "a..example"\n',
            ["ads.yaml:11: exceptions[0]: 'a..example' has an empty label"],
            id="exception-invalid",
        ),
        pytest.param(
            "  - a.example\n"
            "networks:\n"
            "  - prefix: 192.0.2.1/24\n"
            "  - prefix: garbage\n"
            "  - note: no prefix\n"
            '  - "192.0.2.0/24"\n'
            '  - prefix: "2001:db8::1/32"\n'
            "  - {prefix: 192.0.2.0/24, asn: 64500}\n",
            [
                "ads.yaml:11: networks[0].prefix: 192.0.2.1/24 has host bits set",
                "ads.yaml:12: networks[1].prefix: 'garbage' does not appear to be an IPv4 or "
                "IPv6 network",
                "ads.yaml:13: networks[2]: missing required key 'prefix'",
                "ads.yaml:14: networks[3]: expected a mapping (got the string '192.0.2.0/24')",
                "ads.yaml:15: networks[4].prefix: 2001:db8::1/32 has host bits set",
                "ads.yaml:16: networks[5].asn: unknown key (known keys: evidence, note, prefix)",
            ],
            id="bad-networks",
        ),
        pytest.param(
            "  a.example\n",
            ["ads.yaml:9: domains: expected a list (got the string 'a.example')"],
            id="domains-not-a-list",
        ),
    ],
)
def test_entry_problems(body: str, expected: list[str]) -> None:
    assert _problems(HEAD + body) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """\
name: Ads List
title: Ads
category: adware
extra: 1
domains: []
""",
            [
                "ads.yaml:1: missing required key 'vendor'",
                "ads.yaml:1: missing required key 'description'",
                "ads.yaml:1: missing required key 'references'",
                "ads.yaml:1: name: use a-z, 0-9, - and _ (got 'Ads List')",
                f"ads.yaml:3: category: unknown category 'adware' ({CATEGORIES})",
                f"ads.yaml:4: extra: unknown key (known keys: {TOP_KEYS})",
            ],
            id="unknown-and-missing-top-keys",
        ),
        pytest.param(
            """\
title: Ads
vendor: Example
category: other
description: x
references: [{url: "https://example.org/", title: "x"}]
""",
            [
                "ads.yaml:1: missing required key 'name'",
                "ads.yaml:1: missing required key 'domains'",
            ],
            id="missing-name-and-domains",
        ),
        pytest.param(
            """\
name: no
title: Ads
vendor: Example
category: yes
description: x
references:
  - url: https://example.com/a
  - {url: "https://example.com/b", title: "t", extra: 1}
  - "https://example.com/c"
domains: []
""",
            [
                "ads.yaml:1: name: 'no', which YAML reads as the boolean false; "
                "quote it if a string is meant",
                "ads.yaml:4: category: 'yes', which YAML reads as the boolean true; "
                "quote it if a string is meant",
                "ads.yaml:7: references[0]: a reference needs url and title",
                "ads.yaml:8: references[1].extra: unknown key (known keys: title, url)",
                "ads.yaml:9: references[2]: expected a mapping "
                "(got the string 'https://example.com/c')",
            ],
            id="top-level-traps-and-references",
        ),
        pytest.param(
            """\
name: "Ads"
title: Ads
vendor: Example
category: "Social"
description: x
references: {url: "https://example.com", title: t}
domains: []
""",
            [
                "ads.yaml:1: name: use a-z, 0-9, - and _ (got 'Ads')",
                f"ads.yaml:4: category: unknown category 'Social' ({CATEGORIES})",
                "ads.yaml:6: references: expected a list (got a mapping)",
            ],
            id="uppercase-name-and-category",
        ),
        pytest.param(
            "- a.example\n- b.example\n",
            ["ads.yaml:1: expected a mapping (got a list)"],
            id="top-level-list",
        ),
        pytest.param(
            "",
            ["ads.yaml:1: the file is empty; a list needs name, title, ... domains"],
            id="empty-file",
        ),
        pytest.param(
            "# only a comment\n\n",
            ["ads.yaml:1: the file is empty; a list needs name, title, ... domains"],
            id="comment-only-file",
        ),
        pytest.param(
            "name: ads\ndomains: [a.example\n",
            ["ads.yaml:3: expected ',' or ']', but got '<stream end>'"],
            id="syntax-unclosed-flow-list",
        ),
        pytest.param(
            "name: ads\ndomains:\n  - a.example\n - b.example\n",
            ["ads.yaml:4: expected <block end>, but found '<block sequence start>'"],
            id="syntax-bad-indent",
        ),
        pytest.param(
            "name: ads\ndomains:\n  - a.example\n  - a.example: x: y\n",
            ["ads.yaml:4: mapping values are not allowed here"],
            id="syntax-nested-colon",
        ),
        pytest.param(
            HEAD + "  - a.example\nname: ads2\n",
            ["ads.yaml:10: duplicate key 'name'"],
            id="duplicate-top-key",
        ),
        pytest.param(
            HEAD + "  - domain: a.example\n    note: one\n    note: two\n",
            ["ads.yaml:11: duplicate key 'note'"],
            id="duplicate-entry-key",
        ),
    ],
)
def test_file_problems(text: str, expected: list[str]) -> None:
    assert _problems(text) == expected


def test_boolean_trap_message_says_what_happened_and_what_to_do() -> None:
    (problem,) = _problems(HEAD + "  - example.com\n  - NO\n")
    assert problem == (
        "ads.yaml:10: domains[1]: 'NO', which YAML reads as the boolean false; "
        "quote it if a string is meant"
    )


def test_top_level_strings_of_the_wrong_type_are_reported() -> None:
    # title, vendor and description are required strings like name and category.
    text = """\
name: ads
title: 5
vendor: ~
category: other
description: [x]
references: [{url: "https://example.org/", title: "x"}]
domains: [a.example]
"""
    assert _problems(text) == [
        "ads.yaml:2: title: '5', which YAML reads as the number 5; quote it if a string is meant",
        "ads.yaml:3: vendor: '~', which YAML reads as null; quote it if a string is meant",
        "ads.yaml:5: description: expected a string (got a list)",
    ]


def test_references_must_not_be_empty() -> None:
    # docs/maintainers/list-format.md: references is "yes, non-empty" and the loader "enforces the
    # schema below exactly". The wording is not settled yet; the place and path are.
    text = """\
name: ads
title: Ads
vendor: Example Corp
category: other
description: A test list
references: []
domains: [a.example]
"""
    problems = _problems(text)
    assert len(problems) == 1
    assert problems[0].startswith("ads.yaml:6: references: ")


def test_every_problem_is_reported_at_once() -> None:
    text = """\
name: ads
title: Ads
vendor: Example
category: adware
description: x
references: [{url: "https://example.org/", title: "x"}]
colour: red
domains:
  - NO
  - domain: a..b
  - domain: ok.example
    added: "soon"
    mode: blackhole
exceptions:
  - "*.x.example"
networks:
  - prefix: 10.0.0.1/8
"""
    assert _problems(text) == [
        f"ads.yaml:4: category: unknown category 'adware' ({CATEGORIES})",
        f"ads.yaml:7: colour: unknown key (known keys: {TOP_KEYS})",
        "ads.yaml:9: domains[0]: 'NO', which YAML reads as the boolean false; "
        "quote it if a string is meant",
        "ads.yaml:10: domains[1]: 'a..b' has an empty label",
        "ads.yaml:12: domains[2].added: expected an ISO date YYYY-MM-DD (got 'soon')",
        f"ads.yaml:13: domains[2].mode: unknown mode 'blackhole' ({MODES})",
        "ads.yaml:15: exceptions[0]: '*.x.example': an entry already matches every name "
        "below it; drop the '*.'",
        "ads.yaml:17: networks[0].prefix: 10.0.0.1/8 has host bits set",
    ]


def test_list_error_message_is_the_problems_joined() -> None:
    with pytest.raises(ListError) as info:
        parse_yaml_list(HEAD + "  - a..b\n  - c..d\n", "ads.yaml")
    assert str(info.value) == (
        "ads.yaml:9: domains[0]: 'a..b' has an empty label\n"
        "ads.yaml:10: domains[1]: 'c..d' has an empty label"
    )


# ---------------------------------------------------------------------------------------
# Loading files


def test_load_list_keeps_the_file_name_when_no_name_is_given(tmp_path: Path) -> None:
    path = _write_list(tmp_path / "ads.yaml", "ads", "  - a.example\n")
    blocklist = load_list(path)
    assert (blocklist.name, blocklist.source) == ("ads", str(path))
    assert blocklist.domains == (DomainEntry("a.example", 9),)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(None, "ads", id="no-override"),
        pytest.param("ads", "ads", id="same-name"),
        pytest.param("office-ads", "office-ads", id="config-name-wins"),
    ],
)
def test_load_list_name_override(tmp_path: Path, name: str | None, expected: str) -> None:
    path = _write_list(tmp_path / "ads.yaml", "ads", "  - a.example\n")
    blocklist = load_list(path, name)
    assert blocklist.name == expected
    assert blocklist.domains == (DomainEntry("a.example", 9),)


def test_load_list_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ListError) as info:
        load_list(path)
    assert info.value.problems == [f"{path}: cannot read: No such file or directory"]


def test_load_list_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(HEAD.encode() + b"  - caf\xe9.example\n")
    with pytest.raises(ListError) as info:
        load_list(path)
    assert info.value.problems == [f"{path}: not UTF-8 text: invalid continuation byte"]


def test_load_list_problems_name_the_path(tmp_path: Path) -> None:
    path = _write_list(tmp_path / "ads.yaml", "ads", "  - NO\n")
    with pytest.raises(ListError) as info:
        load_list(path)
    assert info.value.problems == [
        f"{path}:9: domains[0]: 'NO', which YAML reads as the boolean false; "
        "quote it if a string is meant"
    ]


def test_load_lists_in_order(tmp_path: Path) -> None:
    _write_list(tmp_path / "a.yaml", "a", "  - a.example\n")
    (tmp_path / "sub").mkdir()
    _write_list(tmp_path / "sub" / "b.yaml", "b", "  - b.example\n")
    loaded = load_lists([("second", "sub/b.yaml"), ("first", str(tmp_path / "a.yaml"))], tmp_path)
    assert [(b.name, b.source, b.domains[0].domain) for b in loaded] == [
        ("second", str(tmp_path / "sub" / "b.yaml"), "b.example"),
        ("first", str(tmp_path / "a.yaml"), "a.example"),
    ]


def test_load_lists_collects_problems_from_every_file(tmp_path: Path) -> None:
    _write_list(tmp_path / "bad1.yaml", "bad1", "  - NO\n  - a..b\n")
    _write_list(tmp_path / "good.yaml", "good", "  - ok.example\n")
    _write_list(tmp_path / "bad2.yaml", "bad2", "  - domain: x.example\n    mode: loud\n")
    with pytest.raises(ListError) as info:
        load_lists(
            [
                ("bad1", "bad1.yaml"),
                ("good", "good.yaml"),
                ("missing", "missing.yaml"),
                ("bad2", "bad2.yaml"),
            ],
            tmp_path,
        )
    assert info.value.problems == [
        f"{tmp_path / 'bad1.yaml'}:9: domains[0]: 'NO', which YAML reads as the boolean false; "
        "quote it if a string is meant",
        f"{tmp_path / 'bad1.yaml'}:10: domains[1]: 'a..b' has an empty label",
        f"{tmp_path / 'missing.yaml'}: cannot read: No such file or directory",
        f"{tmp_path / 'bad2.yaml'}:10: domains[0].mode: unknown mode 'loud' ({MODES})",
    ]


# ---------------------------------------------------------------------------------------
# Where list files live


def test_shipped_dir_is_the_installed_blocklists_package() -> None:
    module_file = importlib.import_module("dnsfilter.blocklists").__file__
    assert module_file is not None
    assert shipped_dir().resolve() == Path(module_file).resolve().parent


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        pytest.param("ads.yaml", "BASE/ads.yaml", id="relative"),
        pytest.param("lists/ads.yaml", "BASE/lists/ads.yaml", id="relative-subdir"),
        pytest.param("/srv/ads.yaml", "/srv/ads.yaml", id="absolute"),
        pytest.param("~/ads.yaml", "HOME/ads.yaml", id="home"),
        pytest.param("shipped:wechat.yaml", "SHIPPED/wechat.yaml", id="shipped"),
    ],
)
def test_resolve_list_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str, expected: str
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    base = tmp_path / "etc"
    roots = {"BASE": base, "HOME": home, "SHIPPED": shipped_dir()}
    root, _, rest = expected.partition("/")
    want = roots[root] / rest if root in roots else Path(expected)
    assert resolve_list_path(file, base) == want
