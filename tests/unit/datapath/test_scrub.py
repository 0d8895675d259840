"""dnsfilter.datapath.scrub: only the question's chain, and what its zone says about it, gets
through."""

from __future__ import annotations

import itertools
from typing import Any

import dns.message
import dns.rcode
import dns.rrset
import pytest

from dnsfilter.datapath.cache import TtlPolicy, make_entry
from dnsfilter.datapath.scrub import (
    MAX_CHAIN_LINKS,
    RefusedAnswer,
    is_minimal_any,
    minimal_any,
    scrub,
)
from dnsfilter.datapath.wire import scan_response

RR = tuple[str, str, str]  #: owner, type, rdata (TTL 300, class IN)


def response(
    qname: str,
    qtype: str,
    answer: list[RR] = (),  # type: ignore[assignment]
    authority: list[RR] = (),  # type: ignore[assignment]
    additional: list[RR] = (),  # type: ignore[assignment]
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
) -> bytes:
    query = dns.message.make_query(qname, qtype, use_edns=0)
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    for section, records in (
        (reply.answer, answer),
        (reply.authority, authority),
        (reply.additional, additional),
    ):
        for owner, rtype, rdata in records:
            section.append(dns.rrset.from_text(owner, 300, "IN", rtype, rdata))
    return reply.to_wire()


def kept(wire: bytes, minimal: bool = True) -> list[tuple[int, str, str]]:
    """(section, owner, type) of every record scrub keeps, as dnspython reads them."""
    wire, scan = scrub(wire, scan_response(wire), minimal)
    entry = make_entry(wire, scan, 0.0, TtlPolicy())
    assert entry is not None
    layout = entry.layout
    rebuilt = (
        wire[:4]
        + bytes((0, 1, 0, layout.ancount, 0, layout.nscount, 0, layout.arcount))
        + wire[12 : scan.question_end]
        + entry.body
    )
    message = dns.message.from_wire(rebuilt)
    out = []
    for number, section in enumerate((message.answer, message.authority, message.additional)):
        for rrset in section:
            for _ in rrset:
                out.append((number + 1, rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype)))
    return out


def test_a_plain_answer_is_passed_as_it_is() -> None:
    wire = response("www.example.test", "A", [("www.example.test.", "A", "192.0.2.1")])
    scan = scan_response(wire)
    assert scrub(wire, scan, minimal=True) == (wire, scan)
    assert scrub(wire, scan, minimal=True)[1] is scan


def test_an_unrelated_record_in_the_answer_is_left_out() -> None:
    """The attack of issue 16: the upstream adds an A record for another name."""
    wire = response(
        "www.example.test",
        "A",
        [("www.example.test.", "A", "192.0.2.1"), ("victim.example.", "A", "203.0.113.66")],
        additional=[("victim.example.", "A", "203.0.113.66")],
    )
    assert kept(wire, minimal=False) == [(1, "www.example.test.", "A")]


def test_a_cname_chain_is_kept_and_records_off_it_are_not() -> None:
    wire = response(
        "www.example.test",
        "A",
        [
            ("www.example.test.", "CNAME", "cdn.example.net."),
            ("cdn.example.net.", "CNAME", "edge.cdn.example.org."),
            ("edge.cdn.example.org.", "A", "192.0.2.7"),
            ("other.example.org.", "A", "203.0.113.1"),
        ],
    )
    assert kept(wire) == [
        (1, "www.example.test.", "CNAME"),
        (1, "cdn.example.net.", "CNAME"),
        (1, "edge.cdn.example.org.", "A"),
    ]


def test_a_dname_and_its_synthesized_cname_are_kept() -> None:
    wire = response(
        "x.old.example.test",
        "A",
        [
            ("old.example.test.", "DNAME", "new.example.test."),
            ("x.old.example.test.", "CNAME", "x.new.example.test."),
            ("x.new.example.test.", "A", "192.0.2.8"),
            ("y.new.example.test.", "A", "192.0.2.9"),
        ],
    )
    assert [owner for _, owner, _ in kept(wire)] == [
        "old.example.test.",
        "x.old.example.test.",
        "x.new.example.test.",
    ]


