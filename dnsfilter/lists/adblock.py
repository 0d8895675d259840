"""Adblock-style DNS rules (AdGuard Home, AdGuard DNS filter): ``||domain^`` blocks,
``@@||domain^`` exempts.

dnsfilter's entries cover a name and every name below it, so a rule is read as such an
entry when that blocks no name its author did not mean to block:

- ``||x^``, ``||x^|``: x and below. ``||*.x^`` reads as x, as ``*.x`` does in a plain list.
- ``$important``: the entry beats the list's ordinary exceptions; on an exception it beats
  even important entries (AdGuard's order). ``$badfilter`` removes the rule it names.
- A block dnsfilter cannot express exactly (a ``*`` inside a label, a modifier such as
  ``$client`` or ``$third-party``, a path, a regular expression) is skipped: blocking less
  than the author meant. ``|x^``/``://x^`` (x only) and unanchored ``x^`` (x and any name
  ending in it) read as ``||x^``, which blocks a subset of what they match but for x's
  subdomains; each says so in its warning.
- An exception is never skipped when that would leave its blocks on: one dnsfilter cannot
  express exactly is widened to the closest exception it can express -- ``@@|x^|`` to
  ``@@||x^``, ``@@||a*.x^`` and ``@@-ds.x^|`` to ``@@||x^``, ``@@||x^$client=...`` to
  ``@@||x^`` -- so it lifts more than its author meant, never less. The warning says which.
  Exceptions that cannot be read at the DNS level at all (paths, cosmetic rules) are
  skipped, as AdGuard Home skips them.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import NamedTuple

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
# The same with '*' allowed: a name pattern with wildcards inside or instead of labels.
_PATTERN = re.compile(r"[^\s/:?=&^|%@$#\[\]\\,]+")


class _Rule(NamedTuple):
    name: str  #: the name text to check and normalize
    exception: bool
    important: bool


@gc_paused
def parse_adblock(text: str, filename: str, name: str) -> BlockList:
    """Read adblock-style rules; unreadable lines are skipped with a file:line warning."""
    report = LineReport(filename)
    blocks = EntrySet()
    exceptions = EntrySet()
    important_blocks: set[str] = set()
    important_exceptions: set[str] = set()
    disabled = _badfiltered(text) if "badfilter" in text else frozenset()
    domainish = _DOMAINISH.fullmatch
    add_block = blocks.add
    for number, raw in numbered_lines(text):
        line = raw.strip()
        if not line or line[0] == "!" or (line[0] == "[" and line[-1] == "]"):
            continue
        if (
            line.startswith("||")
            and line.endswith("^")
            and domainish(line, 2, len(line) - 1)
            and not (disabled and _key(False, line, []) in disabled)
        ):
            # The common case, without the checks (and without a _Rule: a million of them
            # cost 0.4 s).
            domain = check_name(line[2:-1], number, report)
            if domain is not None:
                add_block(domain, number)
            continue
        rule = _rule(line, number, report, disabled)
        if rule is None:
            continue
        domain = check_name(rule.name, number, report)
        if domain is None:
            continue
        if rule.exception:
            exceptions.add(domain, number)
            if rule.important:
                important_exceptions.add(domain)
        else:
            blocks.add(domain, number)
            if rule.important:
                important_blocks.add(domain)
    blocklist = finish(
        report,
        name,
        filename,
        "adblock",
        blocks.entries(),
        exceptions.entries(),
        blocks.duplicates + exceptions.duplicates,
    )
    if not important_blocks and not important_exceptions:
        return blocklist
    return replace(
        blocklist,
        important_domains=frozenset(important_blocks),
        important_exceptions=frozenset(important_exceptions),
    )


def _rule(line: str, number: int, report: LineReport, disabled: frozenset[str]) -> _Rule | None:
    """The rule a line reads as; None for a comment or a skipped rule (with a warning)."""
    if line[0] == "#" and not line.startswith(_COSMETIC):
        return None  # a comment, as hosts-style lists write them
    if any(marker in line for marker in _COSMETIC):
        report.warn(number, "cosmetic (element hiding) rule; skipped")
        return None
    exception = line.startswith("@@")
    body = line[2:] if exception else line
    if body.startswith("/") and body.endswith("/") and len(body) > 1:
        report.warn(number, _regex_warning(exception))
        return None
    pattern, _, options_text = body.partition("$")
    options = [o.strip().lower() for o in options_text.split(",") if o.strip()]
    if "badfilter" in options:
        return None  # it only removes another rule (see _badfiltered)
    if disabled and _key(exception, pattern, options) in disabled:
        report.warn(number, "removed by a $badfilter rule; skipped")
        return None
    important = "important" in options
    others = [o for o in options if o != "important"]
    anchor, host, open_end = _split_pattern(pattern)
    if host is None:
        what = "rule with a path" if "/" in pattern else "not a host name rule (URL or port)"
        if exception:
            report.warn(number, f"{what}; skipped, as AdGuard Home does (DNS sees names only)")
        else:
            report.warn(number, f"{what}; skipped (DNS sees names only)")
        return None
    if host.endswith("."):
        report.warn(number, f"{host!r} ends in a dot, so it matches any top-level domain; skipped")
        return None
    if exception:
        return _exception(anchor, host, open_end, others, important, number, report)
    if others:
        report.warn(number, f"modifier ${','.join(others)} changes the rule's meaning; skipped")
        return None
    return _block(anchor, host, open_end, important, number, report)


def _split_pattern(pattern: str) -> tuple[str, str | None, bool]:
    """(anchor, name pattern, open end) of a rule's pattern.

    anchor is "||" (the name and below), "|" (also "://": the name only) or "" (any name
    ending in the pattern); open end means no ^ after the name, so longer names match too.
    The name pattern is None when the rule is not about a host name (a path, a port).
    """
    if pattern.startswith("||"):
        anchor, rest = "||", pattern[2:]
    elif pattern.startswith("://"):
        anchor, rest = "|", pattern[3:]
    elif pattern.startswith("|"):
        anchor, rest = "|", pattern[1:]
    else:
        anchor, rest = "", pattern
    if rest.endswith("^|"):
        rest = rest[:-2]
    elif rest.endswith(("^", "|")):
        rest = rest[:-1]  # ||x| ends the URL at x: for a host, the same as ^
    elif anchor == "||" and _PATTERN.fullmatch(rest):
        return anchor, rest, True
    else:
        return anchor, None, False
    if not rest or not _PATTERN.fullmatch(rest):
        return anchor, None, False
    return anchor, rest, False


def _block(
    anchor: str, host: str, open_end: bool, important: bool, number: int, report: LineReport
) -> _Rule | None:
    if host.startswith("*."):
        host = host[2:]  # ||*.x^: the names below x; read as x, as plain lists' *.x
    if "*" in host:
        report.warn(number, f"{host!r}: a wildcard inside a name; skipped (blocking less)")
        return None
    if open_end:
        report.warn(
            number, f"no ^ after {host}, so it also matches longer names; read as ||{host}^"
        )
    elif anchor == "|":
        report.warn(number, f"|{host}^ matches {host} only; read as ||{host}^ (its subdomains too)")
    elif anchor == "":
        report.warn(number, f"{host}^ also matches names ending in {host!r}; read as ||{host}^")
    return _Rule(host, False, important)


def _exception(
    anchor: str,
    host: str,
    open_end: bool,
    others: list[str],
    important: bool,
    number: int,
    report: LineReport,
) -> _Rule | None:
    labels = host.split(".")
    if anchor == "||" and labels[0] == "*":
        labels = labels[1:]  # @@||*.x^: read as x and below, as ||*.x^ is
    elif anchor == "" and labels[0]:
        labels[0] = "*" + labels[0]  # unanchored: the first label may go on to the left
    elif anchor == "":
        labels = labels[1:]  # ".x^": whole labels
    if open_end:
        labels[-1] += "*"
    wild = [index for index, label in enumerate(labels) if "*" in label]
    fixed = ".".join(labels[wild[-1] + 1 :] if wild else labels)
    widened = []
    if wild:
        widened.append(f"{host!r} is a pattern")
    if anchor == "|":
        widened.append(f"it means {host} only")
    if others:
        widened.append(f"modifier ${','.join(others)} narrows it")
    if "." not in fixed:
        report.warn(
            number,
            f"exception {host!r} cannot be read without lifting all of {fixed or '.'!r}; "
            "skipped: the blocks it lifts stay (this may block more than its author meant)",
        )
        return None
    if not widened:
        return _Rule(fixed, True, important)
    report.warn(
        number,
        f"exception read as @@||{fixed}^ ({'; '.join(widened)}): it lifts more than its "
        "author meant, never less",
    )
    return _Rule(fixed, True, important)


def _regex_warning(exception: bool) -> str:
    if exception:
        return (
            "regular expression exception; skipped: the blocks it lifts stay "
            "(this may block more than its author meant)"
        )
    return "regular expression rule; skipped"


def _key(exception: bool, pattern: str, options: list[str]) -> str:
    """What $badfilter compares: the rule with its modifiers in a fixed order."""
    kept = sorted(o for o in options if o != "badfilter")
    return ("@@" if exception else "") + pattern.lower() + "$" + ",".join(kept)


def _badfiltered(text: str) -> frozenset[str]:
    """The rules that $badfilter rules of the text remove."""
    keys = set()
    for raw in text.splitlines():
        line = raw.strip()
        if "badfilter" not in line or line.startswith("!"):
            continue
        exception = line.startswith("@@")
        body = line[2:] if exception else line
        pattern, _, options_text = body.partition("$")
        options = [o.strip().lower() for o in options_text.split(",") if o.strip()]
        if "badfilter" in options:
            keys.add(_key(exception, pattern, options))
    return frozenset(keys)
