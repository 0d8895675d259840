"""The line-oriented list formats: hosts, plain, adblock, RPZ; detection; load_list dispatch."""

from __future__ import annotations

import random
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.datapath.policy import DomainTable
from dnsfilter.errors import ListError
from dnsfilter.lists import hostsformat, plainformat
from dnsfilter.lists.adblock import parse_adblock
from dnsfilter.lists.catalog import load_list
from dnsfilter.lists.formats import detect_format, parse_list
from dnsfilter.lists.hostsformat import parse_hosts
from dnsfilter.lists.model import BlockList, DomainEntry
from dnsfilter.lists.plainformat import parse_plain
from dnsfilter.lists.rpz import parse_rpz
from dnsfilter.lists.textlist import MAX_REPORTED, SIMPLE_NAME_LINE, LineReport, read_lines


def _text(text: str) -> str:
    return textwrap.dedent(text)


def _names(entries: Sequence[DomainEntry]) -> list[tuple[str, int]]:
    return [(entry.domain, entry.line) for entry in entries]


def _errors(parse: object, text: str, filename: str) -> list[str]:
    """The unreadable lines: skipped with a warning each, or ListError's problems when
    no line at all gave an entry."""
    assert callable(parse)
    try:
        blocklist = parse(_text(text), filename, "x")
    except ListError as exc:
        return exc.problems
    assert isinstance(blocklist, BlockList)
    assert blocklist.domains or blocklist.exceptions
    skipped = [w for w in blocklist.warnings if w.endswith("; line skipped")]
    assert blocklist.skipped == len(skipped)
    return [w.removesuffix("; line skipped") for w in skipped]


# ---------------------------------------------------------------------------------------
# hosts


def test_hosts_reads_blocking_lines_and_skips_the_machines_own_names() -> None:
    blocklist = parse_hosts(
        _text(
            """\
            # a comment
            127.0.0.1 localhost localhost.localdomain
            ::1 localhost ip6-localhost ip6-loopback
            fe00::0 ip6-localnet
            255.255.255.255 broadcasthost
            0.0.0.0 0.0.0.0
            0.0.0.0 ads.example.com
            127.0.0.1 a.example.net b.example.net   # two names, then a comment
            ::  v6.example.org
            ::1\tTAB.Example.ORG.
            0:0:0:0:0:0:0:0 long-form.example
            0.0.0.0 ads.example.com
            """
        ),
        "block.hosts",
        "block",
    )
    assert _names(blocklist.domains) == [
        ("ads.example.com", 7),
        ("a.example.net", 8),
        ("b.example.net", 8),
        ("v6.example.org", 9),
        ("tab.example.org", 10),
        ("long-form.example", 11),
    ]
    assert blocklist.duplicates == 1
    assert (blocklist.name, blocklist.source) == ("block", "block.hosts")
    # fe00::0 and 255.255.255.255 are real addresses, but for the machine's own names: the
    # standard header of a hosts file (StevenBlack's too), skipped without a warning.
    assert blocklist.warnings == ()


@pytest.mark.parametrize(
    ("line", "warning"),
    [
        pytest.param(
            "192.168.1.10 printer.lan",
            "maps names to 192.168.1.10, not to a null address: a local override; skipped",
            id="real-address",
        ),
        pytest.param(
            "0.0.0.0 com", "'com' is a single label (a top-level domain); skipped", id="tld"
        ),
        pytest.param(
            "0.0.0.0 10.1.2.3", "'10.1.2.3' is an IP address, not a name; skipped", id="ip-name"
        ),
    ],
)
def test_hosts_warnings_name_the_line(line: str, warning: str) -> None:
    blocklist = parse_hosts(f"0.0.0.0 ok.example\n{line}\n", "h.txt", "h")
    assert _names(blocklist.domains) == [("ok.example", 1)]
    assert blocklist.warnings == (f"h.txt:2: {warning}",)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        pytest.param("0.0.0.0 bad..example", "'bad..example' has an empty label", id="empty-label"),
        pytest.param(
            "0.0.0.0 -bad.example", "label '-bad' starts or ends with '-'", id="leading-hyphen"
        ),
        pytest.param(
            "0.0.0.0 " + "a" * 64 + ".example",
            "label 'aaaaaaaaaaaaaaaaaaaa'... is longer than 63 characters",
            id="long-label",
        ),
        pytest.param(
            "ads.example.com",
            "'ads.example.com' is not an IP address (a hosts line is ADDRESS NAME...)",
            id="no-address",
        ),
        pytest.param("0.0.0.0", "address 0.0.0.0 without a name", id="no-name"),
        pytest.param(
            "0.0.0.0 bad_char!.example",
            "label 'bad_char!' has characters other than a-z 0-9 - _",
            id="bad-character",
        ),
    ],
)
def test_hosts_errors_name_the_line(line: str, error: str) -> None:
    assert _errors(parse_hosts, f"0.0.0.0 ok.example\n\n{line}\n", "h.txt") == [f"h.txt:3: {error}"]


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        pytest.param(parse_hosts, "0.0.0.0 *.wild.example\n", id="hosts"),
        pytest.param(parse_plain, "*.wild.example\n", id="plain"),
        pytest.param(parse_adblock, "||*.wild.example^\n", id="adblock"),
        pytest.param(parse_rpz, "wild.example CNAME .\n*.wild.example CNAME .\n", id="rpz"),
    ],
)
def test_wildcards_mean_the_same_in_every_format(parse: object, text: str) -> None:
    assert callable(parse)
    blocklist = parse(text, "f", "f")
    assert [e.domain for e in blocklist.domains] == ["wild.example"]
    assert blocklist.warnings == ()


