"""Every relative link in README.md and docs/ points at a file that exists, and at a heading of
it when the link names one (``page.md#anchor``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.docs.markdown import ROOT, anchors, doc_files, links, where


def _broken(page: Path) -> list[str]:
    problems = []
    for line, target in links(page):
        if "://" in target or target.startswith("mailto:"):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / unquote(file_part)).resolve() if file_part else page
        if not dest.exists():
            problems.append(f"{where(page, line)}: {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where(page, line)}: {target}: no heading #{anchor} there")
        elif ROOT not in dest.parents and dest != ROOT:
            problems.append(f"{where(page, line)}: {target}: outside the repository")
    return problems


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert _broken(page) == []


def test_a_broken_link_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# There\n\n## A section\n")
    page.write_text(
        "[ok](there.md#a-section) [gone](missing.md) [no anchor](there.md#nope)\n"
        "`[in code](missing.md)`\n```\n[in a block](missing.md)\n```\n"
    )
    assert [target for _, target in links(page)] == [
        "there.md#a-section",
        "missing.md",
        "there.md#nope",
    ]
    assert anchors(tmp_path / "there.md") == {"there", "a-section"}
