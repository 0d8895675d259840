"""DomainTable.match and Policy: cases the mutation run (scripts/mutation.sh) found untested.

Every table and policy here is built inside its test: mutmut only sees code that runs while
a test does, so one built at import time would let its constructor's mutants survive."""

from __future__ import annotations

from collections.abc import Sequence

import dnslib
import pytest

from dnsfilter.datapath.policy import PACKED_ABOVE, DomainTable, PackedTable, build_policy
from dnsfilter.datapath.wire import scan_response
from dnsfilter.lists.model import BlockList, Category, DomainEntry, LineEntries
from tests.unit.datapath.test_inspection import CONFIG, LISTS


def _list(name: str, domains: Sequence[str], exceptions: Sequence[str] = ()) -> BlockList:
    return BlockList(
        name=name,
        source=f"{name}.yaml",
        category=Category.SOCIAL,
        domains=tuple(DomainEntry(d, 1) for d in domains),
        exceptions=tuple(DomainEntry(d, 1) for d in exceptions),
    )


@pytest.mark.parametrize(
    ("qname", "hit", "bits"),
    [
        pytest.param("a\\032b.www.tok.example", (0, "tok.example"), 0b1, id="plain-tail-blocked"),
        pytest.param("x\\.y.tok.example", (0, "tok.example"), 0b1, id="escaped-dot-in-label"),
        pytest.param("www.tok\\.example", None, 0, id="escaped-last-label"),
        pytest.param("a\\032b.www.other.example", None, 0, id="plain-tail-not-listed"),
    ],
)
def test_escaped_names_match_at_their_plain_tail(
    qname: str, hit: tuple[int, str] | None, bits: int
) -> None:
    table = DomainTable([_list("apps", ["tok.example"])])
    assert table.match(qname, table.mask(["apps"])) == hit
    assert table.blocking_bits(qname) == bits


def test_an_exception_lifts_every_hit_of_its_list_and_no_other_lists() -> None:
    """Three hits, the two deepest in a list whose exception covers the name: the third
    (another list's) blocks. Not a precise list, so the hits are walked in order."""
    table = DomainTable(
        [
            _list("deep", ["a.b.x.test", "b.x.test"], exceptions=["c.a.b.x.test"]),
            _list("wide", ["x.test"]),
        ]
    )
    both = table.mask(["deep", "wide"])
    assert table.match("c.a.b.x.test", both) == (1, "x.test")
    assert table.match("c.a.b.x.test", table.mask(["deep"])) is None
    assert table.match("a.b.x.test", both) == (0, "a.b.x.test")
    assert table.blocking_bits("c.a.b.x.test") == 0b10


def test_a_policy_built_here_inspects_answer_addresses() -> None:
    """build_policy hands its AddressTable to Policy (test_inspection's POLICY is built at
    import, where a mutation run cannot see it)."""
    policy = build_policy(CONFIG, LISTS)
    reply = dnslib.DNSRecord.question("www.test").reply()
    reply.add_answer(dnslib.RR("www.test", rdata=dnslib.A("192.0.2.55")))
    wire = bytes(reply.pack())
    inspection = policy.inspect(wire, scan_response(wire))
    assert (inspection.cname_bits, inspection.address_bits) == (0, 0b01)
    assert inspection.triggers == {0: "192.0.2.55"}


def _big_lists(count: int) -> list[BlockList]:
    per_list = PACKED_ABOVE // count + 1
    return [
        BlockList(
            name=f"l{i}",
            source=f"l{i}.txt",
            domains=LineEntries([f"n{j}.l{i}.test" for j in range(per_list)], [1] * per_list),
            exceptions=(DomainEntry(f"ok.n0.l{i}.test", 1),),
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("count", [31, 32, 40])
def test_a_big_table_of_many_lists_keeps_every_bit(count: int) -> None:
    """Past PACKED_ABOVE names the table is packed into 64-bit values, which hold 31 lists
    (2n + 1 bits: entries, exceptions, the allowlist). With 32 or more it stays a dict;
    packed, it raised OverflowError for the allowlist's bit and the last lists' exceptions."""
    table = DomainTable(_big_lists(count), ["allowed.n1.l0.test"])
    assert isinstance(table._table, PackedTable) is (count < 32)
    last = f"l{count - 1}"
    assert table.match(f"www.n5.l{count - 1}.test", table.mask([last])) == (
        count - 1,
        f"n5.l{count - 1}.test",
    )
    assert table.match(f"ok.n0.l{count - 1}.test", table.mask([last])) is None
    assert table.match("allowed.n1.l0.test", table.mask(["l0"])) is None
    assert table.match("n1.l0.test", table.mask(["l0"])) == (0, "n1.l0.test")


class _CountingTable(dict[int, int]):
    def __init__(self, table: dict[int, int]) -> None:
        super().__init__(table)
        self.lookups = 0

    def get(self, key: int, default: int | None = None) -> int | None:  # type: ignore[override]
        self.lookups += 1
        return super().get(key, default)


@pytest.mark.parametrize(
    ("qname", "lookups"),
    [
        pytest.param("a.b.c.www.tok.example", 2, id="deep-name"),
        pytest.param("www.tok.example", 2, id="entry-depth"),
        pytest.param("tok.example", 1, id="shallowest-entry"),
        pytest.param("example", 0, id="shallower-than-every-entry"),
    ],
)
def test_a_name_is_looked_up_only_at_the_depths_entries_have(qname: str, lookups: int) -> None:
    """Entries of 2 and 3 labels: a name is looked up at its 3- and 2-label suffixes only."""
    table = DomainTable([_list("apps", ["tok.example", "cdn.tok.example"])])
    assert isinstance(table._table, dict)
    counting = table._table = _CountingTable(table._table)
    table.match(qname, table.mask(["apps"]))
    assert counting.lookups == lookups
    counting.lookups = 0
    table.blocking_bits(qname)
    assert counting.lookups == lookups