def test_a_bad_line_is_skipped_not_the_whole_list() -> None:
    text = "0.0.0.0 ok.example\n0.0.0.0 bad..example\n0.0.0.0 also-ok.example\n"
    blocklist = parse_hosts(text, "h.txt", "h")
    assert _names(blocklist.domains) == [("ok.example", 1), ("also-ok.example", 3)]
    assert blocklist.skipped == 1
    assert blocklist.warnings == ("h.txt:2: 'bad..example' has an empty label; line skipped",)


def test_a_file_with_no_readable_line_is_still_an_error() -> None:
    with pytest.raises(ListError) as info:
        parse_plain("<html>\n<body>not found</body>\n", "p.txt", "p")
    assert info.value.problems[0] == (
        "p.txt:1: label '<html>' has characters other than a-z 0-9 - _"
    )


def test_hosts_idn_is_encoded() -> None:
    blocklist = parse_hosts("0.0.0.0 bücher.example\n", "h", "h")
    assert _names(blocklist.domains) == [("xn--bcher-kva.example", 1)]


def test_errors_and_warnings_are_capped_per_file() -> None:
    text = "".join(f"0.0.0.0 bad..{n}.example\n" for n in range(MAX_REPORTED + 5))
    problems = _errors(parse_hosts, text, "h")
    assert len(problems) == MAX_REPORTED + 1
    assert problems[0] == "h:1: 'bad..0.example' has an empty label"
    assert problems[-1] == "h: 5 more errors not shown"
    text = "0.0.0.0 ok.example\n" + text
    blocklist = parse_hosts(text, "h", "h")
    assert blocklist.skipped == MAX_REPORTED + 5
    assert blocklist.warnings[-1] == "h: 5 more skipped lines"
    text = "".join(f"10.0.0.1 n{n}.example\n" for n in range(MAX_REPORTED + 2))
    warnings = parse_hosts(text, "h", "h").warnings
    assert len(warnings) == MAX_REPORTED + 1
    assert warnings[-1] == "h: 2 more warnings not shown"


# ---------------------------------------------------------------------------------------
# plain


def test_plain_reads_one_name_per_line() -> None:
    blocklist = parse_plain(
        _text(
            """\
            # hash comment
            ! bang comment
            ads.example.com
              Spaced.Example.NET.  # trailing comment

            *.wild.example.org
            ads.example.com
            localhost
            """
        ),
        "names.txt",
        "names",
    )
    assert _names(blocklist.domains) == [
        ("ads.example.com", 3),
        ("spaced.example.net", 4),
        ("wild.example.org", 6),
    ]
    assert blocklist.duplicates == 1
    assert blocklist.warnings == ()
    assert blocklist.exceptions == ()


@pytest.mark.parametrize(
    ("line", "error"),
    [
        pytest.param("two words.example", "expected one name, found 2 words", id="two-words"),
        pytest.param("a..b.example", "'a..b.example' has an empty label", id="empty-label"),
        pytest.param("x" * 250 + ".example", "name longer than 253 characters (258)", id="long"),
    ],
)
def test_plain_errors_name_the_line(line: str, error: str) -> None:
    assert _errors(parse_plain, f"ok.example\n{line}\n", "p.txt") == [f"p.txt:2: {error}"]