def test_a_dname_without_its_cname_is_followed_by_substitution() -> None:
    wire = response(
        "x.old.example.test",
        "A",
        [
            ("old.example.test.", "DNAME", "new.example.test."),
            ("x.new.example.test.", "A", "1.2.3.4"),
        ],
    )
    assert len(kept(wire)) == 2


def test_owner_names_compare_without_case() -> None:
    wire = response(
        "www.example.test",
        "A",
        [
            ("WWW.Example.TEST.", "CNAME", "CDN.example.test."),
            ("cdn.EXAMPLE.test.", "A", "1.2.3.4"),
        ],
    )
    assert len(kept(wire)) == 2


@pytest.mark.parametrize(
    "chain",
    [
        pytest.param(["a.example.test.", "b.example.test.", "a.example.test."], id="two-names"),
        pytest.param(["a.example.test.", "a.example.test."], id="to-itself"),
    ],
)
def test_a_cname_loop_is_refused(chain: list[str]) -> None:
    records = [(owner, "CNAME", target) for owner, target in itertools.pairwise(chain)]
    wire = response("a.example.test", "A", records)
    with pytest.raises(RefusedAnswer, match="loop"):
        scrub(wire, scan_response(wire), minimal=True)


def test_a_chain_longer_than_the_limit_is_refused() -> None:
    names = [f"n{i}.example.test." for i in range(MAX_CHAIN_LINKS + 2)]
    links = [(a, "CNAME", b) for a, b in itertools.pairwise(names)]
    longest = response("n0.example.test", "A", links[:MAX_CHAIN_LINKS])
    assert len(kept(longest)) == MAX_CHAIN_LINKS
    wire = response("n0.example.test", "A", links)
    with pytest.raises(RefusedAnswer, match="longer"):
        scrub(wire, scan_response(wire), minimal=True)


def test_a_cname_question_gets_the_cname_and_nothing_it_points_to() -> None:
    wire = response(
        "alias.example.test",
        "CNAME",
        [
            ("alias.example.test.", "CNAME", "www.example.test."),
            ("www.example.test.", "A", "1.2.3.4"),
        ],
    )
    assert kept(wire) == [(1, "alias.example.test.", "CNAME")]


DELEGATION: dict[str, Any] = {
    "authority": [
        ("example.test.", "NS", "ns1.example.test."),
        ("victim.example.", "NS", "ns.attacker.example."),
    ],
    "additional": [
        ("ns1.example.test.", "A", "192.0.2.53"),
        ("ns.attacker.example.", "A", "203.0.113.53"),
    ],
}


def test_without_minimal_responses_only_records_in_bailiwick_stay() -> None:
    wire = response("www.example.test", "A", [("www.example.test.", "A", "1.2.3.4")], **DELEGATION)
    assert kept(wire, minimal=False) == [
        (1, "www.example.test.", "A"),
        (2, "example.test.", "NS"),
        (3, "ns1.example.test.", "A"),
    ]


def test_minimal_responses_drop_authority_and_additional_of_an_answer() -> None:
    wire = response("www.example.test", "A", [("www.example.test.", "A", "1.2.3.4")], **DELEGATION)
    assert kept(wire, minimal=True) == [(1, "www.example.test.", "A")]


SOA = "ns1.example.test. hostmaster.example.test. 1 3600 900 604800 60"


@pytest.mark.parametrize("minimal", [True, False])
def test_a_negative_answer_keeps_its_soa_and_loses_a_foreign_one(minimal: bool) -> None:
    wire = response(
        "nope.example.test",
        "A",
        authority=[("example.test.", "SOA", SOA), ("victim.example.", "SOA", SOA)],
        rcode=dns.rcode.NXDOMAIN,
    )
    assert kept(wire, minimal) == [(2, "example.test.", "SOA")]


