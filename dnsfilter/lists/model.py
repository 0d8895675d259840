"""A loaded blocklist, whatever format it came from."""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter, eq
from typing import NamedTuple, overload

from dnsfilter.datapath.blocking import BlockMode


class Category(enum.Enum):
    MESSAGING = "messaging"
    SOCIAL = "social"
    VIDEO = "video"
    SECURITY = "security"
    BYPASS = "bypass"
    OTHER = "other"


class Role(enum.Enum):
    """What a listed name is to the banned product; a policy may enforce some roles only."""

    BACKEND = "backend"  #: what the installed app talks to: APIs, transport, content, updates
    TELEMETRY = "telemetry"  #: logs, analytics, crash and performance reports
    DOWNLOAD = "download"  #: hosts that serve installers, packages and app binaries
    STOREFRONT = "storefront"  #: the vendor's sites that present, sell or link the download
    RESOLVER = "resolver"  #: encrypted or HTTP DNS that lets a client bypass dnsfilter
    CANARY = "canary"  #: names browsers and OSes ask to learn whether they may bypass it


ROLES = frozenset(Role)

#: Every format a list may be written in, as config and --list spell them.
FORMATS = ("yaml", "hosts", "plain", "adblock", "rpz")


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
    #: what the name is to the product; () for formats without roles, which every role
    #: selection blocks (a policy's role choice only lifts entries that declare roles)
    roles: tuple[Role, ...] = ()


class RejectedEntry(NamedTuple):
    """A name a source attributes to the product that the curator decided not to block.

    Kept in the list so the next curator sees the decision; the matcher never reads it."""

    domain: str
    line: int
    reason: str
    source: str  #: where the name was found: URL or owner/repo@commit:path
    added: str = ""


class LineEntries(Sequence[DomainEntry]):
    """Entries that are a name and a line each, as the line formats read them.

    Kept as two flat sequences, and a DomainEntry made only for whoever asks for one: the
    query path needs only the names (DomainTable reads `names`), and a million DomainEntry
    tuples cost 0.3 s and 90 MB to build.
    """

    __slots__ = ("lines", "names")

    def __init__(self, names: Sequence[str], lines: Sequence[int]) -> None:
        if len(names) != len(lines):
            raise ValueError(f"{len(names)} names but {len(lines)} lines")
        self.names = names
        self.lines = lines

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, index: int) -> DomainEntry: ...
    @overload
    def __getitem__(self, index: slice) -> LineEntries: ...
    def __getitem__(self, index: int | slice) -> DomainEntry | LineEntries:
        if isinstance(index, slice):
            return LineEntries(self.names[index], self.lines[index])
        return DomainEntry(self.names[index], self.lines[index])

    def __iter__(self) -> Iterator[DomainEntry]:
        return map(DomainEntry, self.names, self.lines)

    # Equal to the tuple of the same entries, as the other formats hold them, so BlockList
    # compares by content whatever format it was read from.
    def __eq__(self, other: object) -> bool:
        if isinstance(other, LineEntries | tuple):
            return len(self) == len(other) and all(map(eq, self, other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"LineEntries({len(self)} entries)"


_domain_of = attrgetter("domain")


def entry_names(entries: Sequence[DomainEntry]) -> Sequence[str]:
    """The entries' names in order, without making a DomainEntry of each LineEntries one."""
    return entries.names if isinstance(entries, LineEntries) else list(map(_domain_of, entries))


def entries_with_modes(entries: Sequence[DomainEntry]) -> Iterator[DomainEntry]:
    """The entries that set their own mode (LineEntries never do: it holds no modes)."""
    return iter(()) if isinstance(entries, LineEntries) else (e for e in entries if e.mode)


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
    domains: Sequence[DomainEntry] = ()  #: a tuple, or LineEntries from the line formats
    exceptions: Sequence[DomainEntry] = ()
    networks: tuple[NetworkEntry, ...] = ()
    rejected: tuple[RejectedEntry, ...] = ()
    duplicates: int = 0  #: entries dropped because the same name came twice
    #: skipped syntax, one ``file:line: message`` each (the list still loads without it)
    warnings: tuple[str, ...] = ()
    #: lines of a third-party list that were skipped as unreadable (each also a warning)
    skipped: int = 0
    #: names of `domains` that beat this list's ordinary exceptions (adblock ``$important``)
    important_domains: frozenset[str] = frozenset()
    #: names of `exceptions` that beat even important entries (``@@...$important``)
    important_exceptions: frozenset[str] = frozenset()
    #: True: the most specific entry or exception decides, as in RPZ, unbound and BIND.
    #: False (adblock, YAML): an exception anywhere above or at a name lifts every
    #: ordinary entry of the list, however specific the entry is.
    specific_wins: bool = False


def role_counts(blocklist: BlockList) -> dict[str, int]:
    """Entries per role (an entry with several roles counts for each; "none" for none)."""
    counts: dict[str, int] = {}
    if isinstance(blocklist.domains, LineEntries):
        return {"none": len(blocklist.domains)} if blocklist.domains else {}
    for entry in blocklist.domains:
        for key in [role.value for role in entry.roles] or ["none"]:
            counts[key] = counts.get(key, 0) + 1
    order = [r.value for r in Role] + ["none"]
    return {key: counts[key] for key in order if key in counts}


def is_selected(entry: DomainEntry, roles: frozenset[Role]) -> bool:
    """Whether a policy enforcing these roles blocks the entry."""
    return not entry.roles or not roles.isdisjoint(entry.roles)


def select_roles(blocklist: BlockList, roles: frozenset[Role]) -> BlockList:
    """The list as a policy enforcing only these roles sees it: the entries with a chosen
    role (and those without roles), every exception, and the networks only with backend
    (they are the backend's addresses). The list itself when nothing is left out."""
    if isinstance(blocklist.domains, LineEntries) or roles >= ROLES:
        return blocklist
    kept = tuple(e for e in blocklist.domains if is_selected(e, roles))
    networks = blocklist.networks if Role.BACKEND in roles else ()
    if len(kept) == len(blocklist.domains) and len(networks) == len(blocklist.networks):
        return blocklist
    return replace(blocklist, domains=kept, networks=networks)
