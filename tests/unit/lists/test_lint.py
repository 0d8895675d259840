"""dnsfilter.lists.lint: each finding on the line it belongs to, the PSL, exit codes, and the
shipped lists."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dnsfilter.cli import main
from dnsfilter.lists.lint import DEFAULT_PSL, PublicSuffixList, lint_paths, lint_text

REPO = Path(__file__).resolve().parents[3]

PSL_TEXT = """\
// ===BEGIN ICANN DOMAINS===
com
uk
co.uk
*.ck
!www.ck
// the rule is the first word; the rest of the line is ignored
th  with trailing words
in.th
公司.cn
// ===BEGIN PRIVATE DOMAINS===
akamaized.net
"""
PSL = PublicSuffixList.parse(PSL_TEXT)


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        pytest.param("com", True, id="rule"),
        pytest.param("example.com", False, id="below-rule"),
        pytest.param("co.uk", True, id="two-labels"),
        pytest.param("anything.ck", True, id="wildcard"),
        pytest.param("a.b.ck", False, id="below-wildcard"),
        pytest.param("www.ck", False, id="exception"),
        pytest.param("in.th", True, id="in-th"),
        pytest.param("xn--55qx5d.cn", True, id="idn-rule-in-punycode"),
        pytest.param("akamaized.net", True, id="private-section"),
        pytest.param("net", True, id="implicit-star-rule"),
        pytest.param("tiktok.com.akamaized.net", False, id="alias-under-cdn"),
    ],
)
def test_public_suffix_list(name: str, suffix: bool) -> None:
    assert PSL.is_public_suffix(name) is suffix


@pytest.mark.parametrize(
    ("name", "apex"),
    [
        ("example.com", True),
        ("example.co.uk", True),
        ("www.example.co.uk", False),
        ("co.uk", False),
        ("x.akamaized.net", True),
    ],
)
def test_apex(name: str, apex: bool) -> None:
    assert PSL.is_apex(name) is apex


def test_the_installed_psl_knows_the_names_our_curation_rules_warn_about() -> None:
    if not DEFAULT_PSL.exists():
        pytest.fail(f"{DEFAULT_PSL} is missing: apt-get install publicsuffix")
    psl = PublicSuffixList.load(DEFAULT_PSL)
    for name in ("in.th", "akamaized.net", "edgesuite.net", "map.fastly.net", "co.uk"):
        assert psl.is_public_suffix(name), name
    for name in ("tiktok.com", "qq.com", "tiktok.com.edgesuite.net"):
        assert not psl.is_public_suffix(name), name


HEAD = """\
name: apps
title: Apps
vendor: Test
category: social
description: test
references:
  - url: https://example.org/
    title: t
