"""dnsfilter.lists.diff: names added and removed per list, from files and git revisions."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnsfilter.cli import main
from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.lists.diff import ModeChange, SectionDiff, diff_lists, render_text
from dnsfilter.lists.model import BlockList, DomainEntry, NetworkEntry


def _list(
    domains: dict[str, BlockMode | None],
    exceptions: tuple[str, ...] = (),
    networks: tuple[str, ...] = (),
) -> BlockList:
    return BlockList(
        "apps",
        "apps.yaml",
        domains=tuple(DomainEntry(n, 1, mode=m) for n, m in domains.items()),
        exceptions=tuple(DomainEntry(n, 1) for n in exceptions),
        networks=tuple(NetworkEntry(ipaddress.ip_network(p), 1) for p in networks),
    )


OLD = _list(
    {"a.test": None, "gone.test": None, "canary.test": None},
    exceptions=("ok.a.test",),
    networks=("192.0.2.0/24", "2001:db8::/32"),
)
NEW = _list(
    {"a.test": None, "b.a.test": None, "canary.test": BlockMode.NXDOMAIN, "z.test": None},
    exceptions=("help.a.test",),
    networks=("2001:db8::/32", "198.51.100.0/24", "192.0.2.0/25"),
)


def test_sections_compare_as_sets_in_name_order() -> None:
    d = diff_lists(OLD, NEW, "old.yaml", "new.yaml")
    assert d.domains == SectionDiff(
        added=("b.a.test", "z.test"),
        removed=("gone.test",),
        changed=(ModeChange("canary.test", "", "nxdomain"),),
    )
    assert d.exceptions == SectionDiff(added=("help.a.test",), removed=("ok.a.test",))
    assert d.networks == SectionDiff(
        added=("192.0.2.0/25", "198.51.100.0/24"), removed=("192.0.2.0/24",)
    )
    assert d.changed


def test_unchanged_and_reordered_lists_have_no_changes() -> None:
    reordered = _list(
        {"canary.test": None, "gone.test": None, "a.test": None},
        exceptions=("ok.a.test",),
        networks=("2001:db8::/32", "192.0.2.0/24"),
    )
    assert not diff_lists(OLD, reordered, "a", "b").changed


def test_text() -> None:
    assert render_text([diff_lists(OLD, NEW, "old.yaml", "new.yaml")]) == (
        "--- old.yaml\n"
        "+++ new.yaml\n"
        "list apps: +2 -1 domains, +1 -1 exceptions, +2 -1 networks\n"
        "+ domain    b.a.test\n"
        "+ domain    z.test\n"
        "- domain    gone.test\n"
        "~ domain    canary.test: mode (policy) -> nxdomain\n"
        "+ exception help.a.test\n"
        "- exception ok.a.test\n"
        "+ network   192.0.2.0/25\n"
        "+ network   198.51.100.0/24\n"
        "- network   192.0.2.0/24\n"
        "\n"
        "1 lists changed, 0 unchanged\n"
    )


def test_a_list_that_appears_or_disappears() -> None:
    assert render_text([diff_lists(None, _list({"a.test": None}), "", "new.yaml")]) == (
        "--- (no list)\n"
        "+++ new.yaml\n"
        "list apps (new list): +1 -0 domains, +0 -0 exceptions, +0 -0 networks\n"
        "+ domain    a.test\n"
        "\n"
        "1 lists changed, 0 unchanged\n"
    )
    gone = diff_lists(_list({"a.test": None}), None, "old.yaml", "")
    assert gone.domains.removed == ("a.test",) and not gone.new


# ---------------------------------------------------------------------------------------
# Command line: files


def _document(domains: list[Any], **extra: Any) -> str:
    return yaml.safe_dump(
        {
            "name": "apps",
            "title": "Apps",
            "vendor": "Test",
            "category": "other",
            "description": "test",
            "references": [{"url": "https://example.org/", "title": "t"}],
            "domains": domains,
            **extra,
        }
    )


def test_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old.yaml").write_text(_document(["a.test", "Gone.Test."]))
    # The loader's normalization applies: A.TEST is a.test, so it is not "added".
    (tmp_path / "new.yaml").write_text(_document(["A.TEST", "new.test"]))
    assert main(["lists", "diff", str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml")]) == 0
    out = capsys.readouterr().out
    assert "+ domain    new.test\n- domain    gone.test\n" in out
    assert "a.test" not in out


def test_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old.yaml").write_text(_document(["a.test"]))
    (tmp_path / "new.yaml").write_text(_document(["a.test"], networks=[{"prefix": "192.0.2.0/24"}]))
    args = ["lists", "diff", "--format", "json", str(tmp_path / "old.yaml")]
    assert main([*args, str(tmp_path / "new.yaml")]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document == {
        "lists": [
            {
                "name": "apps",
                "old": str(tmp_path / "old.yaml"),
                "new": str(tmp_path / "new.yaml"),
                "changed": True,
                "domains": {"added": [], "removed": [], "mode_changed": []},
                "exceptions": {"added": [], "removed": []},
                "networks": {"added": ["192.0.2.0/24"], "removed": []},
            }
        ]
    }


def test_other_formats_are_read_as_serve_reads_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "apps.hosts").write_text("0.0.0.0 a.test\n0.0.0.0 gone.test\n")
    (tmp_path / "apps.txt").write_text("# plain list\na.test\nnew.test\n")
    assert main(["lists", "diff", str(tmp_path / "apps.hosts"), str(tmp_path / "apps.txt")]) == 0
    out = capsys.readouterr().out
    assert "list apps: +1 -1 domains" in out
    assert "+ domain    new.test\n- domain    gone.test\n" in out


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        pytest.param(["missing.yaml", "new.yaml"], "missing.yaml: no such file", id="missing"),
        pytest.param(["new.yaml", "bad.yaml"], "bad.yaml:", id="invalid-list"),
        pytest.param(["new.yaml", "new.yaml", "blocklists"], "PATHs need --git", id="paths"),
    ],
)
def test_file_errors_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    stderr: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "new.yaml").write_text(_document(["a.test"]))
    (tmp_path / "bad.yaml").write_text(_document(["a..test"]))
    assert main(["lists", "diff", *args]) == 2
    assert stderr in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Command line: git revisions


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.org", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with two commits: apps changes, other is removed, new appears."""
    root = tmp_path / "repo"
    lists = root / "blocklists"
    lists.mkdir(parents=True)
    _git(root, "init", "-q")
    (lists / "apps.yaml").write_text(_document(["a.test", "gone.test"]))
    (lists / "other.yaml").write_text(_document(["other.test"]).replace("apps", "other"))
    (lists / "same.yaml").write_text(_document(["same.test"]).replace("apps", "same"))
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "v1")
    (lists / "apps.yaml").write_text(_document(["a.test", "added.test"]))
    (lists / "other.yaml").unlink()
    (lists / "new.yaml").write_text(_document(["new.test"]).replace("apps", "new"))
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "v2")
    # A change in the working tree that no revision has.
    (lists / "apps.yaml").write_text(_document(["a.test", "added.test", "uncommitted.test"]))
    monkeypatch.chdir(root)
    return root