def test_plain_warns_about_a_top_level_domain() -> None:
    blocklist = parse_plain("ok.example\nexample\n", "p.txt", "p")
    assert _names(blocklist.domains) == [("ok.example", 1)]
    assert blocklist.warnings == (
        "p.txt:2: 'example' is a single label (a top-level domain); skipped",
    )


# ---------------------------------------------------------------------------------------
# adblock


def test_adblock_reads_domain_rules_and_exceptions() -> None:
    blocklist = parse_adblock(
        _text(
            """\
            [Adblock Plus 2.0]
            ! Title: test
            # also a comment
            ||ads.example.com^
            @@||ok.ads.example.com^
            ||Important.Example^$important
            @@||also-ok.example^$important
            ||anchored.example^|
            ||ads.example.com^
            """
        ),
        "filter.txt",
        "filter",
    )
    assert _names(blocklist.domains) == [
        ("ads.example.com", 4),
        ("important.example", 6),
        ("anchored.example", 8),
    ]
    assert _names(blocklist.exceptions) == [("ok.ads.example.com", 5), ("also-ok.example", 7)]
    assert blocklist.duplicates == 1
    assert blocklist.warnings == ()


@pytest.mark.parametrize(
    ("line", "warning"),
    [
        pytest.param("example.com##.banner", "cosmetic (element hiding) rule; skipped", id="css"),
        pytest.param("##.ad", "cosmetic (element hiding) rule; skipped", id="css-generic"),
        pytest.param(
            "example.com#@#.banner", "cosmetic (element hiding) rule; skipped", id="css-exception"
        ),
        pytest.param("/ads[0-9]+\\./", "regular expression rule; skipped", id="regex"),
        pytest.param(
            "|https://x.example/ad.js", "rule with a path; skipped (DNS sees names only)", id="url"
        ),
        pytest.param(
            "ads.example.com",
            "not a host name rule (URL or port); skipped (DNS sees names only)",
            id="bare-substring",
        ),
        pytest.param(
            "||x.example^$third-party",
            "modifier $third-party changes the rule's meaning; skipped",
            id="third-party",
        ),
        pytest.param(
            "||x.example^$important,client=10.0.0.1",
            "modifier $client=10.0.0.1 changes the rule's meaning; skipped",
            id="important-and-client",
        ),
        pytest.param(
            "||x.example/ads/", "rule with a path; skipped (DNS sees names only)", id="path"
        ),
        pytest.param(
            "||x.example/ads^",
            "rule with a path; skipped (DNS sees names only)",
            id="path-anchored",
        ),
        pytest.param(
            "||ads*.x.example^",
            "'ads*.x.example': a wildcard inside a name; skipped (blocking less)",
            id="wildcard-in-label",
        ),
        pytest.param(
            "||x.example:8080^",
            "not a host name rule (URL or port); skipped (DNS sees names only)",
            id="port",
        ),
        pytest.param(
            "||x.example.",
            "'x.example.' ends in a dot, so it matches any top-level domain; skipped",
            id="open-top-level",
        ),
        pytest.param(
            "||192.0.2.1^", "'192.0.2.1' is an IP address, not a name; skipped", id="address"
        ),
        pytest.param(
            "@@/^ok[0-9]\\.x\\.example$/",
            "regular expression exception; skipped: the blocks it lifts stay "
            "(this may block more than its author meant)",
            id="regex-exception",
        ),
        pytest.param(
            "@@||x.example/path^",
            "rule with a path; skipped, as AdGuard Home does (DNS sees names only)",
            id="path-exception",
        ),
        pytest.param(
            "@@||*.com^",
            "exception '*.com' cannot be read without lifting all of 'com'; skipped: the "
            "blocks it lifts stay (this may block more than its author meant)",
            id="exception-of-a-whole-tld",
        ),
    ],
)
def test_adblock_skips_other_syntax_with_a_warning(line: str, warning: str) -> None:
    blocklist = parse_adblock(f"||ok.example^\n{line}\n", "f.txt", "f")
    assert _names(blocklist.domains) == [("ok.example", 1)]
    assert blocklist.exceptions == ()
    assert blocklist.warnings == (f"f.txt:2: {warning}",)


