"""The repository's Markdown read as the docs' tests need it: fenced blocks, links, anchors.

A block's kind comes from the HTML comment on the line before its fence (blank lines between
are allowed): ``<!-- fragment -->``, ``<!-- list: FORMAT -->``, ``<!-- file: NAME -->``,
``<!-- exit: N -->``, ``<!-- run: serve -->``, ``<!-- output -->``, ``<!-- not-run: REASON -->``
(docs/developers/testing.md, "The docs' own tests").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^(\s*)(`{3,})(.*)$")
_MARKER = re.compile(r"^<!--\s*([a-z-]+)(?::\s*(.*?))?\s*-->$")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CODE_SPAN = re.compile(r"(`+).*?\1")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def doc_files() -> list[Path]:
    """Every Markdown page a reader walks: the README, docs/ and the shipped lists' README."""
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").rglob("*.md")),
        ROOT / "blocklists" / "README.md",
    ]


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


@dataclass(frozen=True)
class Block:
    """One fenced code block: its info string, the marker before it and its text."""

    path: Path
    line: int  #: 1-based line of the opening fence
    info: str  #: the word after the fence ("yaml", "sh", "" ...)
    marker: str  #: the marker's keyword ("" without one)
    argument: str  #: what follows the marker's colon ("" without one)
    text: str

    @property
    def where(self) -> str:
        return where(self.path, self.line)


def blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    found: list[Block] = []
    marker, argument = "", ""
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            stripped = lines[i].strip()
            match = _MARKER.match(stripped)
            if match:
                marker, argument = match.group(1), match.group(2) or ""
            elif stripped:
                marker, argument = "", ""
            i += 1
            continue
        indent, ticks, info = fence.groups()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(ticks):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        found.append(Block(path, i + 1, info.strip(), marker, argument, "\n".join(body) + "\n"))
        marker, argument = "", ""
        i = j + 1
    return found


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every line outside fenced blocks, code spans removed."""
    out: list[tuple[int, str]] = []
    fence = ""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = _FENCE.match(line)
        if match and (not fence or match.group(2).startswith(fence)):
            fence = "" if fence else match.group(2)
            continue
        if not fence:
            out.append((number, _CODE_SPAN.sub("", line)))
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link in the page's prose."""
    return [
        (number, match.group(1)) for number, text in _prose(path) for match in _LINK.finditer(text)
    ]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    fence = ""
    for line in path.read_text().splitlines():
        match = _FENCE.match(line)
        if match and (not fence or match.group(2).startswith(fence)):
            fence = "" if fence else match.group(2)
            continue
        heading = None if fence else _HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found