def test_git_revisions(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lists", "diff", "--git", "HEAD~1", "HEAD"]) == 0
    assert capsys.readouterr().out == (
        "--- HEAD~1:blocklists/apps.yaml\n"
        "+++ HEAD:blocklists/apps.yaml\n"
        "list apps: +1 -1 domains, +0 -0 exceptions, +0 -0 networks\n"
        "+ domain    added.test\n"
        "- domain    gone.test\n"
        "\n"
        "--- (no list)\n"
        "+++ HEAD:blocklists/new.yaml\n"
        "list new (new list): +1 -0 domains, +0 -0 exceptions, +0 -0 networks\n"
        "+ domain    new.test\n"
        "\n"
        "--- HEAD~1:blocklists/other.yaml\n"
        "+++ (no list)\n"
        "list other (list removed): +0 -1 domains, +0 -0 exceptions, +0 -0 networks\n"
        "- domain    other.test\n"
        "\n"
        "3 lists changed, 1 unchanged\n"
    )


def test_git_revisions_limited_to_a_path_from_a_subdirectory(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo / "blocklists")
    assert main(["lists", "diff", "--git", "HEAD~1", "HEAD", "apps.yaml"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("--- HEAD~1:blocklists/apps.yaml\n")
    assert out.endswith("1 lists changed, 0 unchanged\n")


def test_a_revision_against_the_working_tree(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lists", "diff", "HEAD:blocklists/apps.yaml", "blocklists/apps.yaml"]) == 0
    assert capsys.readouterr().out == (
        "--- HEAD:blocklists/apps.yaml\n"
        "+++ blocklists/apps.yaml\n"
        "list apps: +1 -0 domains, +0 -0 exceptions, +0 -0 networks\n"
        "+ domain    uncommitted.test\n"
        "\n"
        "1 lists changed, 0 unchanged\n"
    )


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        pytest.param(["--git", "nope", "HEAD"], "nope", id="bad-revision"),
        pytest.param(["HEAD:blocklists/none.yaml", "HEAD:blocklists/apps.yaml"], "none.yaml"),
        pytest.param(["--git", "HEAD~1", "HEAD", "docs"], "no *.yaml under docs", id="no-lists"),
    ],
)
def test_git_errors_exit_2(
    repo: Path, capsys: pytest.CaptureFixture[str], args: list[str], stderr: str
) -> None:
    assert main(["lists", "diff", *args]) == 2
    assert stderr in capsys.readouterr().err


def test_an_invalid_list_at_a_revision_is_named_by_revision_and_line(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "blocklists" / "apps.yaml").write_text(_document(["a.test", "bad..test"]))
    _git(repo, "commit", "-q", "-am", "broken")
    assert main(["lists", "diff", "--git", "HEAD~1", "HEAD"]) == 2
    assert "HEAD:blocklists/apps.yaml:" in capsys.readouterr().err
