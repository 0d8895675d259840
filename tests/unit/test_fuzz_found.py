"""What the coverage-guided fuzzer (fuzz/, scripts/fuzz.sh) found, each as its smallest input.

Each is a plain regression test with its reproducer. A bug found and not fixed yet is
xfail(strict=True): the day it is fixed the test passes, strict xfail fails the suite, and
the marker must come off.
"""

from __future__ import annotations

import dns.message
import pytest

from dnsfilter.config import parse_config
from dnsfilter.config.yamltree import MAX_ALIAS_NODES, MAX_DEPTH
from dnsfilter.datapath.cache import TtlPolicy, make_entry, make_passthrough
from dnsfilter.datapath.scrub import scrub
from dnsfilter.datapath.wire import HEADER_LEN, scan_response
from dnsfilter.errors import ConfigError, FormatError, ListError
from dnsfilter.lists.formats import parse_list


def _yaml_problems(text: str) -> list[str]:
    with pytest.raises(ListError) as raised:
        parse_list(text, "list.yaml", "", "yaml")
    return raised.value.problems


def _config_problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "cfg.yaml", None)
    return raised.value.problems


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("[" * 5000, 1, id="flow-sequences"),
        pytest.param("{a: " * 3000, 1, id="flow-mappings"),
        pytest.param("- " * 3000 + "x\n", 1, id="compact-sequences"),
        pytest.param("".join(" " * i + "- \n" for i in range(0, 600, 2)), 65, id="block"),
    ],
)
def test_yaml_nested_deeper_than_max_depth_is_a_problem(text: str, line: int) -> None:
    """PyYAML composes recursively: 5,000 '[' raised RecursionError out of parse_list (and
    out of a list refresh, which catches only DownloadError) and out of parse_config; and it
    scans nested flow collections in quadratic time (8,000 '[': 23 s before the error)."""
    message = f"{line}: collections nested more than {MAX_DEPTH} deep"
    assert _yaml_problems(text) == [f"list.yaml:{message}"]
    assert _config_problems(text) == [f"cfg.yaml:{message}"]


def test_yaml_nested_max_depth_deep_still_reads() -> None:
    text = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert _yaml_problems(text) == ["list.yaml:1: expected a mapping (got a list)"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("a: &a [*a]\n", 1, id="sequence"),
        pytest.param("&a {x: *a}\n", 1, id="mapping"),
        pytest.param("domains:\n  - &e {domain: x.example, note: [*e]}\n", 2, id="entry"),
    ],
)
def test_yaml_alias_inside_its_own_anchor_is_a_problem(text: str, line: int) -> None:
    """An alias to the node that holds it makes a cycle, which the tree walk followed until
    RecursionError (11 bytes of YAML)."""
    message = f"{line}: an alias refers to a node that holds it"
    assert _yaml_problems(text) == [f"list.yaml:{message}"]
    assert _config_problems(text) == [f"cfg.yaml:{message}"]


def _alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused_before_it_is_expanded() -> None:
    """Six lines of aliases to aliases (334 bytes) expand to a million nodes: 4 s to refuse
    before the check, 48 s with a seventh line and ten times the memory each line more."""
    message = f"list.yaml: aliases expand the document by more than {MAX_ALIAS_NODES} nodes"
    assert _yaml_problems(_alias_bomb(6)) == [message]
    assert _config_problems(_alias_bomb(6)) == [message.replace("list.yaml", "cfg.yaml")]


def test_yaml_anchors_within_the_budget_still_read() -> None:
    """Anchors themselves are fine: a config that reuses a policy's lists reads as before."""
    config = parse_config(
        """
upstream: {servers: ["127.0.0.1:53"]}
networks: {lan: ["192.0.2.0/24"], guests: ["198.51.100.0/24"]}
lists: {apps: {file: apps.txt}}
policies:
  p: {networks: [lan], lists: &lists [apps]}
  q: {networks: [guests], lists: *lists, mode: nxdomain}
""",
        "cfg.yaml",
        None,
    )
    assert [(p.name, p.lists) for p in config.policies] == [("p", ("apps",)), ("q", ("apps",))]


#: An upstream answer whose additional section holds the OPT first, then two glue records;
#: the second one's owner is a compression pointer (0xc03d, offset 61) to the first one's
#: name, ns1.example.test. Records after the OPT are legal (RFC 6891 6.1.1 only says there
#: is one OPT, in the additional section).
OPT_BEFORE_GLUE = bytes.fromhex(
    "1234 8180 0001 0001 0000 0003"
    "03 777777 07 6578616d706c65 04 74657374 00 0001 0001"  # www.example.test A IN
    "c00c 0001 0001 0000012c 0004 c000020a"  # www.example.test A 192.0.2.10
    "00 0029 04d0 00 00 0000 0000"  # OPT at offset 50, 11 octets
    "03 6e7331 c010 0001 0001 0000003c 0004 c0000201"  # ns1.example.test A 192.0.2.1 (at 61)
    "c03d 0001 0001 0000003c 0004 c0000202"  # (pointer to 61) A 192.0.2.2
)


