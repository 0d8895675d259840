"""Answer inspection: CNAME targets and addresses matched against the lists, on bytes."""

from __future__ import annotations

import ipaddress

import dnslib
import pytest

from dnsfilter.config import parse_config
from dnsfilter.datapath.policy import Action, AddressTable, DomainTable, build_policy
from dnsfilter.datapath.wire import scan_response
from dnsfilter.lists.model import BlockList, Category, DomainEntry, NetworkEntry


def _list(
    name: str,
    domains: list[str],
    prefixes: tuple[str, ...] | list[str] = (),
    exceptions: tuple[str, ...] | list[str] = (),
) -> BlockList:
    return BlockList(
        name=name,
        source=f"{name}.yaml",
        category=Category.MESSAGING,
        domains=tuple(DomainEntry(d, 1) for d in domains),
        exceptions=tuple(DomainEntry(d, 1) for d in exceptions),
        networks=tuple(NetworkEntry(ipaddress.ip_network(p), 1) for p in prefixes),
    )


def _answer(qname: str, *records: dnslib.RR) -> bytes:
    reply = dnslib.DNSRecord.question(qname).reply()
    for record in records:
        reply.add_answer(record)
    return bytes(reply.pack())


LISTS = [
    _list("chat", ["chat.example"], ["192.0.2.0/24", "2001:db8:1::/48"], ["ok.chat.example"]),
    _list("video", ["video.example"], ["198.51.100.7/32"]),
]
CONFIG = parse_config(
    """
upstream: {servers: ["127.0.0.1:53"]}
networks: {a: ["10.0.0.0/8"], b: ["10.1.0.0/16"], c: ["10.2.0.0/16"]}
lists: {chat: {file: chat.yaml}, video: {file: video.yaml}}
policies:
  all: {networks: [a], lists: [chat, video]}
  names_only: {networks: [b], lists: [chat, video], response_ip_blocking: false}
  none: {networks: [c], lists: [chat, video], cname_inspection: false,
         response_ip_blocking: false}
""",
    "cfg.yaml",
    None,
)
POLICY = build_policy(CONFIG, LISTS)


@pytest.mark.parametrize(
    ("records", "cname_bits", "address_bits", "triggers"),
    [
        pytest.param(
            [dnslib.RR("www.test", dnslib.QTYPE.CNAME, rdata=dnslib.CNAME("cdn.chat.example"))],
            0b01, 0, {0: "cdn.chat.example"}, id="cname-into-chat",
        ),
        pytest.param(
            [dnslib.RR("www.test", dnslib.QTYPE.CNAME, rdata=dnslib.CNAME("ok.chat.example"))],
            0, 0, {}, id="cname-into-exception",
        ),
        pytest.param(
            [dnslib.RR("www.test", rdata=dnslib.A("192.0.2.55"))],
            0, 0b01, {0: "192.0.2.55"}, id="address-in-chat-prefix",
        ),
        pytest.param(
            [dnslib.RR("www.test", dnslib.QTYPE.AAAA, rdata=dnslib.AAAA("2001:db8:1::9"))],
            0, 0b01, {0: "2001:db8:1::9"}, id="v6-address-in-chat-prefix",
        ),
        pytest.param(
            [dnslib.RR("www.test", rdata=dnslib.A("198.51.100.7")),
             dnslib.RR("www.test", rdata=dnslib.A("198.51.100.8"))],
            0, 0b10, {1: "198.51.100.7"}, id="one-of-two-addresses",
        ),
        pytest.param(
            [dnslib.RR("www.test", rdata=dnslib.A("203.0.113.1"))], 0, 0, {}, id="clean",
        ),
    ],
)  # fmt: skip
def test_inspect(
    records: list[dnslib.RR], cname_bits: int, address_bits: int, triggers: dict[int, str]
) -> None:
    wire = _answer("www.test", *records)
    inspection = POLICY.inspect(wire, scan_response(wire))
    assert (inspection.cname_bits, inspection.address_bits) == (cname_bits, address_bits)
    assert inspection.triggers == triggers