"""
EVIDENCE = "    evidence: https://example.org/\n"

# Each entry is on a known line (HEAD has 8): the expected findings name them.
FINDINGS_LIST = (
    HEAD
    + "domains:\n"  # 9
    + "  - domain: example.com\n"
    + EVIDENCE  # 10 wide apex without a note
    + "  - domain: a.example.com\n    note: x\n"
    + EVIDENCE  # 12 covered by 10
    + "  - domain: Example.COM.\n    note: x\n"
    + EVIDENCE  # 15 duplicate, not normalized
    + "  - domain: bücher.de\n    note: x\n"
    + EVIDENCE  # 18 IDN
    + "    added: 2026-11-27\n"  # 21 unquoted date
    + "  - domain: in.th\n    note: x\n"
    + EVIDENCE  # 22 public suffix
    + "  - plain.example.org\n"  # 25 plain string
    + "  - domain: qq.com\n    note: x\n"
    + EVIDENCE  # 26 known shared apex
    + "  - domain: x.ok.example.com\n    note: x\n"  # 29 below an exception; no evidence
    + "    evidence: seen somewhere\n"  # 31 evidence with no source
    + "exceptions:\n"  # 32
    + "  - domain: ok.example.com\n"
    + EVIDENCE  # 33
    + "  - domain: nothing.example.net\n"
    + EVIDENCE  # 35 matches nothing
    + "  - domain: qq.com\n"
    + EVIDENCE  # 37 equals an entry
    + "networks:\n"  # 39
    + "  - prefix: 192.0.2.0/24\n"
    + EVIDENCE  # 40
    + "  - prefix: 192.0.2.128/25\n"  # 42 overlaps 40, no evidence
)


def test_every_finding_on_its_line() -> None:
    # Every entry here lacks a role; test_roles_in_lint checks that warning.
    findings = [
        str(f) for f in lint_text(FINDINGS_LIST, "apps.yaml", PSL) if "no role" not in f.message
    ]
    assert findings == [
        "apps.yaml:10: warning: wide entry: example.com is a whole registrable domain; say in "
        "note why everything under it must go",
        "apps.yaml:12: warning: a.example.com is already covered by example.com (line 10)",
        "apps.yaml:15: warning: write 'Example.COM.' as 'example.com'",
        "apps.yaml:15: error: duplicate of line 10",
        "apps.yaml:18: error: 'bücher.de' is not in punycode: write 'xn--bcher-kva.de'",
        "apps.yaml:21: warning: added: 2026-11-27 is read by YAML as a date; quote it",
        "apps.yaml:22: error: in.th is a public suffix: it blocks every site registered under it",
        "apps.yaml:25: warning: 'plain.example.org' is a plain string: write a mapping with "
        "domain and evidence",
        "apps.yaml:26: warning: qq.com: Tencent's shared apex (QQ Mail, wechat.com updaters): "
        "list app-specific names",
        # not also "covered by example.com": the exception between them lifts it
        "apps.yaml:29: error: x.ok.example.com never blocks: exception ok.example.com "
        "(line 33) covers it",
        "apps.yaml:31: warning: evidence 'seen somewhere' is neither a URL nor "
        "owner/repo@commit:path",
        "apps.yaml:35: error: exception nothing.example.net matches nothing: no entry of this "
        "list above it",
        "apps.yaml:37: error: exception qq.com is also an entry (line 26), which therefore "
        "never blocks",
        "apps.yaml:42: warning: no evidence: say where this is documented",
        "apps.yaml:42: warning: 192.0.2.128/25 overlaps 192.0.2.0/24 on line 40",
    ]


CLEAN_LIST = (
    HEAD
    + "domains:\n"
    + "  - domain: example.com\n"
    + "    role: [backend, storefront]\n"
    + '    note: "Wide entry, needed: app-owned apex"\n'
    + '    evidence: "owner/repo@0123abcd:data/apps"\n'
    + '    added: "2026-11-27"\n'
    + "  - domain: app.example.org\n"
    + "    role: backend\n"
    + EVIDENCE
    + "  - domain: dl.example.com\n"
    + "    role: download\n"
    + EVIDENCE
    + "exceptions:\n"
    + "  - domain: help.example.com\n"
    + EVIDENCE
    + "networks:\n"
    + "  - prefix: 192.0.2.0/25\n"
    + EVIDENCE
    + "  - prefix: 192.0.2.128/25\n"
    + EVIDENCE
)


def test_a_clean_list_has_no_findings() -> None:
    assert lint_text(CLEAN_LIST, "apps.yaml", PSL) == []


ROLES_LIST = (
    HEAD
    + "domains:\n"  # 9
    + "  - domain: app.example.com\n"  # 10
    + "    role: [backend, storefront]\n"
    + EVIDENCE
    + "  - domain: dl.app.example.com\n"  # 13 a role the parent lacks: still blocks alone
    + "    role: download\n"
    + EVIDENCE
    + "  - domain: api.app.example.com\n"  # 16 the parent's role: redundant
    + "    role: backend\n"
    + EVIDENCE
    + "  - domain: other.example.org\n"  # 19 no role
    + EVIDENCE
)


def test_roles_in_lint() -> None:
    findings = [str(f) for f in lint_text(ROLES_LIST, "apps.yaml", PSL)]
    assert findings == [
        "apps.yaml:16: warning: api.app.example.com is already covered by app.example.com "
        "(line 10)",
        "apps.yaml:19: warning: no role: say what the name is (backend, telemetry, download, ...)",
    ]


def test_loader_problems_are_findings_with_their_lines() -> None:
    text = CLEAN_LIST.replace("  - domain: app.example.org\n", "  - domain: NO\n    colour: red\n")
    assert [str(f) for f in lint_text(text, "apps.yaml", PSL)] == [
        "apps.yaml:15: error: domains[1].domain: 'NO', which YAML reads as the boolean false; "
        "quote it if a string is meant",
        "apps.yaml:16: error: domains[1].colour: unknown key (known keys: added, domain, "
        "evidence, mode, note, role)",
    ]


def test_a_problem_the_loader_and_the_schema_both_see_is_reported_once() -> None:
    # The loader puts it on the entry's line (13), the schema on the value's (16).
    text = HEAD + "domains:\n  - domain: b.example.org\n" + EVIDENCE + "    role: backend\n"
    text += (
        "  - domain: a.example.org\n" + EVIDENCE + "    role: backend\n    mode:\n      sinkhole\n"
    )
    findings = [str(f) for f in lint_text(text, "apps.yaml", PSL)]
    assert [f for f in findings if "sinkhole" in f] == [
        "apps.yaml:13: error: domains[1].mode: sinkhole is a policy mode, not an entry mode"
    ]


def test_yaml_syntax_error_is_one_finding() -> None:
    assert [str(f) for f in lint_text("name: [unclosed\n", "apps.yaml", PSL)] == [
        "apps.yaml:2: error: expected ',' or ']', but got '<stream end>'"
    ]


def test_name_other_than_the_file_stem() -> None:
    findings = lint_text(CLEAN_LIST, "other.yaml", PSL)
    assert [str(f) for f in findings] == [
        "other.yaml:1: warning: name 'apps' is not the file's stem"
    ]


def test_github_annotations_escape_what_github_would_misread() -> None:
    (finding,) = lint_text(CLEAN_LIST, "dir,x/other:1.yaml", PSL)
    assert finding.github() == (
        "::warning file=dir%2Cx/other%3A1.yaml,line=1::name 'apps' is not the file's stem"
    )


def test_other_formats_get_the_loaders_messages_and_the_name_checks() -> None:
    hosts = (
        "0.0.0.0 example.com\n"
        "0.0.0.0 a.example.com\n"  # covered by line 1
        "0.0.0.0 in.th\n"  # public suffix
        "0.0.0.0 example.com\n"  # duplicate: the loader only counts it
        "127.0.0.1 localhost\n"
    )
    # No wide-entry warning for example.com: a hosts file has no note to explain it with.
    assert [str(f) for f in lint_text(hosts, "apps.hosts", PSL)] == [
        "apps.hosts: warning: 1 duplicate entries (the loader drops them)",
        "apps.hosts:2: warning: a.example.com is already covered by example.com (line 1)",
        "apps.hosts:3: error: in.th is a public suffix: it blocks every site registered under it",
    ]
    assert [str(f) for f in lint_text("0.0.0.0 bad..name\n", "apps.hosts", PSL)] == [
        "apps.hosts:1: error: 'bad..name' has an empty label"
    ]


# ---------------------------------------------------------------------------------------
# Command line


@pytest.fixture
def psl_file(tmp_path: Path) -> Path:
    path = tmp_path / "psl.dat"
    path.write_text(PSL_TEXT)
    return path


def test_exit_0_when_clean(
    tmp_path: Path, psl_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "apps.yaml").write_text(CLEAN_LIST)
    args = ["lists", "lint", "--public-suffix-list", str(psl_file), str(tmp_path / "apps.yaml")]
    assert main(args) == 0
    assert capsys.readouterr().out == ""


def test_exit_1_with_one_line_per_finding(
    tmp_path: Path, psl_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "apps.yaml").write_text(FINDINGS_LIST)
    args = ["lists", "lint", "--public-suffix-list", str(psl_file), str(tmp_path)]
    assert main(args) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    # 15 findings of test_every_finding_on_its_line and a missing role on each of 7 mappings.
    assert len(lines) == 22
    assert lines[0].startswith(f"{tmp_path / 'apps.yaml'}:10: warning: no role")
    assert lines[1].startswith(f"{tmp_path / 'apps.yaml'}:10: warning: wide entry")
    assert "22 findings (6 errors) in 1 files" in captured.err


def test_github_format(tmp_path: Path, psl_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "apps.yaml").write_text(FINDINGS_LIST)
    args = ["lists", "lint", "--format", "github", "--public-suffix-list", str(psl_file)]
    assert main([*args, str(tmp_path / "apps.yaml")]) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"::warning file={tmp_path / 'apps.yaml'},line=10::no role")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["/nonexistent/apps.yaml"], id="missing-path"),
        pytest.param(["--public-suffix-list", "/nonexistent/psl.dat", "."], id="missing-psl"),
        pytest.param(["--config", "/nonexistent/dnsfilter.yaml"], id="missing-config"),
    ],
)
def test_exit_2_on_usage_errors(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lists", "lint", *args]) == 2
    assert "nonexistent" in capsys.readouterr().err


def test_default_is_the_blocklists_folder_of_the_current_directory(
    tmp_path: Path,
    psl_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "blocklists").mkdir()
    (tmp_path / "blocklists" / "apps.yaml").write_text(FINDINGS_LIST)
    monkeypatch.chdir(tmp_path)
    assert main(["lists", "lint", "--public-suffix-list", str(psl_file)]) == 1
    assert capsys.readouterr().out.startswith("blocklists/apps.yaml:10: warning:")


def test_without_a_blocklists_folder_the_configs_lists_are_linted(
    tmp_path: Path,
    psl_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "mine.yaml").write_text(CLEAN_LIST)
    config = tmp_path / "conf" / "dnsfilter.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump({"lists": {"apps": {"file": "../mine.yaml"}}}))
    monkeypatch.chdir(tmp_path)
    args = ["lists", "lint", "--public-suffix-list", str(psl_file), "--config", str(config)]
    assert main(args) == 1
    # The config names the list `apps` but lint reads the file as written: its name is
    # `apps` and its stem `mine`.
    assert capsys.readouterr().out.splitlines() == [
        f"{config.parent / '../mine.yaml'}:1: warning: name 'apps' is not the file's stem"
    ]


# ---------------------------------------------------------------------------------------
# The shipped lists

#: Findings on the shipped lists that the curators accepted, as (file name, message). Empty:
#: the lists lint clean; add a finding here only with the reason in a comment.
ACCEPTED: set[tuple[str, str]] = set()


def test_the_shipped_lists_lint_clean() -> None:
    if not DEFAULT_PSL.exists():
        pytest.fail(f"{DEFAULT_PSL} is missing: apt-get install publicsuffix")
    paths = sorted((REPO / "blocklists").glob("*.yaml"))
    assert {p.name for p in paths} >= {
        "wechat.yaml",
        "tiktok.yaml",
        "kaspersky.yaml",
        "bypass.yaml",
    }
    findings = lint_paths(paths, PublicSuffixList.load(DEFAULT_PSL))
    unexpected = [str(f) for f in findings if (Path(f.file).name, f.message) not in ACCEPTED]
    assert unexpected == []


def test_app_specific_advice_only_for_app_lists() -> None:
    general = FINDINGS_LIST.replace("category: social", "category: other")
    kinds = {f.kind for f in lint_text(general, "apps.yaml", PSL)}
    assert "known-wide" not in kinds
    assert "known-wide" in {f.kind for f in lint_text(FINDINGS_LIST, "apps.yaml", PSL)}
    hosts = "0.0.0.0 app-measurement.com\n0.0.0.0 gifshow.com\n0.0.0.0 qq.com\n"
    assert lint_text(hosts, "ads.hosts", PSL) == []


def test_stevenblack_header_lines_give_no_finding() -> None:
    text = (REPO / "tests" / "vectors" / "lists" / "stevenblack-hosts.txt").read_text()
    findings = lint_text(text, "hosts", PSL)
    assert {f.kind for f in findings} == {"covered"}  # real findings, none on lines 1-20
    assert min(f.line for f in findings) > 20


def test_entries_an_exception_does_not_lift_are_not_called_silenced() -> None:
    adblock = "||x.example^\n@@||ok.x.example^\n||imp.ok.x.example^$important\n"
    assert [f.message for f in lint_text(adblock, "a.txt", PSL, "adblock")] == []
    rpz = "x.example CNAME .\nok.x.example CNAME rpz-passthru.\nin.ok.x.example CNAME .\n"
    assert [f.message for f in lint_text(rpz, "z.rpz", PSL, "rpz")] == []


def _many_covered(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "big.hosts"
    path.write_text(
        "0.0.0.0 ads.example\n" + "".join(f"0.0.0.0 n{i}.ads.example\n" for i in range(count))
    )
    return path


def test_repeated_findings_are_capped_per_kind_with_a_count(
    tmp_path: Path, psl_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _many_covered(tmp_path, 76_850)
    assert main(["lists", "lint", "--public-suffix-list", str(psl_file), str(path)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 21
    assert (
        lines[0] == f"{path}:2: warning: n0.ads.example is already covered by ads.example (line 1)"
    )
    assert lines[-1] == (
        f"{path}: warning: and 76,830 more 'covered' findings (--max-per-kind 0 shows them, "
        "--quiet covered hides the kind)"
    )
    assert captured.err.strip().endswith("76,850 findings (0 errors) in 1 files")
    assert (
        main(
            [
                "lists",
                "lint",
                "--max-per-kind",
                "0",
                "--public-suffix-list",
                str(psl_file),
                str(path),
            ]
        )
        == 1
    )
    assert len(capsys.readouterr().out.splitlines()) == 76_850


def test_a_quieted_kind_is_neither_shown_nor_counted(
    tmp_path: Path, psl_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _many_covered(tmp_path, 30)
    args = ["lists", "lint", "--quiet", "covered", "--public-suffix-list", str(psl_file), str(path)]
    assert main(args) == 0
    assert capsys.readouterr().out == ""
    assert main(["lists", "lint", "--quiet", "nonsense", str(path)]) == 2
    assert (
        "--quiet nonsense: no such kind (kinds: loader, duplicate, covered"
        in capsys.readouterr().err
    )