@pytest.mark.parametrize("cacheable", [True, False], ids=["make_entry", "make_passthrough"])
def test_records_after_a_mid_section_opt_keep_their_names(cacheable: bool) -> None:
    scan = scan_response(OPT_BEFORE_GLUE)
    if cacheable:
        entry = make_entry(OPT_BEFORE_GLUE, scan, 0.0, TtlPolicy())
        assert entry is not None
    else:
        entry = make_passthrough(OPT_BEFORE_GLUE, scan, 0.0)
    question = OPT_BEFORE_GLUE[HEADER_LEN : scan.question_end]
    served = entry.reply(0x1234, 0x0100, question, b"", 0.0, False)
    upstream = dns.message.from_wire(OPT_BEFORE_GLUE)
    ours = dns.message.from_wire(served)
    # Served before the fix: "ns1.example.test. A 192.0.2.1" and ". A 192.0.2.2" (the pointer
    # lands on the root label that ends the first glue record's owner).
    assert [str(r.name) for r in ours.additional] == [str(r.name) for r in upstream.additional]


_RPZ_HEAD = "$ORIGIN rpz.example.\n"


@pytest.mark.parametrize(
    "record",
    [
        pytest.param("bad.example CNAME ( . )\n", id="parenthesized"),
        pytest.param("bad.example CNAME (\n  . )\n", id="parentheses-over-two-lines"),
        pytest.param("bad.example CNAME ( . )\r\n", id="crlf"),
        pytest.param("bad.example\fCNAME .\n", id="form-feed-no-comment"),
        pytest.param("bad.example\fCNAME . ; why\n", id="form-feed-and-comment"),
        pytest.param("bad.example\xa0CNAME . ; why\n", id="nbsp-and-comment"),
    ],
)
def test_rpz_record_reads_the_same_whatever_path_reads_it(record: str) -> None:
    """Found by the rpz target's check that a comment on a line changes nothing: the full
    word reader (lines with a quote, a parenthesis or a comment) kept the line's newline in
    its last word after a parenthesis (CNAME "( . )" had two targets, '.' and a newline) and
    split on spaces and tabs only, where the fast path's str.split() takes any whitespace."""
    blocklist = parse_list(_RPZ_HEAD + record, "z.rpz", "z", "rpz")
    assert [entry.domain for entry in blocklist.domains] == ["bad.example"]
    assert blocklist.warnings == ()


#: As OPT_BEFORE_GLUE, with the NS record that puts the glue in bailiwick, so scrub keeps it
#: when minimal_responses is off: the glue's owner points into the NS record's rdata (62).
OPT_BEFORE_GLUE_WITH_NS = bytes.fromhex(
    "1234 8180 0001 0001 0001 0003"
    "03 777777 07 6578616d706c65 04 74657374 00 0001 0001"  # www.example.test A IN
    "c00c 0001 0001 0000012c 0004 c000020a"  # www.example.test A 192.0.2.10
    "c010 0002 0001 00000e10 0006 036e7331 c010"  # example.test NS ns1.example.test
    "00 0029 04d0 00 00 0000 0000"  # OPT at offset 68
    "c03e 0001 0001 0000003c 0004 c0000201"  # ns1.example.test A 192.0.2.1 (at 79)
    "c04f 0001 0001 0000003c 0004 c0000202"  # (pointer to 79) A 192.0.2.2
)


def test_records_after_a_mid_section_opt_survive_scrub_and_the_cache() -> None:
    scan = scan_response(OPT_BEFORE_GLUE_WITH_NS)
    wire, kept = scrub(OPT_BEFORE_GLUE_WITH_NS, scan, minimal=False)
    assert len(kept.records) == 4
    entry = make_entry(wire, kept, 0.0, TtlPolicy())
    assert entry is not None
    served = entry.reply(0x1234, 0x0100, wire[HEADER_LEN : kept.question_end], b"", 0.0, False)
    ours = dns.message.from_wire(served)
    assert ours.additional == dns.message.from_wire(OPT_BEFORE_GLUE_WITH_NS).additional


#: Found by the response target: the A record's owner is a pointer to offset 11, inside the
#: header (ARCOUNT's low octet, 0x01 here: a one-octet label, then the question's first
#: octets). The upstream's message reads that name as "\003."; the reply served from the
#: cache has the client's header, ARCOUNT 0 without EDNS, and the client reads ".".
HEADER_POINTER = bytes.fromhex(
    "1234 8180 0001 0002 0000 0001"
    "03 000000 00 0001 0001"  # a one-label name of three NULs, A IN
    "c00c 0005 0001 0000012c 0006 03 63646e c010"  # CNAME cdn. (pointer to the root at 16)
    "c00b 0001 0001 0000003c 0004 c0020001"  # owner: pointer to offset 11, the header
    "00 0029 04d0 00 00 8000 0000"  # OPT
)


def test_a_name_pointing_into_the_header_is_refused_or_served_as_read() -> None:
    try:
        scan = scan_response(HEADER_POINTER)
    except FormatError:
        return  # refused: one way to fix it
    entry = make_passthrough(HEADER_POINTER, scan, 0.0)
    served = entry.reply(
        0x4321, 0x0100, HEADER_POINTER[HEADER_LEN : scan.question_end], b"", 0.0, False
    )
    upstream = dns.message.from_wire(HEADER_POINTER)
    assert dns.message.from_wire(served).answer == upstream.answer
