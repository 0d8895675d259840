"""Plain domain lists: one name per line; ``#`` and ``!`` start comments.

``*.example.com`` (the "wildcard" variant some lists publish) reads as ``example.com``:
an entry covers its name and every name below it either way.
"""

from __future__ import annotations

import re

from dnsfilter.lists.model import BlockList
from dnsfilter.lists.textlist import (
    SIMPLE_NAME_LINE,
    LineReport,
    check_name,
    finish,
    gc_paused,
    read_lines,
)

# Lines that are a bare name, taken a run at a time; a run splits on its newlines.
_SIMPLE_LINES = re.compile(rf"(?:{SIMPLE_NAME_LINE})*+")


@gc_paused
def parse_plain(text: str, filename: str, name: str) -> BlockList:
    """Read a plain list; raise ListError naming file:line for invalid names."""
    report = LineReport(filename)
    domains, duplicates = read_lines(text, report, _SIMPLE_LINES, str.split, _read_line)
    return finish(report, name, filename, "plain", domains, (), duplicates)


def _read_line(line: str, number: int, report: LineReport) -> list[str]:
    word = line.strip()
    if not word or word[0] in "#!":
        return []
    if " " in word or "\t" in word or "#" in word:
        words = word.split("#", 1)[0].split()
        if not words:
            return []
        if len(words) > 1:
            report.error(number, f"expected one name, found {len(words)} words")
            return []
        word = words[0]
    if word.startswith("*."):
        word = word[2:]
    domain = check_name(word, number, report)
    return [] if domain is None else [domain]