@pytest.mark.parametrize(
    ("network", "record", "blocked_by"),
    [
        pytest.param("a", dnslib.RR("w", rdata=dnslib.A("192.0.2.1")), "chat", id="all-address"),
        pytest.param("b", dnslib.RR("w", rdata=dnslib.A("192.0.2.1")), None, id="names-address"),
        pytest.param(
            "b", dnslib.RR("w", dnslib.QTYPE.CNAME, rdata=dnslib.CNAME("video.example")),
            "video", id="names-cname",
        ),
        pytest.param(
            "c", dnslib.RR("w", dnslib.QTYPE.CNAME, rdata=dnslib.CNAME("video.example")),
            None, id="none-cname",
        ),
    ],
)  # fmt: skip
def test_blocked_answer_per_policy(network: str, record: dnslib.RR, blocked_by: str | None) -> None:
    wire = _answer("w", record)
    inspection = POLICY.inspect(wire, scan_response(wire))
    verdict = POLICY.blocked_answer(POLICY.rules[network], inspection)
    if blocked_by is None:
        assert verdict is None
    else:
        assert verdict is not None
        assert (verdict.action, verdict.list_name, verdict.network) == (
            Action.BLOCK, blocked_by, network,
        )  # fmt: skip


def test_address_table_longest_and_shortest_prefixes() -> None:
    table = AddressTable([_list("a", [], ["10.0.0.0/8"]), _list("b", [], ["10.1.2.3/32", "::/0"])])
    assert table.bits(ipaddress.IPv4Address("10.1.2.3").packed) == 0b11
    assert table.bits(ipaddress.IPv4Address("10.9.9.9").packed) == 0b01
    assert table.bits(ipaddress.IPv4Address("11.0.0.1").packed) == 0
    assert table.bits(ipaddress.IPv6Address("2001:db8::1").packed) == 0b10
    assert table.lists_mask == 0b11


def test_blocking_bits_respects_allowlist_and_exceptions() -> None:
    table = DomainTable(LISTS, allowlist=["free.video.example"])
    assert table.blocking_bits("a.chat.example") == 0b01
    assert table.blocking_bits("x.ok.chat.example") == 0
    assert table.blocking_bits("free.video.example") == 0
    assert table.blocking_bits("video.example") == 0b10
    assert table.blocking_bits("unrelated.example") == 0


def test_packed_table_answers_as_the_dict_does(monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    import dnsfilter.datapath.policy

    rng = random.Random(7)
    names = [f"n{i}.{rng.choice(['a', 'b'])}.example" for i in range(3000)]
    lists = [
        _list("one", names[:2000], exceptions=["n5.a.example"]),
        _list("two", names[1500:], exceptions=[]),
    ]
    plain = DomainTable(lists, allowlist=["n7.b.example", "n8.a.example"])
    monkeypatch.setattr(dnsfilter.datapath.policy, "PACKED_ABOVE", 10)
    packed = DomainTable(lists, allowlist=["n7.b.example", "n8.a.example"])
    assert type(packed._table).__name__ == "PackedTable"
    assert type(plain._table) is dict
    queries = [f"x.{name}" for name in names] + [f"n{i}.c.example" for i in range(500)]
    queries += ["n5.a.example", "deep.n7.b.example", "example", ""]
    for query in queries:
        assert packed.match(query, 0b11) == plain.match(query, 0b11), query
        assert packed.blocking_bits(query) == plain.blocking_bits(query), query


def test_a_chain_is_blocked_for_everyone_only_when_every_policy_inspects_cnames() -> None:
    """The chase skips a target only when no network could use its answer."""
    uniform = parse_config(
        """
upstream: {servers: ["127.0.0.1:53"]}
networks: {a: ["10.0.0.0/8"], b: ["10.1.0.0/16"]}
lists: {chat: {file: chat.yaml}, video: {file: video.yaml}}
policies:
  all: {networks: [a], lists: [chat, video]}
  chat: {networks: [b], lists: [chat]}
""",
        "cfg.yaml",
        None,
    )
    everyone = build_policy(uniform, LISTS)
    assert everyone.blocks_every_chain_into("cdn.chat.example")
    assert not everyone.blocks_every_chain_into("ok.chat.example")  # the list's exception
    assert not everyone.blocks_every_chain_into("video.example")  # network b may use it
    assert not everyone.blocks_every_chain_into("www.example")
    # Network c does not inspect CNAMEs: a chain into chat.example is its to follow.
    assert not POLICY.blocks_every_chain_into("cdn.chat.example")
