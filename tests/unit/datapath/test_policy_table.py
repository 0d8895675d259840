"""dnsfilter.datapath.policy's DomainTable built from line-format lists, as a dict and packed."""

from __future__ import annotations

import random

import pytest

import dnsfilter.datapath.policy
from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.datapath.policy import DomainTable, PackedTable
from dnsfilter.lists.model import BlockList, DomainEntry, LineEntries
from dnsfilter.lists.plainformat import parse_plain

_RNG = random.Random(11)
NAMES = [f"n{i}.{_RNG.choice(['a', 'b', 'c.d'])}.example" for i in range(2000)]
ALLOWLIST = ("n7.a.example", "n7.a.example", "safe.example")


def _lists(plain: bool) -> list[BlockList]:
    first = "".join(f"{name}\n" for name in NAMES[:1500])
    if plain:
        big = parse_plain(first, "big.txt", "big")
        assert isinstance(big.domains, LineEntries)
    else:
        entries = tuple(DomainEntry(n, line) for line, n in enumerate(NAMES[:1500], 1))
        big = BlockList("big", "big.txt", domains=entries)
    small = BlockList(
        "small",
        "small.yaml",
        domains=(
            *(DomainEntry(name, 1) for name in NAMES[1000:]),
            DomainEntry("moded.example", 2, mode=BlockMode.NXDOMAIN),
        ),
        exceptions=(DomainEntry(NAMES[1200], 3),),
    )
    return [big, small]


def _queries() -> list[str]:
    queries = [f"x.{name}" for name in NAMES] + [f"n{i}.e.example" for i in range(300)]
    return [*queries, "n7.a.example", "deep.safe.example", "moded.example", "example", ""]


def _answers(table: DomainTable) -> list[object]:
    return [
        (table.match(q, 0b11), table.match(q, 0b10), table.blocking_bits(q)) for q in _queries()
    ]


@pytest.mark.parametrize("packed_above", [100_000, 0], ids=["dict", "packed"])
def test_a_table_of_line_entries_answers_as_one_of_tuples(
    monkeypatch: pytest.MonkeyPatch, packed_above: int
) -> None:
    expected = _answers(DomainTable(_lists(plain=False), ALLOWLIST))
    monkeypatch.setattr(dnsfilter.datapath.policy, "PACKED_ABOVE", packed_above)
    table = DomainTable(_lists(plain=True), ALLOWLIST)
    assert isinstance(table._table, PackedTable if packed_above == 0 else dict)
    assert _answers(table) == expected
    # 2000 names (the exception and n7.a.example among them), moded.example, safe.example.
    assert len(table) == 2000 + 1 + 1
    assert table.override(1, "moded.example") is BlockMode.NXDOMAIN


def test_packed_table_ors_the_bits_of_every_group_a_key_is_in() -> None:
    table = PackedTable([([5, 6, 0], 0b001), ([6, 7, 6], 0b100), ([], 0b1000)], capacity=6)
    assert len(table) == 4
    assert [table.get(key) for key in (5, 6, 7, 0, 8)] == [0b001, 0b101, 0b100, 0b001, None]
