"""Response Policy Zones (RPZ) in zone-file syntax: QNAME triggers only.

Owners are QNAME triggers relative to the zone origin (``$ORIGIN``, else the owner of the
SOA when it is written absolute; a file with neither takes names as written). Actions:

==========================  ==================================================
``x CNAME .``               block x, answered NXDOMAIN (entry mode nxdomain)
``x CNAME *.``              block x, answered NODATA (entry mode nodata)
``x CNAME rpz-passthru.``   exception: x is never blocked by this list
``x A 0.0.0.0`` / ``::``    block x with null addresses (entry mode null)
``x CNAME rpz-drop.``,      block x with the policy's own mode (warning: we do
other local data            not drop or rewrite, we block)
==========================  ==================================================

dnsfilter's entries always cover a name and everything below it, while an RPZ owner ``x``
covers x alone and ``*.x`` covers the names below x but not x. Both widen to "x and below":
``x`` + ``*.x`` (the usual pair) is exactly one entry; ``x`` alone also blocks its
subdomains (as a hosts entry does); ``*.x`` alone also blocks x itself, which its author did
not ask for, so it carries a warning naming the line. Other triggers (rpz-ip, rpz-nsip,
rpz-nsdname, rpz-client-ip) and ``rpz-tcp-only.`` are skipped with a warning.

Between rules, the most specific one wins, as in unbound and BIND: the list is loaded with
``specific_wins``, so ``bad.x CNAME .`` below ``*.x CNAME rpz-passthru.`` still blocks
bad.x (an adblock exception, by contrast, lifts every entry below it).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import replace

from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.lists.model import BlockList, DomainEntry
from dnsfilter.lists.textlist import LineReport, check_name, finish, gc_paused, numbered_lines

_CLASSES = frozenset({"IN", "CH", "HS", "CS", "ANY"})
_TTL = re.compile(r"\d+|(?:\d+[SMHDWsmhdw])+")
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_OTHER_TRIGGERS = {
    "rpz-ip": "response-IP (rpz-ip)",
    "rpz-nsip": "name-server-IP (rpz-nsip)",
    "rpz-nsdname": "name-server-name (rpz-nsdname)",
    "rpz-client-ip": "client-IP (rpz-client-ip)",
}
_APEX_TYPES = frozenset({"SOA", "NS"})


class _Rule:
    __slots__ = ("line", "mode", "passthru")

    def __init__(self, line: int, mode: BlockMode | None, passthru: bool) -> None:
        self.line = line
        self.mode = mode
        self.passthru = passthru


@gc_paused
def parse_rpz(text: str, filename: str, name: str) -> BlockList:
    """Read an RPZ zone file; raise ListError naming file:line for malformed records."""
    report = LineReport(filename)
    origin: str | None = None  # lowercase, no trailing dot; "" is the root
    owner: str | None = None
    exact: dict[str, _Rule] = {}
    wild: dict[str, _Rule] = {}
    duplicates = 0
    for number, owner_given, words in _records(text, report):
        if words[0].startswith("$"):
            origin = _directive(words, number, report, origin)
            continue
        if owner_given:
            owner = _absolute(words[0], origin)
            words = words[1:]
        elif owner is None:
            report.error(number, "record without an owner name (the line starts with a blank)")
            continue
        rtype, rdata = _type_and_data(words, number, report)
        if rtype is None:
            continue
        if rtype == "SOA" and origin is None:
            origin = owner
        relative = _relative(owner, origin or "")
        if relative is None:
            report.warn(number, f"{owner!r} is outside the zone {origin!r}; skipped")
            continue
        if not relative:
            if rtype not in _APEX_TYPES:
                report.warn(number, f"{rtype} record at the zone apex; skipped")
            continue
        last = relative[relative.rfind(".") + 1 :]
        if last in _OTHER_TRIGGERS:
            report.warn(number, f"{_OTHER_TRIGGERS[last]} trigger; skipped (QNAME triggers only)")
            continue
        rule = _action(rtype, rdata, number, report)
        if rule is None:
            continue
        wildcard = relative.startswith("*.")
        text_name = relative[2:] if wildcard else relative
        if "*" in text_name:
            report.error(number, f"{relative!r}: '*' is only allowed as the whole first label")
            continue
        domain = check_name(text_name, number, report)
        if domain is None:
            continue
        rules = wild if wildcard else exact
        if domain not in rules:
            rules[domain] = rule
        elif rtype == "CNAME":
            duplicates += 1  # A and AAAA on one owner are one trigger; a second CNAME repeats it
    blocks, exceptions = _entries(exact, wild, report)
    blocklist = finish(report, name, filename, "RPZ", blocks, exceptions, duplicates)
    # unbound and BIND let the most specific trigger win: a block below a passthru blocks.
    return replace(blocklist, specific_wins=True)


def _entries(
    exact: dict[str, _Rule], wild: dict[str, _Rule], report: LineReport
) -> tuple[tuple[DomainEntry, ...], tuple[DomainEntry, ...]]:
    blocks: dict[str, _Rule] = {}
    passes: dict[str, _Rule] = {}
    for rules in (exact, wild):
        for domain, rule in rules.items():
            target = passes if rule.passthru else blocks
            target.setdefault(domain, rule)  # exact first: its mode wins over the wildcard's
    for domain, rule in wild.items():
        if not rule.passthru and domain not in exact:
            report.warn(
                rule.line, f"*.{domain} without {domain}: dnsfilter blocks {domain} itself too"
            )
    for domain in list(passes):
        if domain in blocks:
            report.warn(
                passes[domain].line,
                f"{domain} is also blocked (line {blocks[domain].line}); the block is kept",
            )
            del passes[domain]
    order = sorted(blocks.items(), key=lambda item: item[1].line)
    return (
        tuple(DomainEntry(domain, rule.line, mode=rule.mode) for domain, rule in order),
        tuple(
            DomainEntry(domain, rule.line)
            for domain, rule in sorted(passes.items(), key=lambda item: item[1].line)
        ),
    )


def _action(rtype: str, rdata: list[str], line: int, report: LineReport) -> _Rule | None:
    if rtype == "CNAME":
        if len(rdata) != 1:
            report.error(line, f"CNAME needs one target (got {len(rdata)} words)")
            return None
        target = rdata[0].lower()
        if target == ".":
            return _Rule(line, BlockMode.NXDOMAIN, False)
        if target == "*.":
            return _Rule(line, BlockMode.NODATA, False)
        if target == "rpz-passthru.":
            return _Rule(line, None, True)
        if target == "rpz-tcp-only.":
            report.warn(line, "rpz-tcp-only action; skipped")
            return None
        what = "rpz-drop" if target == "rpz-drop." else f"CNAME to {rdata[0]}"
        report.warn(line, f"{what}: blocked with the policy's mode (no drop or rewrite here)")
        return _Rule(line, None, False)
    if rtype in ("A", "AAAA"):
        if len(rdata) != 1:
            report.error(line, f"{rtype} needs one address (got {len(rdata)} words)")
            return None
        try:
            address = ipaddress.ip_address(rdata[0])
        except ValueError:
            report.error(line, f"{rdata[0]!r} is not an IP address")
            return None
        if (address.version == 4) != (rtype == "A"):
            report.error(line, f"{rdata[0]} is not an {rtype} address")
            return None
        if address.is_unspecified:
            return _Rule(line, BlockMode.NULL, False)
        report.warn(line, f"local data {rdata[0]}: blocked with the policy's mode (no rewrite)")
        return _Rule(line, None, False)
    report.warn(line, f"{rtype} record is not an RPZ action dnsfilter reads; skipped")
    return None


def _directive(words: list[str], line: int, report: LineReport, origin: str | None) -> str | None:
    keyword = words[0].upper()
    if keyword == "$ORIGIN":
        if len(words) != 2 or not words[1].endswith("."):
            report.error(line, "$ORIGIN needs one absolute name (ending in '.')")
            return origin
        return _absolute(words[1], origin)
    if keyword == "$TTL":
        return origin
    report.warn(line, f"{words[0]} directive; skipped")
    return origin


def _type_and_data(words: list[str], line: int, report: LineReport) -> tuple[str | None, list[str]]:
    """The record type and its data, after the optional TTL and class (in either order)."""
    index = 0
    while index < len(words) and index < 2:
        word = words[index]
        if word.upper() in _CLASSES or _TTL.fullmatch(word):
            index += 1
        else:
            break
    if index >= len(words) or not _TYPE.fullmatch(words[index]):
        report.error(line, "record without a type (expected NAME [TTL] [CLASS] TYPE DATA)")
        return None, []
    return words[index].upper(), words[index + 1 :]


def _absolute(name: str, origin: str | None) -> str:
    """A name in its absolute form, lowercase, without the trailing dot."""
    name = name.lower()
    if name == "@":
        return origin or ""
    if name.endswith("."):
        return name[:-1]
    return f"{name}.{origin}" if origin else name


def _relative(owner: str, origin: str) -> str | None:
    """The owner relative to the origin; "" at the apex, None outside the zone."""
    if not origin:
        return owner
    if owner == origin:
        return ""
    if owner.endswith("." + origin):
        return owner[: -len(origin) - 1]
    return None


def _records(text: str, report: LineReport) -> Iterator[tuple[int, bool, list[str]]]:
    """(first line, owner given, words) of every record; parentheses join lines."""
    lines = numbered_lines(text)
    for number, line in lines:
        if '"' not in line and "(" not in line and ")" not in line and ";" not in line:
            words = line.split()  # nearly every RPZ line: one record, no comment
            if words:
                yield number, not line[0].isspace(), words
            continue
        words, depth = _words(line)
        while depth > 0:
            following = next(lines, None)
            if following is None:
                report.error(number, "'(' is never closed")
                return
            more, change = _words(following[1])
            words.extend(more)
            depth += change
        if depth < 0:
            report.error(number, "')' without '('")
            continue
        if words:
            yield number, not line[0].isspace(), words


def _words(line: str) -> tuple[list[str], int]:
    """The words of one physical line without its comment, and its parenthesis balance."""
    words: list[str] = []
    depth = 0
    current: list[str] = []
    quoted = False
    for char in line:
        if quoted:
            current.append(char)
            if char == '"':
                quoted = False
            continue
        if char == ";":
            break
        if char == '"':
            quoted = True
            current.append(char)
        elif char in "()" or char.isspace():
            # Any whitespace, the line's own newline too: what str.split() takes in the
            # fast path of _records, so a record reads the same with or without a comment.
            if current:
                words.append("".join(current))
                current = []
            depth += (char == "(") - (char == ")")
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words, depth