@pytest.mark.parametrize(
    ("line", "block", "warning"),
    [
        pytest.param("||*.x.example^", "x.example", "", id="leading-wildcard"),
        pytest.param(
            "|x.example^|",
            "x.example",
            "|x.example^ matches x.example only; read as ||x.example^ (its subdomains too)",
            id="exact",
        ),
        pytest.param(
            "://x.example^",
            "x.example",
            "|x.example^ matches x.example only; read as ||x.example^ (its subdomains too)",
            id="scheme-anchored",
        ),
        pytest.param(
            "x.example^",
            "x.example",
            "x.example^ also matches names ending in 'x.example'; read as ||x.example^",
            id="unanchored",
        ),
        pytest.param(
            "||x.example",
            "x.example",
            "no ^ after x.example, so it also matches longer names; read as ||x.example^",
            id="no-separator",
        ),
    ],
)
def test_adblock_blocks_read_as_at_most_what_they_match(
    line: str, block: str, warning: str
) -> None:
    blocklist = parse_adblock(f"{line}\n", "f.txt", "f")
    assert [e.domain for e in blocklist.domains] == [block]
    assert blocklist.warnings == ((f"f.txt:1: {warning}",) if warning else ())


@pytest.mark.parametrize(
    ("line", "exception", "why"),
    [
        # The Android Private DNS check: a random label glued to "-ds.metric.gstatic.com".
        pytest.param(
            "@@-ds.metric.gstatic.com^|",
            "metric.gstatic.com",
            "'-ds.metric.gstatic.com' is a pattern",
            id="unanchored-partial-label",
        ),
        pytest.param(
            "@@|affiliate.x.example^|",
            "affiliate.x.example",
            "it means affiliate.x.example only",
            id="exact",
        ),
        pytest.param(
            "@@||cdn.us*.x.example^|", "x.example", "'cdn.us*.x.example' is a pattern", id="glob"
        ),
        pytest.param(
            "@@||email.*.x.example^|", "x.example", "'email.*.x.example' is a pattern", id="star"
        ),
        pytest.param(
            "@@||ok.x.example^$client=10.0.0.1",
            "ok.x.example",
            "modifier $client=10.0.0.1 narrows it",
            id="client",
        ),
        pytest.param("@@||*.ok.x.example^", "ok.x.example", "", id="leading-wildcard"),
        pytest.param("@@||ok.x.example^|", "ok.x.example", "", id="anchored-end"),
    ],
)
def test_adblock_exceptions_widen_rather_than_leave_a_block_on(
    line: str, exception: str, why: str
) -> None:
    blocklist = parse_adblock(f"||x.example^\n{line}\n", "f.txt", "f")
    assert [e.domain for e in blocklist.exceptions] == [exception]
    expected = (
        f"f.txt:2: exception read as @@||{exception}^ ({why}): it lifts more than its "
        "author meant, never less"
    )
    assert blocklist.warnings == ((expected,) if why else ())


def test_adblock_important_and_badfilter() -> None:
    blocklist = parse_adblock(
        _text(
            """\
            ||imp.example^$important
            @@||imp.example^
            ||both.example^$important
            @@||both.example^$important
            ||gone.example^
            ||gone.example^$badfilter
            @@||kept.example^$important
            @@||kept.example^$important,badfilter
            ||stays.example^$important
            ||stays.example^$badfilter
            """
        ),
        "f.txt",
        "f",
    )
    assert [e.domain for e in blocklist.domains] == ["imp.example", "both.example", "stays.example"]
    assert [e.domain for e in blocklist.exceptions] == ["imp.example", "both.example"]
    assert blocklist.important_domains == {"imp.example", "both.example", "stays.example"}
    assert blocklist.important_exceptions == {"both.example"}
    assert blocklist.warnings == (
        "f.txt:5: removed by a $badfilter rule; skipped",
        "f.txt:7: removed by a $badfilter rule; skipped",
    )


@pytest.mark.parametrize(
    ("line", "error"),
    [
        pytest.param("||bad..example^", "'bad..example' has an empty label", id="block"),
        pytest.param("@@||-bad.example^", "label '-bad' starts or ends with '-'", id="exception"),
    ],
)
def test_adblock_errors_name_the_line(line: str, error: str) -> None:
    assert _errors(parse_adblock, f"! c\n||ok.example^\n{line}\n", "f.txt") == [f"f.txt:3: {error}"]


# ---------------------------------------------------------------------------------------
# RPZ

RPZ = """\
$TTL 300
$ORIGIN rpz.example.
@   IN SOA ns.rpz.example. admin.rpz.example. (
        1       ; serial
        3600 600 86400 60 )
    IN NS  ns.rpz.example.
; QNAME triggers
pair.example        CNAME .
*.pair.example      CNAME .
nodata.example 60 IN CNAME *.
*.sub-only.example  CNAME .
exact-only.example  CNAME .
ok.pair.example     CNAME rpz-passthru.
*.ok2.pair.example  CNAME rpz-passthru.
null.example        A     0.0.0.0
null.example        AAAA  ::
Upper.Example.rpz.example. IN CNAME .
"""


