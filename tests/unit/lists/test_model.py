"""dnsfilter.lists.model: LineEntries, the compact entries of the line formats."""

from __future__ import annotations

import ipaddress
from array import array

import pytest

from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.lists.model import (
    ROLES,
    BlockList,
    DomainEntry,
    LineEntries,
    NetworkEntry,
    Role,
    entries_with_modes,
    entry_names,
    role_counts,
    select_roles,
)

NAMES = ["a.example", "b.example", "c.example"]
TUPLE = (DomainEntry("a.example", 1), DomainEntry("b.example", 4), DomainEntry("c.example", 9))


def _entries() -> LineEntries:
    return LineEntries(list(NAMES), array("I", [1, 4, 9]))


def test_line_entries_read_as_a_tuple_of_domain_entries() -> None:
    entries = _entries()
    assert len(entries) == 3
    assert tuple(entries) == TUPLE
    assert entries[1] == DomainEntry("b.example", 4)
    assert entries[-1] == DomainEntry("c.example", 9)
    assert entries[1:] == TUPLE[1:]
    assert isinstance(entries[1:], LineEntries)
    assert list(reversed(entries)) == list(reversed(TUPLE))
    assert DomainEntry("b.example", 4) in entries
    assert DomainEntry("b.example", 5) not in entries
    assert entries.index(DomainEntry("c.example", 9)) == 2
    with pytest.raises(IndexError):
        entries[3]


def test_line_entries_equal_the_same_entries_in_any_form() -> None:
    assert _entries() == TUPLE
    assert TUPLE == _entries()  # noqa: SIM300 - the tuple's side, answered by LineEntries
    assert _entries() == _entries()
    assert hash(_entries()) == hash(TUPLE)
    assert _entries() != TUPLE[:2]
    assert _entries() != (*TUPLE[:2], DomainEntry("c.example", 9, mode=BlockMode.NXDOMAIN))
    assert _entries() != list(TUPLE)
    assert LineEntries([], array("I")) == ()
    # So a BlockList compares by content, whichever format it was read from.
    assert BlockList("x", "x.txt", domains=_entries()) == BlockList("x", "x.txt", domains=TUPLE)


def test_line_entries_need_a_line_per_name() -> None:
    with pytest.raises(ValueError, match="3 names but 2 lines"):
        LineEntries(NAMES, array("I", [1, 2]))


def test_entry_names_and_modes_of_either_form() -> None:
    moded = (DomainEntry("a.example", 1), DomainEntry("b.example", 2, mode=BlockMode.NODATA))
    assert list(entry_names(_entries())) == NAMES
    assert list(entry_names(TUPLE)) == NAMES
    assert list(entries_with_modes(moded)) == [moded[1]]
    assert list(entries_with_modes(_entries())) == []


def test_select_roles_drops_the_networks_without_backend_even_when_every_entry_stays() -> None:
    """Networks are the backend's addresses: a selection without backend leaves them out,
    also when no entry declares a role (so every entry is kept)."""
    networks = (NetworkEntry(ipaddress.ip_network("192.0.2.0/24"), 3),)
    blocklist = BlockList("a", "a.yaml", domains=TUPLE, networks=networks)
    telemetry = select_roles(blocklist, frozenset({Role.TELEMETRY}))
    assert (telemetry.domains, telemetry.networks) == (TUPLE, ())
    assert select_roles(blocklist, frozenset({Role.BACKEND})) is blocklist
    assert select_roles(blocklist, ROLES) is blocklist


def test_role_counts_of_a_text_list_are_all_none() -> None:
    assert role_counts(BlockList("a", "a.txt", domains=_entries())) == {"none": 3}
    assert role_counts(BlockList("a", "a.txt", domains=LineEntries([], array("I")))) == {}
