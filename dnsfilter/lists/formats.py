"""The list formats by name, and telling them apart when a list does not say."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from dnsfilter.errors import ListError
from dnsfilter.lists.adblock import parse_adblock
from dnsfilter.lists.hostsformat import parse_hosts
from dnsfilter.lists.model import FORMATS as FORMATS
from dnsfilter.lists.model import BlockList
from dnsfilter.lists.plainformat import parse_plain
from dnsfilter.lists.rpz import parse_rpz
from dnsfilter.lists.yamlformat import parse_yaml_list

_EXTENSIONS = {
    ".yaml": "yaml",
    ".yml": "yaml",
    ".rpz": "rpz",
    ".zone": "rpz",
    ".hosts": "hosts",
}
# Sniffing reads this much of the text: enough lines to outvote a stray header.
_SNIFF_CHARS = 65536
_YAML_KEY = re.compile(r"(?:name|title|vendor|category|description|references|domains):")
_RPZ_TYPES = frozenset({"CNAME", "SOA", "NS", "A", "AAAA", "TXT"})


def _parse_yaml(text: str, filename: str, name: str) -> BlockList:
    blocklist = parse_yaml_list(text, filename)
    # The config's name is what metrics and policies use; the file's own name is kept
    # only when they agree, so a label never changes behind the operator.
    return blocklist if blocklist.name == name or not name else replace(blocklist, name=name)


_PARSERS: dict[str, Callable[[str, str, str], BlockList]] = {
    "yaml": _parse_yaml,
    "hosts": parse_hosts,
    "plain": parse_plain,
    "adblock": parse_adblock,
    "rpz": parse_rpz,
}


def parse_list(text: str, filename: str, name: str, format: str | None = None) -> BlockList:
    """Parse text in the given format (detected when None); ListError on invalid lines.

    An empty name keeps a YAML list's own name. A dnsmasq or unbound config file (what
    list projects also publish) is refused with one error, whatever format was asked for:
    read line by line it would give an error a line.
    """
    format = format or detect_format(text, filename)
    if format != "yaml":
        config = config_kind(text[:_SNIFF_CHARS])
        if config is not None:
            raise ListError(
                [
                    f"{filename}: this is {config}, not a list: dnsfilter reads yaml, hosts, "
                    "plain (one name a line), adblock and rpz lists; use the list's hosts or "
                    "domains edition, which list projects publish beside this one"
                ]
            )
    return _PARSERS[format](text, filename, name)


# Lines only a server's config has: unbound's clauses and local-zone/local-data, dnsmasq's
# address=/server=/local= options.
_UNBOUND_LINE = re.compile(r"\s*(?:server:|local-zone:|local-data:|forward-zone:|include:)")
_DNSMASQ_LINE = re.compile(r"\s*(?:address|server|local|ipset|nftset)=/")


def config_kind(head: str) -> str | None:
    """ "an unbound config file" or "a dnsmasq config file" when most lines of head are
    that server's options (comments aside); None for anything else."""
    lines = [line for line in head.splitlines() if line.strip() and line.lstrip()[0] not in "#!;"]
    if not lines:
        return None
    unbound = sum(1 for line in lines if _UNBOUND_LINE.match(line))
    dnsmasq = sum(1 for line in lines if _DNSMASQ_LINE.match(line))
    if 2 * unbound > len(lines):
        return "an unbound config file (local-zone: lines)"
    if 2 * dnsmasq > len(lines):
        return "a dnsmasq config file (address=/.../ lines)"
    return None


def detect_format(text: str, filename: str) -> str:
    """The format of a list: by the file (or URL path) extension, else by its first lines."""
    path = urlsplit(filename).path if "://" in filename else filename
    base = PurePosixPath(path).name.lower()
    by_extension = _EXTENSIONS.get(PurePosixPath(base).suffix)
    if by_extension is not None:
        return by_extension
    if base == "hosts":
        return "hosts"
    return _sniff(text[:_SNIFF_CHARS])


def _sniff(head: str) -> str:
    votes = dict.fromkeys(("rpz", "adblock", "hosts", "plain"), 0)
    for raw in head.splitlines():
        line = raw.strip()
        if not line:
            continue
        lower = line.lower()
        if lower.startswith("[adblock"):
            return "adblock"
        if lower.startswith(("$origin", "$ttl")):
            return "rpz"
        if _YAML_KEY.match(raw):
            return "yaml"
        if line[0] in "!;" or (line[0] == "#" and "##" not in line):
            continue
        words = line.split(";", 1)[0].split()
        if "||" in line or line.startswith("@@") or "##" in line:
            votes["adblock"] += 1
        elif len(words) >= 2 and _is_address(words[0]):
            votes["hosts"] += 1
        elif len(words) >= 2 and any(word.upper() in _RPZ_TYPES for word in words[1:4]):
            votes["rpz"] += 1
        elif len(words) == 1:
            votes["plain"] += 1
    best = max(votes.values())
    # Ties go to the more specific syntax: a vote for it is harder to cast by accident.
    return next((kind for kind, count in votes.items() if count == best and count), "plain")


def _is_address(word: str) -> bool:
    try:
        ipaddress.ip_address(word)
    except ValueError:
        return False
    return True