def test_rpz_qname_triggers_and_their_actions() -> None:
    blocklist = parse_rpz(RPZ, "policy.rpz", "policy")
    assert [(e.domain, e.line, e.mode) for e in blocklist.domains] == [
        ("pair.example", 8, BlockMode.NXDOMAIN),
        ("nodata.example", 10, BlockMode.NODATA),
        ("sub-only.example", 11, BlockMode.NXDOMAIN),
        ("exact-only.example", 12, BlockMode.NXDOMAIN),
        ("null.example", 15, BlockMode.NULL),
        ("upper.example", 17, BlockMode.NXDOMAIN),
    ]
    assert _names(blocklist.exceptions) == [("ok.pair.example", 13), ("ok2.pair.example", 14)]
    assert blocklist.duplicates == 0
    # *.x without x blocks x too: the one widening the author did not write, so it is flagged.
    assert blocklist.warnings == (
        "policy.rpz:11: *.sub-only.example without sub-only.example: "
        "dnsfilter blocks sub-only.example itself too",
    )


@pytest.mark.parametrize(
    ("record", "warning"),
    [
        pytest.param(
            "32.1.2.0.192.rpz-ip CNAME .",
            "response-IP (rpz-ip) trigger; skipped (QNAME triggers only)",
            id="rpz-ip",
        ),
        pytest.param(
            "ns.evil.example.rpz-nsdname CNAME .",
            "name-server-name (rpz-nsdname) trigger; skipped (QNAME triggers only)",
            id="rpz-nsdname",
        ),
        pytest.param(
            "32.1.2.0.192.rpz-nsip CNAME .",
            "name-server-IP (rpz-nsip) trigger; skipped (QNAME triggers only)",
            id="rpz-nsip",
        ),
        pytest.param(
            "24.0.2.0.192.rpz-client-ip CNAME rpz-passthru.",
            "client-IP (rpz-client-ip) trigger; skipped (QNAME triggers only)",
            id="rpz-client-ip",
        ),
        pytest.param("x.example CNAME rpz-tcp-only.", "rpz-tcp-only action; skipped", id="tcp"),
        pytest.param(
            'x.example TXT "why; it\'s bad"',
            "TXT record is not an RPZ action dnsfilter reads; skipped",
            id="txt",
        ),
        pytest.param(
            "x.other-zone. CNAME .",
            "'x.other-zone' is outside the zone 'rpz.test'; skipped",
            id="out-of-zone",
        ),
        pytest.param("@ MX 10 mail.example.", "MX record at the zone apex; skipped", id="apex"),
        pytest.param("$INCLUDE other.rpz", "$INCLUDE directive; skipped", id="include"),
    ],
)
def test_rpz_skips_what_is_not_a_qname_trigger(record: str, warning: str) -> None:
    text = f"$ORIGIN rpz.test.\n@ SOA ns. admin. 1 2 3 4 5\nkept.example CNAME .\n{record}\n"
    blocklist = parse_rpz(text, "z.rpz", "z")
    assert _names(blocklist.domains) == [("kept.example", 3)]
    assert blocklist.exceptions == ()
    assert blocklist.warnings == (f"z.rpz:4: {warning}",)


@pytest.mark.parametrize(
    ("record", "mode", "warning"),
    [
        pytest.param(
            "x.example CNAME rpz-drop.",
            None,
            "rpz-drop: blocked with the policy's mode (no drop or rewrite here)",
            id="drop",
        ),
        pytest.param(
            "x.example CNAME walled.garden.example.",
            None,
            "CNAME to walled.garden.example.: blocked with the policy's mode "
            "(no drop or rewrite here)",
            id="local-cname",
        ),
        pytest.param(
            "x.example A 192.0.2.80",
            None,
            "local data 192.0.2.80: blocked with the policy's mode (no rewrite)",
            id="local-a",
        ),
    ],
)
def test_rpz_rewrites_become_blocks_in_the_policy_mode(
    record: str, mode: BlockMode | None, warning: str
) -> None:
    blocklist = parse_rpz(f"{record}\n", "z.rpz", "z")
    assert [(e.domain, e.mode) for e in blocklist.domains] == [("x.example", mode)]
    assert blocklist.warnings == (f"z.rpz:1: {warning}",)


