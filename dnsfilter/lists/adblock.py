"""Adblock-style DNS rules: ``||domain^`` blocks, ``@@||domain^`` exempts.

Only the rules whose meaning is a domain and everything below it are read, optionally with
the ``$important`` modifier (which changes nothing when every rule is a domain rule).
Everything else -- cosmetic rules, URL and path rules, regular expressions, wildcards,
modifiers such as ``$third-party`` or ``$client`` that narrow or change a rule -- is skipped
with a warning naming the line: reading such a rule as a plain domain rule would block more
(or exempt more) than its author meant.
"""

from __future__ import annotations

import re

from dnsfilter.lists.model import BlockList
from dnsfilter.lists.textlist import (
    EntrySet,
    LineReport,
    check_name,
    finish,
    gc_paused,
    numbered_lines,
)

_COSMETIC = ("##", "#@#", "#?#", "#$#", "#%#", "#@$#", "#@?#", "#@%#")
# What may sit between || and ^ in a domain rule (IDN letters included).
_DOMAINISH = re.compile(r"[^\s*/:?=&^|%@$#\[\]\\,]+")


@gc_paused
def parse_adblock(text: str, filename: str, name: str) -> BlockList:
    """Read adblock-style rules; raise ListError naming file:line for invalid names."""
    report = LineReport(filename)
    blocks = EntrySet()
    exceptions = EntrySet()
    domainish = _DOMAINISH.fullmatch
    for number, raw in numbered_lines(text):
        line = raw.strip()
        if not line or line[0] == "!" or (line[0] == "[" and line[-1] == "]"):
            continue
        if line.startswith("||") and line.endswith("^") and domainish(line, 2, len(line) - 1):
            rule, target = line[2:-1], blocks  # the common case, without the general checks
        else:
            parsed = _rule(line, number, report)
            if parsed is None:
                continue
            rule, exception = parsed
            target = exceptions if exception else blocks
        domain = check_name(rule, number, report)
        if domain is not None:
            target.add(domain, number)
    return finish(
        report,
        name,
        filename,
        "adblock",
        blocks.entries(),
        exceptions.entries(),
        blocks.duplicates + exceptions.duplicates,
    )


def _rule(line: str, number: int, report: LineReport) -> tuple[str, bool] | None:
    """(domain text, is exception) of a domain rule; None for a comment or a skipped rule."""
    if line[0] == "#" and not line.startswith(_COSMETIC):
        return None  # a comment, as hosts-style lists write them
    if any(marker in line for marker in _COSMETIC):
        report.warn(number, "cosmetic (element hiding) rule; skipped")
        return None
    exception = line.startswith("@@")
    body = line[2:] if exception else line
    if not body.startswith("||"):
        if body.startswith("/") and body.endswith("/") and len(body) > 1:
            report.warn(number, "regular expression rule; skipped")
        elif body.startswith("|"):
            report.warn(number, "URL rule (| anchor); skipped")
        else:
            report.warn(number, "not a ||domain^ rule (matches any part of a URL); skipped")
        return None
    rule, _, options = body[2:].partition("$")
    if options:
        others = [o for o in options.split(",") if o.strip().lower() != "important"]
        if others:
            report.warn(number, f"modifier ${','.join(others)} changes the rule's meaning; skipped")
            return None
    if rule.endswith("^|"):
        rule = rule[:-1]
    if not rule.endswith("^"):
        if "/" in rule:
            report.warn(number, "rule with a path; skipped (DNS sees names only)")
        else:
            report.warn(number, "no ^ after the domain, so it matches longer names too; skipped")
        return None
    rule = rule[:-1]
    if not _DOMAINISH.fullmatch(rule):
        report.warn(number, f"{rule!r} is not a plain domain (wildcard, path or port); skipped")
        return None
    return rule, exception
