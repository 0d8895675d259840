"""dnsfilter.datapath.chase: which answers stop short of their chain's end, the question for the
target, and the joined answer (on literal messages, no sockets)."""

from __future__ import annotations

from collections.abc import Sequence

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from dnsfilter.datapath.chase import joined, target_query, unfinished_target
from dnsfilter.datapath.wire import Transport, parse_query, scan_response


def _answer(
    qname: str,
    qtype: str,
    answer: list[str],
    authority: Sequence[str] = (),
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
    ad: bool = False,
) -> bytes:
    query = dns.message.make_query(qname, qtype, use_edns=0)
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    if ad:
        reply.flags |= dns.flags.AD
    for section, texts in ((reply.answer, answer), (reply.authority, authority)):
        for text in texts:
            name, ttl, rdclass, rdtype, rdata = text.split(maxsplit=4)
            section.append(dns.rrset.from_text(name, int(ttl), rdclass, rdtype, rdata))
    return reply.to_wire()


def _target(wire: bytes) -> str | None:
    found = unfinished_target(wire, scan_response(wire))
    return None if found is None else b".".join(found).decode()


SOA = "cdn.test. 60 IN SOA ns1.cdn.test. h.cdn.test. 1 2 3 4 60"


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param(
            _answer("www.a.test", "A", ["www.a.test. 300 IN CNAME web.cdn.test."]),
            "web.cdn.test",
            id="lone-cname",
        ),
        pytest.param(
            _answer(
                "www.a.test",
                "A",
                ["www.a.test. 300 IN CNAME x.a.test.", "x.a.test. 300 IN CNAME web.cdn.test."],
            ),
            "web.cdn.test",
            id="two-links-unfinished",
        ),
        pytest.param(
            _answer(
                "www.a.test",
                "A",
                ["www.a.test. 300 IN CNAME web.cdn.test.", "web.cdn.test. 300 IN A 192.0.2.1"],
            ),
            None,
            id="finished",
        ),
        pytest.param(
            _answer("www.a.test", "A", ["www.a.test. 300 IN CNAME web.cdn.test."], [SOA]),
            None,
            id="nodata-proof-for-the-target",
        ),
        pytest.param(
            _answer(
                "www.a.test",
                "A",
                ["www.a.test. 300 IN CNAME web.cdn.test."],
                [SOA],
                rcode=dns.rcode.NXDOMAIN,
            ),
            None,
            id="nxdomain",
        ),
        pytest.param(
            _answer(
                "www.a.test",
                "A",
                ["www.a.test. 300 IN CNAME web.cdn.test."],
                rcode=dns.rcode.SERVFAIL,
            ),
            None,
            id="servfail",
        ),
        pytest.param(
            _answer("www.a.test", "CNAME", ["www.a.test. 300 IN CNAME web.cdn.test."]),
            None,
            id="cname-question",
        ),
        pytest.param(_answer("www.a.test", "A", ["www.a.test. 300 IN A 192.0.2.1"]), None, id="a"),
        pytest.param(_answer("www.a.test", "A", []), None, id="empty-nodata"),
        pytest.param(
            _answer(
                "www.a.test",
                "A",
                ["www.a.test. 300 IN CNAME b.a.test.", "b.a.test. 300 IN CNAME www.a.test."],
            ),
            None,
            id="loop-left-to-scrub",
        ),
        pytest.param(
            _answer("www.old.test", "A", ["old.test. 300 IN DNAME new.test."]),
            "www.new.test",
            id="dname-without-its-cname",
        ),
    ],
)
def test_unfinished_target(wire: bytes, expected: str | None) -> None:
    assert _target(wire) == expected


def test_target_query_keeps_type_class_cd_and_do() -> None:
    client = dns.message.make_query("www.a.test", "AAAA", use_edns=0, want_dnssec=True)
    client.flags |= dns.flags.CD
    wire = client.to_wire()
    q = parse_query(wire, ("127.0.0.1", 1), Transport.UDP)
    asked = parse_query(
        target_query(wire, q.question_end, (b"web", b"CDN", b"test"), q.do),
        ("127.0.0.1", 1),
        Transport.UDP,
    )
    assert (asked.qname, asked.qtype, asked.qclass, asked.do, asked.cd) == (
        "web.cdn.test",
        28,
        1,
        True,
        True,
    )
    assert asked.flags & 0x0100  # RD


@pytest.mark.parametrize(("first_ad", "then_ad"), [(True, True), (True, False), (False, True)])
def test_joined(first_ad: bool, then_ad: bool) -> None:
    first = _answer("www.a.test", "A", ["www.a.test. 300 IN CNAME web.cdn.test."], ad=first_ad)
    then = _answer(
        "web.cdn.test", "A", [], [SOA], rcode=dns.rcode.NXDOMAIN, ad=then_ad
    )  # the target does not exist
    wire, scan = joined(first, then)
    message = dns.message.from_wire(wire)
    assert scan.rcode == dns.rcode.NXDOMAIN
    assert str(message.question[0].name) == "www.a.test."
    assert [str(rrset) for rrset in message.answer] == ["www.a.test. 300 IN CNAME web.cdn.test."]
    assert [str(rrset.name) for rrset in message.authority] == ["cdn.test."]
    assert bool(message.flags & dns.flags.AD) == (first_ad and then_ad)