def test_rpz_origin_from_an_absolute_soa_owner() -> None:
    text = "rpz.local. 300 IN SOA ns. admin. 1 2 3 4 5\n  NS ns.\nbad.example CNAME .\n"
    blocklist = parse_rpz(text, "z.rpz", "z")
    assert _names(blocklist.domains) == [("bad.example", 3)]
    assert blocklist.warnings == ()


def test_rpz_without_origin_takes_names_as_written() -> None:
    text = "bad.example CNAME .\n*.bad.example CNAME .\nabs.example. CNAME *.\n"
    blocklist = parse_rpz(text, "snippet.rpz", "snippet")
    assert [(e.domain, e.mode) for e in blocklist.domains] == [
        ("bad.example", BlockMode.NXDOMAIN),
        ("abs.example", BlockMode.NODATA),
    ]


def test_rpz_block_and_passthru_on_one_name_keeps_the_block() -> None:
    text = "x.example CNAME .\n*.x.example CNAME rpz-passthru.\n"
    blocklist = parse_rpz(text, "z.rpz", "z")
    assert _names(blocklist.domains) == [("x.example", 1)]
    assert blocklist.exceptions == ()
    assert blocklist.warnings == ("z.rpz:2: x.example is also blocked (line 1); the block is kept",)


def test_rpz_most_specific_trigger_wins_as_in_unbound() -> None:
    text = _text(
        """\
        *.mixed.example CNAME rpz-passthru.
        bad.mixed.example CNAME .
        """
    )
    blocklist = parse_rpz(text, "z.rpz", "z")
    assert blocklist.specific_wins
    table = DomainTable([blocklist])
    mask = table.mask(["z"])
    assert table.match("bad.mixed.example", mask) == (0, "bad.mixed.example")
    assert table.match("x.bad.mixed.example", mask) == (0, "bad.mixed.example")
    assert table.match("good.mixed.example", mask) is None


def test_rpz_repeated_trigger_is_a_duplicate() -> None:
    blocklist = parse_rpz("x.example CNAME .\nx.example CNAME .\n", "z.rpz", "z")
    assert blocklist.duplicates == 1


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param("; c\n  CNAME .\n", "z.rpz:2: record without an owner name", id="no-owner"),
        pytest.param("x.example\n", "z.rpz:1: record without a type", id="no-type"),
        pytest.param("x.example 300 IN\n", "z.rpz:1: record without a type", id="ttl-class-only"),
        pytest.param(
            "x.example CNAME\n", "z.rpz:1: CNAME needs one target (got 0 words)", id="no-target"
        ),
        pytest.param("x.example A 0.0.0\n", "z.rpz:1: '0.0.0' is not an IP address", id="bad-a"),
        pytest.param(
            "x.example AAAA 0.0.0.0\n", "z.rpz:1: 0.0.0.0 is not an AAAA address", id="a-as-aaaa"
        ),
        pytest.param(
            "x..example CNAME .\n", "z.rpz:1: 'x..example' has an empty label", id="bad-name"
        ),
        pytest.param(
            "a.*.example CNAME .\n", "z.rpz:1: 'a.*.example': '*' is only allowed", id="inner-star"
        ),
        pytest.param("$ORIGIN relative\n", "z.rpz:1: $ORIGIN needs one absolute name", id="origin"),
        pytest.param(
            "@ SOA ns. admin. ( 1 2\n 3 4 5\n", "z.rpz:1: '(' is never closed", id="paren"
        ),
        pytest.param("x.example CNAME . )\n", "z.rpz:1: ')' without '('", id="close-paren"),
    ],
)
def test_rpz_errors_name_the_line(text: str, error: str) -> None:
    problems = _errors(parse_rpz, text, "z.rpz")
    assert len(problems) == 1
    assert problems[0].startswith(error)


def test_rpz_errors_after_a_multi_line_record_keep_their_line() -> None:
    text = "@ SOA ns. admin. (\n 1\n 2 3 4 5 )\nok.example CNAME .\nbad..example CNAME .\n"
    assert _errors(parse_rpz, text, "z.rpz") == ["z.rpz:5: 'bad..example' has an empty label"]


# ---------------------------------------------------------------------------------------
# Detection and dispatch


