"""A loaded blocklist, whatever format it came from."""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter, eq
from typing import NamedTuple, overload

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