def test_nodata_after_a_cname_keeps_the_soa_of_the_targets_zone() -> None:
    wire = response(
        "alias.example.test",
        "AAAA",
        [("alias.example.test.", "CNAME", "v4only.example.org.")],
        authority=[("example.org.", "SOA", SOA), ("example.test.", "SOA", SOA)],
    )
    assert kept(wire) == [(1, "alias.example.test.", "CNAME"), (2, "example.org.", "SOA")]


# ANY (RFC 8482): minimal for a name that has records, the upstream's word otherwise


def test_any_for_a_name_with_records_is_one_hinfo_with_their_smallest_ttl() -> None:
    query = dns.message.make_query("www.example.test", "ANY", use_edns=0)
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text("www.example.test.", 120, "IN", "A", "1.2.3.4"))
    reply.answer.append(dns.rrset.from_text("www.example.test.", 7200, "IN", "TXT", '"x"'))
    wire, scan = minimal_any(*scrub(reply.to_wire(), scan_response(reply.to_wire()), True))
    message = dns.message.from_wire(wire)
    assert [(r.rdtype, r.ttl, r[0].to_text()) for r in message.answer] == [
        (dns.rdatatype.HINFO, 120, '"RFC8482" ""')
    ]
    entry = make_entry(wire, scan, 0.0, TtlPolicy())
    assert entry is not None and is_minimal_any(entry.body)


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(response("nope.example.test", "ANY", rcode=dns.rcode.NXDOMAIN), id="nxdomain"),
        pytest.param(
            response("ent.example.test", "ANY", authority=[("example.test.", "SOA", SOA)]),
            id="empty-non-terminal",
        ),
        pytest.param(
            response("alias.example.test", "ANY", [("alias.example.test.", "CNAME", "w.test.")]),
            id="cname-owner",
        ),
    ],
)
def test_any_for_a_name_without_records_is_what_the_upstream_said(wire: bytes) -> None:
    scan = scan_response(wire)
    assert minimal_any(wire, scan) == (wire, scan)


def _kept_refs(wire: bytes, minimal: bool = True) -> list[tuple[int, int]]:
    """(section, type) of the records scrub keeps, from its scan (a referral is not
    cacheable, so make_entry cannot show them)."""
    _, scan = scrub(wire, scan_response(wire), minimal)
    return [(ref.section, ref.rtype) for ref in scan.records]


REFERRAL = response(
    "www.sub.conf.test",
    "A",
    authority=[("sub.conf.test.", "NS", "ns.sub.conf.test.")],
    additional=[("ns.sub.conf.test.", "A", "192.0.2.53"), ("elsewhere.test.", "A", "192.0.2.9")],
)


@pytest.mark.parametrize("minimal", [True, False], ids=["minimal", "full"])
def test_a_referral_is_passed_on_with_its_ns_and_glue(minimal: bool) -> None:
    """As unbound passes it on (tests/conformance: sub.conf.test); minimal responses would
    leave an empty NODATA without an SOA. Glue outside the delegated zone is not kept."""
    assert _kept_refs(REFERRAL, minimal) == [(2, 2), (3, 1)]


def test_an_authoritative_nodata_with_ns_is_not_a_referral() -> None:
    """AA set: the server answers for the name itself; minimal keeps no NS there."""
    wire = bytearray(REFERRAL)
    wire[2] |= 0x04  # AA
    assert _kept_refs(bytes(wire), minimal=True) == []


def test_a_nodata_with_an_soa_is_not_a_referral() -> None:
    wire = response(
        "www.sub.conf.test",
        "A",
        authority=[
            ("sub.conf.test.", "NS", "ns.sub.conf.test."),
            ("sub.conf.test.", "SOA", "ns.sub.conf.test. h.sub.conf.test. 1 2 3 4 5"),
        ],
        additional=[("ns.sub.conf.test.", "A", "192.0.2.53")],
    )
    assert _kept_refs(wire, minimal=True) == [(2, 6)]
