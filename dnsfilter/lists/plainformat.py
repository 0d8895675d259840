"""Plain domain lists: one name per line; ``#`` and ``!`` start comments.

``*.example.com`` (the "wildcard" variant some lists publish) reads as ``example.com``:
an entry covers its name and every name below it either way.
"""

from __future__ import annotations

from dnsfilter.lists.model import BlockList
from dnsfilter.lists.textlist import (
    EntrySet,
    LineReport,
    check_name,
    finish,
    gc_paused,
    numbered_lines,
)


@gc_paused
def parse_plain(text: str, filename: str, name: str) -> BlockList:
    """Read a plain list; raise ListError naming file:line for invalid names."""
    report = LineReport(filename)
    entries = EntrySet()
    add = entries.add
    for number, line in numbered_lines(text):
        word = line.strip()
        if not word or word[0] in "#!":
            continue
        if " " in word or "\t" in word or "#" in word:
            words = word.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) > 1:
                report.error(number, f"expected one name, found {len(words)} words")
                continue
            word = words[0]
        if word.startswith("*."):
            word = word[2:]
        domain = check_name(word, number, report)
        if domain is not None:
            add(domain, number)
    return finish(report, name, filename, "plain", entries.entries(), (), entries.duplicates)
