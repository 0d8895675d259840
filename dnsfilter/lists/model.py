"""A loaded blocklist, whatever format it came from."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import NamedTuple

from dnsfilter.blocking import BlockMode


class Category(enum.Enum):
    MESSAGING = "messaging"
    SOCIAL = "social"
    VIDEO = "video"
    SECURITY = "security"
    BYPASS = "bypass"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Reference:
    url: str
    title: str


class DomainEntry(NamedTuple):
    """One list entry. A NamedTuple: a million-line list makes a million of these, and a
    tuple is built in a third of a frozen dataclass's time."""

    domain: str  #: normalized: lowercase, no trailing dot, punycode
    line: int
    note: str = ""
    evidence: str = ""
    added: str = ""
    mode: BlockMode | None = None  #: overrides the policy's mode for this entry


@dataclass(frozen=True, slots=True)
class NetworkEntry:
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    line: int
    note: str = ""
    evidence: str = ""


@dataclass(frozen=True, slots=True)
class BlockList:
    name: str
    source: str  #: the file it was read from
    title: str = ""
    vendor: str = ""
    category: Category = Category.OTHER
    description: str = ""
    references: tuple[Reference, ...] = ()
    domains: tuple[DomainEntry, ...] = ()
    exceptions: tuple[DomainEntry, ...] = ()
    networks: tuple[NetworkEntry, ...] = ()
    duplicates: int = 0  #: entries dropped because the same name came twice
    #: skipped syntax, one ``file:line: message`` each (the list still loads without it)
    warnings: tuple[str, ...] = ()
