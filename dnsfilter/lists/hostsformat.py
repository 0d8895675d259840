"""Hosts files: ``0.0.0.0 name [name...]``, one address per line, ``#`` comments.

A line blocks its names only when the address is a null or loopback address (``0.0.0.0``,
``127.0.0.1``, ``::``, ``::1``, ...): that is how blocklists are written. A line mapping a
name to a real address is a local override, not a block, and is skipped with a warning.
The machine's own names (localhost, broadcasthost, ip6-*) are skipped silently.
"""

from __future__ import annotations

import ipaddress
import re

from dnsfilter.lists.model import BlockList
from dnsfilter.lists.textlist import (
    LOCAL_NAMES,
    SIMPLE_NAME_LINE,
    LineReport,
    check_name,
    finish,
    gc_paused,
    read_lines,
)

# The spellings nearly every line uses; anything else is parsed with ipaddress.
_BLOCKING_ADDRESSES = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1", "0:0:0:0:0:0:0:0"})
# Lines of one of the two usual addresses and one bare name, taken a run at a time.
_SIMPLE_LINES = re.compile(rf"(?:(?:0\.0\.0\.0|127\.0\.0\.1)[ \t]++{SIMPLE_NAME_LINE})*+")


@gc_paused
def parse_hosts(text: str, filename: str, name: str) -> BlockList:
    """Read a hosts file; raise ListError naming file:line for invalid addresses or names."""
    report = LineReport(filename)
    domains, duplicates = read_lines(text, report, _SIMPLE_LINES, _simple_names, _read_line)
    return finish(report, name, filename, "hosts", domains, (), duplicates)


def _simple_names(run: str) -> list[str]:
    # A run alternates address, name.
    return run.split()[1::2]


def _read_line(line: str, number: int, report: LineReport) -> list[str]:
    comment = line.find("#")
    if comment >= 0:
        line = line[:comment]
    words = line.split()
    if not words:
        return []
    address = words[0]
    if len(words) > 1 and all(word.lower() in LOCAL_NAMES for word in words[1:]):
        # The machine's own names, whatever the address: every hosts file starts with
        # them (StevenBlack's writes "255.255.255.255 broadcasthost", "fe80::1%lo0 localhost").
        return []
    if address not in _BLOCKING_ADDRESSES and not _blocking_address(address, number, report):
        return []
    if len(words) == 1:
        report.error(number, f"address {address} without a name")
        return []
    domains = []
    for word in words[1:]:
        domain = check_name(word, number, report)
        if domain is not None:
            domains.append(domain)
    return domains


def _blocking_address(text: str, line: int, report: LineReport) -> bool:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        report.error(line, f"{text!r} is not an IP address (a hosts line is ADDRESS NAME...)")
        return False
    if address.is_unspecified or address.is_loopback:
        return True
    report.warn(line, f"maps names to {text}, not to a null address: a local override; skipped")
    return False