@pytest.mark.parametrize(
    ("filename", "text", "expected"),
    [
        pytest.param("a.yaml", "0.0.0.0 x.example\n", "yaml", id="yaml-extension-wins"),
        pytest.param("a.YML", "", "yaml", id="yml"),
        pytest.param("a.rpz", "", "rpz", id="rpz-extension"),
        pytest.param("db.zone", "", "rpz", id="zone-extension"),
        pytest.param("a.hosts", "", "hosts", id="hosts-extension"),
        pytest.param("/etc/hosts", "", "hosts", id="hosts-file"),
        pytest.param("https://lists.example/a/b.rpz?x=1", "", "rpz", id="url-path"),
        pytest.param("a.txt", "# c\n0.0.0.0 x.example\n0.0.0.0 y.example\n", "hosts", id="hosts"),
        pytest.param("a.txt", "! c\nx.example\ny.example\n", "plain", id="plain"),
        pytest.param("a.txt", "[Adblock Plus 2.0]\nx.example\n", "adblock", id="adblock-header"),
        pytest.param("a.txt", "! c\n||x.example^\n@@||y.example^\n", "adblock", id="adblock"),
        pytest.param("a.txt", "$TTL 300\n@ SOA a. b. 1 2 3 4 5\n", "rpz", id="rpz-ttl"),
        pytest.param("a.txt", "x.example CNAME .\ny.example CNAME .\n", "rpz", id="rpz-records"),
        pytest.param("a.txt", "# c\nname: ads\ntitle: Ads\n", "yaml", id="yaml-content"),
        pytest.param("a.txt", "", "plain", id="empty"),
        pytest.param("a.txt", "0.0.0.0 x.example\ny.example\nz.example\n", "plain", id="majority"),
    ],
)
def test_detect_format(filename: str, text: str, expected: str) -> None:
    assert detect_format(text, filename) == expected


def test_parse_list_uses_the_given_format_over_detection() -> None:
    # The text sniffs as hosts; forced to plain, its two-word lines are errors.
    with pytest.raises(ListError) as info:
        parse_list("0.0.0.0 x.example\n", "a.txt", "a", "plain")
    assert info.value.problems == ["a.txt:1: expected one name, found 2 words"]


@pytest.mark.parametrize(
    ("filename", "body", "format", "expected_name"),
    [
        pytest.param("ads.hosts", "0.0.0.0 x.example\n", None, "ads", id="hosts-by-extension"),
        pytest.param("ads.txt", "x.example\n", None, "ads", id="plain-sniffed"),
        pytest.param("ads.txt", "||x.example^\n", "adblock", "ads", id="adblock-given"),
        pytest.param("ads.zone", "x.example CNAME .\n", None, "ads", id="rpz-by-extension"),
    ],
)
def test_load_list_dispatches_on_format(
    tmp_path: Path, filename: str, body: str, format: str | None, expected_name: str
) -> None:
    path = tmp_path / filename
    path.write_text(body, encoding="utf-8")
    blocklist = load_list(path, format=format)
    assert isinstance(blocklist, BlockList)
    assert (blocklist.name, blocklist.source) == (expected_name, str(path))
    assert [entry.domain for entry in blocklist.domains] == ["x.example"]
    assert load_list(path, "named", format).name == "named"


def test_load_list_drops_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfx.example\n")
    assert [entry.domain for entry in load_list(path).domains] == ["x.example"]


# ---------------------------------------------------------------------------------------
# runs of simple lines (read_lines) against the per-line readers

# Each one a line the run patterns must either take exactly as the per-line reader would,
# or leave to it: spellings, limits, local names, problems and line endings.
_TRICKY_NAMES = [
    "ok.example",
    "Upper.Example",
    "trailing.dot.",
    "localhost.localdomain",
    "localhost",
    "com",
    "10.1.2.3",
    "0.0.0.0",
    "ends.in.b1",
    "1.starts-with-a-digit.example",
    "_dmarc.example",
    "dou--ble.example",
    "-lead.example",
    "trail-.example",
    "a" * 63 + ".example",
    "a" * 64 + ".example",
    ".".join(["a" * 63] * 3 + ["b" * 61]),  # 253 characters
    ".".join(["a" * 63] * 3 + ["b" * 62]),  # 254 characters
    "a..b.example",
    ".lead.example",
    "*.wild.example",
    "bücher.example",
    "xn--bcher-kva.example",
    "dup.example",
    "DUP.example",
]
_TRICKY_PLAIN = [
    *_TRICKY_NAMES,
    "",
    "# comment",
    "! comment",
    "spaced.example # note",
    "tab.example\t",
    "  indented.example",
    "two words.example",
    "crlf.example\r",
    "lone\rcr.example",
    "form-feed.example\x0c",
]
_TRICKY_HOSTS = [
    *(f"0.0.0.0 {name}" for name in _TRICKY_NAMES),
    *(f"127.0.0.1 {name}" for name in _TRICKY_NAMES[:8]),
    "0.0.0.0\ttab.example",
    "0.0.0.0   spaces.example",
    "0.0.0.0 two.example names.example",
    "0.0.0.0 comment.example # note",
    "0.0.0.0 trailing-space.example ",
    "0.0.0.0 crlf.example\r",
    "::1 v6.example",
    "10.0.0.1 real-address.example",
    "0.0.0.00 bad-address.example",
    "0.0.0.0",
    "# comment",
    "",
]


def _outcome(parse: object, text: str) -> object:
    assert callable(parse)
    try:
        blocklist = parse(text, "f.txt", "f")
    except ListError as exc:
        return exc.problems
    return _names(blocklist.domains), blocklist.duplicates, blocklist.warnings


def _line_by_line(
    monkeypatch: pytest.MonkeyPatch, module: object, parse: object, text: str
) -> object:
    # A pattern that takes no run hands every line to the format's per-line reader.
    with monkeypatch.context() as patch:
        patch.setattr(module, "_SIMPLE_LINES", re.compile(""))
        return _outcome(parse, text)


_FORMATS = [
    pytest.param(plainformat, parse_plain, _TRICKY_PLAIN, "ok.example", id="plain"),
    pytest.param(hostsformat, parse_hosts, _TRICKY_HOSTS, "0.0.0.0 ok.example", id="hosts"),
]


@pytest.mark.parametrize(("module", "parse", "tricky", "simple"), _FORMATS)
def test_runs_read_each_tricky_line_as_the_line_reader_does(
    monkeypatch: pytest.MonkeyPatch, module: object, parse: object, tricky: list[str], simple: str
) -> None:
    for line in tricky:
        # Between simple lines, so that a run ends and starts again around it.
        for text in (f"{simple}\n{line}\n{simple}\n", f"{simple}\n{line}", f"{line}\n"):
            assert _outcome(parse, text) == _line_by_line(monkeypatch, module, parse, text), text


@pytest.mark.parametrize(("module", "parse", "tricky", "simple"), _FORMATS)
def test_runs_read_a_mixed_file_as_the_line_reader_does(
    monkeypatch: pytest.MonkeyPatch, module: object, parse: object, tricky: list[str], simple: str
) -> None:
    rng = random.Random(5)
    lines = [
        rng.choice(tricky) if rng.random() < 0.2 else simple.replace("ok", f"n{rng.randrange(300)}")
        for _ in range(3000)
    ]
    text = "\n".join(lines) + "\n"
    expected = _line_by_line(monkeypatch, module, parse, text)
    assert _outcome(parse, text) == expected
    # And without the lines that are errors, so the entries themselves are compared.
    valid = "\n".join(line for line in lines if isinstance(_outcome(parse, line), tuple)) + "\n"
    outcome = _outcome(parse, valid)
    assert isinstance(outcome, tuple)
    assert outcome == _line_by_line(monkeypatch, module, parse, valid)


def test_read_lines_gives_the_line_reader_only_lines_outside_runs() -> None:
    seen: list[tuple[int, str]] = []

    def read_line(line: str, number: int, report: LineReport) -> list[str]:
        seen.append((number, line))
        return [line.lower()] if "." in line else []

    text = "a.example\n# note\nb.example\nB.example\r\nc.example\nlocalhost.localdomain\nd.example"
    simple = re.compile(rf"(?:{SIMPLE_NAME_LINE})*+")
    entries, duplicates = read_lines(text, LineReport("f"), simple, str.split, read_line)
    assert seen == [(2, "# note"), (4, "B.example"), (6, "localhost.localdomain"), (7, "d.example")]
    assert _names(entries) == [
        ("a.example", 1),
        ("b.example", 3),
        ("c.example", 5),
        ("localhost.localdomain", 6),
        ("d.example", 7),
    ]
    assert duplicates == 1


def test_plain_list_of_simple_lines_keeps_first_lines_of_repeats() -> None:
    blocklist = parse_plain("a.example\nb.example\na.example\nc.example\nb.example\n", "p", "p")
    assert _names(blocklist.domains) == [("a.example", 1), ("b.example", 2), ("c.example", 4)]
    assert blocklist.duplicates == 2
