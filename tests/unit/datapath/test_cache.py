"""dnsfilter.datapath.cache: what is cached for how long, how entries are served, keys, and
eviction.

Upstream responses are packed by dnslib (so names are compressed the way real servers do it);
served replies are decoded with dnslib (TTLs record by record) and dnspython (flags, EDNS).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import pytest
from dnslib import EDNS0, QTYPE, RR, DNSHeader, DNSQuestion, DNSRecord, EDNSOption

from dnsfilter.datapath import cache as cache_module
from dnsfilter.datapath.cache import (
    AnswerCache,
    CacheEntry,
    CacheKey,
    Key,
    TtlPolicy,
    make_entry,
    make_passthrough,
)
from dnsfilter.datapath.wire import opt_record, scan_response
from tests.vectors import CD, RD, RESPONSE_CNAME_CHAIN, TC, question

NOW = 1000.0
SOA_300 = "example.com. 3600 IN SOA ns1.example.com. admin.example.com. 1 7200 900 1209600 300"
NS_ONLY = "example.com. 3600 IN NS ns1.example.com."
#: www.example.com IN A as the client spelled it: same length, other case.
CLIENT_QUESTION = question(b"\x03WWW\x07ExAmPlE\x03cOm\x00")


def response(
    answers: Sequence[str] = (),
    authority: Sequence[str] = (),
    additional: Sequence[str] = (),
    *,
    qname: str = "www.example.com",
    qtype: int = QTYPE.A,
    rcode: int = 0,
    tc: bool = False,
    edns: Any = None,
    msg_id: int = 0x7777,
) -> bytes:
    """An upstream response packed by dnslib; records are given in zone-file syntax."""
    record = DNSRecord(
        DNSHeader(id=msg_id, qr=1, aa=1, rd=1, ra=1, tc=int(tc), rcode=rcode),
        q=DNSQuestion(qname, qtype),
    )
    for line in answers:
        record.add_answer(*RR.fromZone(line))
    for line in authority:
        record.add_auth(*RR.fromZone(line))
    for line in additional:
        record.add_ar(*RR.fromZone(line))
    if edns is not None:
        record.add_ar(edns)
    return bytes(record.pack())


def entry_for(wire: bytes, now: float = NOW, policy: TtlPolicy | None = None) -> CacheEntry | None:
    return make_entry(wire, scan_response(wire), now, policy or TtlPolicy())


def cached(wire: bytes, now: float = NOW, policy: TtlPolicy | None = None) -> CacheEntry:
    entry = entry_for(wire, now, policy)
    assert entry is not None
    return entry


def served_ttls(wire: bytes) -> list[int]:
    """TTL of every record of a reply, in wire order, OPT excluded (dnslib keeps them apart)."""
    record: Any = DNSRecord.parse(wire)
    return [rr.ttl for rr in [*record.rr, *record.auth, *record.ar] if rr.rtype != QTYPE.OPT]


def render(entry: CacheEntry, now: float, opt: bytes = b"", flags: int = RD) -> bytes:
    return entry.reply(0x4242, flags, CLIENT_QUESTION, opt, now, False)


# ---------------------------------------------------------------------------------------
# make_entry: what may be cached, and for how long


@pytest.mark.parametrize(
    ("wire", "lifetime"),
    [
        pytest.param(
            response(
                [
                    "www.example.com. 300 IN A 192.0.2.1",
                    "www.example.com. 60 IN A 192.0.2.2",
                    "www.example.com. 900 IN A 192.0.2.3",
                ]
            ),
            60,
            id="several-ttls-smallest-wins",
        ),
        pytest.param(
            response(
                [
                    "www.example.com. 3600 IN CNAME a.example.net.",
                    "a.example.net. 120 IN CNAME b.example.org.",
                    "b.example.org. 30 IN A 192.0.2.9",
                ]
            ),
            30,
            id="cname-chain",
        ),
        pytest.param(
            response(
                ["www.example.com. 600 IN A 192.0.2.1"],
                ["example.com. 100 IN NS ns1.example.com."],
                ["ns1.example.com. 200 IN A 192.0.2.53"],
            ),
            100,
            id="authority-ttl-counts",
        ),
        pytest.param(
            response(["www.example.com. 600 IN A 192.0.2.1"], edns=EDNS0(udp_len=1232)),
            600,
            id="opt-ttl-field-is-not-a-ttl",
        ),
        pytest.param(response(rcode=3, authority=[SOA_300]), 300, id="nxdomain-soa-minimum"),
        pytest.param(
            response(
                rcode=3,
                authority=["example.com. 120 IN SOA ns1.example.com. a.example.com. 1 2 3 4 900"],
            ),
            120,
            id="nxdomain-soa-ttl",
        ),
        pytest.param(
            response(
                rcode=3,
                authority=["example.com. 7200 IN SOA ns1.example.com. a.example.com. 1 2 3 4 7200"],
            ),
            3600,
            id="nxdomain-negative-max-ttl",
        ),
        pytest.param(
            response(
                authority=["example.com. 600 IN SOA ns1.example.com. a.example.com. 1 2 3 4 60"]
            ),
            60,
            id="nodata-soa",
        ),
        pytest.param(
            response(["www.example.com. 30 IN CNAME gone.example.com."], [SOA_300], rcode=3),
            30,
            id="nxdomain-after-cname",
        ),
        pytest.param(
            response(
                ["example.com. 500 IN SOA ns1.example.com. a.example.com. 1 2 3 4 5"],
                qname="example.com",
                qtype=QTYPE.SOA,
            ),
            500,
            id="soa-query-answer-is-positive",
        ),
        pytest.param(response(rcode=3), None, id="nxdomain-without-soa"),
        pytest.param(response(), None, id="nodata-without-soa"),
        pytest.param(response(authority=[NS_ONLY]), None, id="nodata-referral-ns-only"),
        pytest.param(
            response(rcode=3, additional=[SOA_300]), None, id="nxdomain-soa-in-additional"
        ),
        pytest.param(
            response(
                rcode=3,
                authority=["example.com. 3600 IN SOA ns1.example.com. a.example.com. 1 2 3 4 0"],
            ),
            None,
            id="negative-soa-minimum-0",
        ),
        pytest.param(
            response(
                rcode=3,
                authority=["example.com. 0 IN SOA ns1.example.com. a.example.com. 1 2 3 4 300"],
            ),
            None,
            id="negative-soa-ttl-0",
        ),
        pytest.param(response(rcode=2), None, id="servfail"),
        pytest.param(
            response(["www.example.com. 60 IN A 192.0.2.1"], rcode=2),
            None,
            id="servfail-with-answer",
        ),
        pytest.param(response(rcode=5), None, id="refused"),
        pytest.param(response(rcode=1), None, id="formerr"),
        pytest.param(response(rcode=4), None, id="notimp"),
        pytest.param(response(tc=True), None, id="tc-empty"),
        pytest.param(
            response(["www.example.com. 60 IN A 192.0.2.1"], tc=True), None, id="tc-with-answer"
        ),
        pytest.param(response(["www.example.com. 0 IN A 192.0.2.1"]), None, id="ttl-0"),
        pytest.param(
            response(["www.example.com. 0 IN A 192.0.2.1", "www.example.com. 60 IN A 192.0.2.2"]),
            None,
            id="ttl-0-one-of-two",
        ),
        pytest.param(
            response(["www.example.com. 60 IN A 192.0.2.1"], edns=EDNS0(ext_rcode=1)),
            None,
            id="extended-rcode-badvers",
        ),
    ],
)
def test_make_entry_lifetime(wire: bytes, lifetime: int | None) -> None:
    entry = entry_for(wire)
    if lifetime is None:
        assert entry is None
    else:
        assert entry is not None
        assert (entry.stored_at, entry.expires_at) == (NOW, NOW + lifetime)


@pytest.mark.parametrize(
    ("answers", "policy", "lifetime", "ttls"),
    [
        pytest.param(
            ["www.example.com. 5 IN A 192.0.2.1", "www.example.com. 300 IN A 192.0.2.2"],
            TtlPolicy(min_ttl=60),
            60,
            [60, 300],
            id="min-ttl-raises",
        ),
        pytest.param(
            ["www.example.com. 100000 IN A 192.0.2.1", "www.example.com. 90000 IN A 192.0.2.2"],
            TtlPolicy(),
            86400,
            [86400, 86400],
            id="default-max-ttl-one-day",
        ),
        pytest.param(
            ["www.example.com. 300 IN A 192.0.2.1", "www.example.com. 30 IN A 192.0.2.2"],
            TtlPolicy(min_ttl=50, max_ttl=100),
            50,
            [100, 50],
            id="both-clamps",
        ),
        pytest.param(
            ["www.example.com. 0 IN A 192.0.2.1"],
            TtlPolicy(min_ttl=30),
            30,
            [30],
            id="min-ttl-lifts-ttl-0",
        ),
        pytest.param(
            ["www.example.com. 60 IN A 192.0.2.1"],
            TtlPolicy(max_ttl=0),
            None,
            None,
            id="max-ttl-0-disables",
        ),
    ],
)
def test_ttl_policy_positive(
    answers: list[str],
    policy: TtlPolicy,
    lifetime: int | None,
    ttls: list[int] | None,
) -> None:
    entry = entry_for(response(answers), NOW, policy)
    if lifetime is None:
        assert entry is None
        return
    assert entry is not None
    assert entry.expires_at - entry.stored_at == lifetime
    assert served_ttls(render(entry, NOW)) == ttls


@pytest.mark.parametrize(
    ("soa", "policy", "lifetime"),
    [
        pytest.param(
            "900 IN SOA ns. a. 1 2 3 4 900",
            TtlPolicy(negative_max_ttl=60),
            60,
            id="negative-max-ttl",
        ),
        pytest.param(
            "30 IN SOA ns. a. 1 2 3 4 30",
            TtlPolicy(min_ttl=600),
            30,
            id="min-ttl-not-applied-to-negative",
        ),
        pytest.param(
            "90000 IN SOA ns. a. 1 2 3 4 90000",
            TtlPolicy(max_ttl=10),
            3600,
            id="max-ttl-not-applied-to-negative",
        ),
        pytest.param(
            "500 IN SOA ns. a. 1 2 3 4 400",
            TtlPolicy(negative_max_ttl=450),
            400,
            id="minimum-smallest",
        ),
    ],
)
def test_ttl_policy_negative(soa: str, policy: TtlPolicy, lifetime: int) -> None:
    entry = cached(response(authority=[f"example.com. {soa}"], rcode=3), NOW, policy)
    assert entry.expires_at - entry.stored_at == lifetime
    # The SOA is served with the negative TTL itself (RFC 2308 5).
    assert served_ttls(render(entry, NOW)) == [lifetime]


@pytest.mark.parametrize(
    ("soa", "negative_ttl"),
    [
        pytest.param("60 IN SOA ns. a. 1 2 3 4 600", 60, id="soa-ttl-smaller"),
        pytest.param("600 IN SOA ns. a. 1 2 3 4 60", 60, id="minimum-smaller"),
    ],
)
def test_negative_ttl_caps_the_records_before_the_soa(soa: str, negative_ttl: int) -> None:
    """RFC 2308 5: the negative TTL is min(SOA TTL, MINIMUM), and a CNAME to the missing
    name is served no longer than the negative answer it leads to."""
    wire = response(
        ["www.example.com. 3600 IN CNAME gone.example.com."], [f"example.com. {soa}"], rcode=3
    )
    entry = cached(wire)
    assert entry.expires_at - entry.stored_at == negative_ttl
    assert served_ttls(render(entry, NOW)) == [negative_ttl, negative_ttl]


# ---------------------------------------------------------------------------------------
# CacheEntry.reply: TTLs counted down, the client's own header and question


_TWO_A = response(["www.example.com. 300 IN A 192.0.2.1", "www.example.com. 60 IN A 192.0.2.2"])


@pytest.mark.parametrize(
    ("now", "ttls"),
    [
        pytest.param(NOW, [300, 60], id="age-0"),
        pytest.param(NOW + 0.999, [300, 60], id="age-0.999-whole-seconds"),
        pytest.param(NOW + 1.0, [299, 59], id="age-1"),
        pytest.param(NOW + 59.5, [241, 1], id="age-59.5"),
        pytest.param(NOW + 60.0, [240, 0], id="age-60-expired-record-0"),
        pytest.param(NOW + 61.0, [239, 0], id="age-61-never-negative"),
        pytest.param(NOW + 300.0, [0, 0], id="age-300"),
        pytest.param(NOW + 10**6, [0, 0], id="age-million"),
    ],
)
def test_reply_ttls_count_down(now: float, ttls: list[int]) -> None:
    entry = cached(_TWO_A)
    assert served_ttls(render(entry, now)) == ttls


def test_reply_ttls_any_order_of_ages() -> None:
    """The per-age rendering is reused only for the same age, whichever came before."""
    entry = cached(_TWO_A)
    for age, ttls in [(10, [290, 50]), (5, [295, 55]), (10, [290, 50]), (0, [300, 60])]:
        assert served_ttls(render(entry, NOW + age)) == ttls


def test_reply_uses_client_header_and_question() -> None:
    entry = cached(_TWO_A)
    wire = entry.reply(0x4242, CD, CLIENT_QUESTION, b"", NOW, False)
    assert wire[:2] == b"\x42\x42"
    assert wire[12 : 12 + len(CLIENT_QUESTION)] == CLIENT_QUESTION
    msg = dns.message.from_wire(wire)
    assert msg.id == 0x4242
    # RD and CD from the client (RD clear, CD set here); QR and RA ours; AA cleared.
    assert msg.flags & ~0xF == dns.flags.QR | dns.flags.RA | dns.flags.CD
    assert msg.rcode() == dns.rcode.NOERROR
    assert msg.question[0].name.to_text() == "WWW.ExAmPlE.cOm."
    # dnslib compressed the owners to 0xC00C, so they now read in the client's spelling.
    assert [rrset.name.to_text() for rrset in msg.answer] == ["WWW.ExAmPlE.cOm."]
    assert sorted(rd.to_text() for rd in msg.answer[0]) == ["192.0.2.1", "192.0.2.2"]
    assert msg.edns == -1


@pytest.mark.parametrize(
    ("query_flags", "rd"),
    [
        pytest.param(RD, True, id="rd-set"),
        pytest.param(0, False, id="rd-clear"),
        pytest.param(RD | CD, True, id="rd-cd"),
    ],
)
def test_reply_rd_from_client(query_flags: int, rd: bool) -> None:
    wire = render(cached(_TWO_A), NOW, flags=query_flags)
    flags = struct.unpack_from("!H", wire, 2)[0]
    assert bool(flags & RD) is rd
    assert flags & 0x8000  # QR


_UPSTREAM_EDNS = EDNS0(udp_len=4096, flags="do", opts=[EDNSOption(10, b"0123456789abcdef")])
_WITH_GLUE_AND_OPT = response(
    ["www.example.com. 300 IN CNAME cdn.example.net."],
    ["example.net. 600 IN NS ns.example.net."],
    ["ns.example.net. 900 IN A 192.0.2.53"],
    edns=_UPSTREAM_EDNS,
)


@pytest.mark.parametrize(
    ("opt", "arcount", "edns"),
    [
        pytest.param(b"", 1, -1, id="client-without-edns"),
        pytest.param(opt_record(True), 2, 0, id="client-with-edns-do"),
        pytest.param(opt_record(False), 2, 0, id="client-with-edns"),
    ],
)
def test_reply_replaces_upstream_opt(opt: bytes, arcount: int, edns: int) -> None:
    entry = cached(_WITH_GLUE_AND_OPT)
    assert (entry.layout.ancount, entry.layout.nscount, entry.layout.arcount) == (1, 1, 1)
    wire = render(entry, NOW + 2, opt)
    assert struct.unpack_from("!HHHH", wire, 4) == (1, 1, 1, arcount)
    assert wire.endswith(opt)
    assert b"0123456789abcdef" not in wire  # the upstream's cookie option is gone
    msg = dns.message.from_wire(wire)
    assert msg.edns == edns
    if opt:
        assert msg.payload == 1232  # ours, not the upstream's 4096
        assert list(msg.options) == []
        assert bool(msg.ednsflags & dns.flags.DO) is bool(opt[7] & 0x80)
    assert served_ttls(wire) == [298, 598, 898]
    assert [rrset.to_text() for rrset in msg.additional] == ["ns.example.net. 898 IN A 192.0.2.53"]


def test_reply_clears_aa_and_keeps_negative_rcode() -> None:
    wire = response(authority=[SOA_300], rcode=3)
    assert struct.unpack_from("!H", wire, 2)[0] & 0x0400  # upstream said AA
    msg = dns.message.from_wire(render(cached(wire), NOW + 100))
    assert not msg.flags & dns.flags.AA
    assert msg.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.ttl for rrset in msg.authority] == [200]


def test_hit_renderings_follow_the_age() -> None:
    """A hit entry keeps its rendering for the second it is valid, in any order of ages."""
    cache = AnswerCache(10)
    entry = cached(_TWO_A)
    cache.put(key("a"), entry)
    for age, ttls in [
        (0, [300, 60]),
        (10, [290, 50]),
        (10.9, [290, 50]),
        (5, [295, 55]),
        (11, [289, 49]),
        (0.5, [300, 60]),
        (-3, [300, 60]),  # a clock behind the fill serves the stored TTLs
    ]:
        assert cache.get(key("a"), NOW + age) is entry
        assert served_ttls(render(entry, NOW + age)) == ttls


def test_a_hit_entry_renders_once_per_second_of_age() -> None:
    """The rendering of an age is kept for that second: the same bytes object, not a copy."""
    cache = AnswerCache(10)
    entry = cached(_TWO_A)
    cache.put(key("a"), entry)
    assert cache.get(key("a"), NOW + 10.2) is entry
    first = entry.body_at(NOW + 10.2)
    assert entry.body_at(NOW + 10.7) is first
    assert entry.body_at(NOW + 10.0) is first
    later = entry.body_at(NOW + 11.0)
    assert later is not first and later != first
    assert entry.body_at(NOW + 11.9) is later


@pytest.mark.parametrize("now", [0.0, 12345.678901, 8.6e6 + 0.123456789])
@pytest.mark.parametrize("ttl", [1, 299, 86400])
def test_expiry_on_a_real_clock(now: float, ttl: int) -> None:
    """expires_at is derived from stored_at and prefetch_at, to within a nanosecond."""
    entry = entry_with_ttl(ttl, now)
    assert entry.expires_at == pytest.approx(now + ttl, abs=1e-9)
    cache = AnswerCache(10)
    cache.put(key("a"), entry)
    assert cache.get(key("a"), now + ttl - 1e-6) is entry
    assert served_ttls(render(entry, now + ttl - 1e-6)) == [1]  # age ttl - 1
    assert cache.get(key("a"), now + ttl + 1e-6) is None


def test_same_age_same_bytes_and_body_never_mutated() -> None:
    wire = _WITH_GLUE_AND_OPT
    scan = scan_response(wire)
    assert scan.opt is not None
    body = wire[scan.question_end : scan.opt.start]
    entry = cached(wire)
    assert entry.body == body
    first = render(entry, NOW + 7.1)
    second = render(entry, NOW + 7.9)
    assert first == second
    later = render(entry, NOW + 8.0)
    assert later != first
    assert render(entry, NOW + 7.5) == first
    assert entry.body == body
    # Another client at the same age gets the same records under its own header and question.
    other_question = question(b"\x03www\x07example\x03COM\x00")
    other = entry.reply(0x0101, 0, other_question, b"", NOW + 7.2, False)
    assert other[:2] == b"\x01\x01"
    assert other[12 + len(other_question) :] == first[12 + len(CLIENT_QUESTION) :]
    assert entry.body == body


def test_ttl_offsets_point_at_ttls() -> None:
    entry = cached(RESPONSE_CNAME_CHAIN)
    stored = [struct.unpack_from("!I", entry.body, at)[0] for at in entry.layout.ttl_offsets]
    assert stored == [300, 60]
    assert entry.body == RESPONSE_CNAME_CHAIN[33:67]  # both answers, no OPT
    assert served_ttls(render(entry, NOW + 45)) == [255, 15]


# ---------------------------------------------------------------------------------------
# make_passthrough: the reply forwarded now, not cached


@pytest.mark.parametrize(
    ("wire", "rcode", "tc", "ttls"),
    [
        pytest.param(response(tc=True), dns.rcode.NOERROR, True, [], id="truncated"),
        pytest.param(response(rcode=2), dns.rcode.SERVFAIL, False, [], id="servfail"),
        pytest.param(response(rcode=3), dns.rcode.NXDOMAIN, False, [], id="nxdomain-no-soa"),
        pytest.param(
            response(["www.example.com. 0 IN A 192.0.2.1"]),
            dns.rcode.NOERROR,
            False,
            [0],
            id="ttl-0",
        ),
        pytest.param(
            response(["www.example.com. 100000 IN A 192.0.2.1"]),
            dns.rcode.NOERROR,
            False,
            [100000],
            id="ttl-not-clamped",
        ),
    ],
)
def test_make_passthrough(wire: bytes, rcode: dns.rcode.Rcode, tc: bool, ttls: list[int]) -> None:
    entry = make_passthrough(wire, scan_response(wire), NOW)
    assert entry.expires_at == entry.stored_at == NOW
    out = render(entry, NOW, opt_record(False))
    msg = dns.message.from_wire(out, raise_on_truncation=False)
    assert msg.rcode() == rcode
    assert bool(msg.flags & dns.flags.TC) is tc
    assert not msg.flags & dns.flags.AA
    assert served_ttls(out) == ttls
    assert struct.unpack_from("!H", out, 2)[0] & TC == (TC if tc else 0)


# ---------------------------------------------------------------------------------------
# AnswerCache


def key(name: str, qtype: int = 1, do: bool = False, cd: bool = False) -> Key:
    return CacheKey(name, qtype, 1, do, cd)


def entry_with_ttl(ttl: int, now: float = NOW) -> CacheEntry:
    return cached(response([f"www.example.com. {ttl} IN A 192.0.2.1"]), now)


def test_hit_entry_gets_a_second_chance() -> None:
    cache = AnswerCache(3)
    entries = {name: entry_with_ttl(300) for name in "abcde"}
    for name in "abc":
        cache.put(key(name), entries[name])
    assert cache.get(key("a"), NOW) is entries["a"]  # marks a
    cache.put(key("d"), entries["d"])  # the sweep moves a to the newest end and evicts b
    assert (len(cache), cache.evictions) == (3, 1)
    assert cache.get(key("b"), NOW) is None
    cache.put(key("e"), entries["e"])  # evicts c
    assert (len(cache), cache.evictions) == (3, 2)
    assert cache.get(key("c"), NOW) is None
    assert [cache.get(key(n), NOW) for n in "ade"] == [entries["a"], entries["d"], entries["e"]]
    assert (cache.hits, cache.misses) == (4, 2)


def test_put_existing_key_replaces_without_eviction() -> None:
    cache = AnswerCache(2)
    old, new, other = entry_with_ttl(60), entry_with_ttl(120), entry_with_ttl(60)
    cache.put(key("a"), old)
    cache.put(key("b"), other)
    cache.put(key("a"), new)  # replaces and makes a the most recent
    assert (len(cache), cache.evictions) == (2, 0)
    cache.put(key("c"), entry_with_ttl(60))  # so b goes, not a
    assert cache.evictions == 1
    assert cache.get(key("a"), NOW) is new
    assert cache.get(key("b"), NOW) is None


def test_max_entries_one() -> None:
    cache = AnswerCache(1)
    for index, name in enumerate("xyz"):
        cache.put(key(name), entry_with_ttl(60))
        assert (len(cache), cache.evictions) == (1, index)
    assert cache.get(key("y"), NOW) is None
    assert cache.get(key("z"), NOW) is not None


def kept(cache: AnswerCache, names: str) -> str:
    return "".join(name for name in names if cache.get_stale(key(name), NOW) is not None)


def test_second_chance_lasts_one_sweep() -> None:
    cache = AnswerCache(3)
    for name in "abc":
        cache.put(key(name), entry_with_ttl(300))
    cache.get(key("a"), NOW)
    cache.put(key("d"), entry_with_ttl(300))  # a moves on, unmarked; b goes
    cache.put(key("e"), entry_with_ttl(300))  # c goes
    cache.put(key("f"), entry_with_ttl(300))  # a was not hit again: it goes now
    assert kept(cache, "abcdef") == "def"
    assert cache.evictions == 3


def test_sweep_when_every_entry_was_hit() -> None:
    """A first round unmarks every entry; the second evicts the oldest."""
    cache = AnswerCache(3)
    for name in "abc":
        cache.put(key(name), entry_with_ttl(300))
    for name in "abc":
        cache.get(key(name), NOW)
    cache.put(key("d"), entry_with_ttl(300))
    assert kept(cache, "abcd") == "bcd"
    assert (len(cache), cache.evictions) == (3, 1)


def test_big_cache_evicts_in_batches() -> None:
    cache = AnswerCache(640)  # a sweep frees 640 // 64 = 10 entries
    wire = response(["www.example.com. 300 IN A 192.0.2.1"])
    for index in range(640):
        cache.put(key(f"n{index}"), cached(wire))
    assert (len(cache), cache.evictions) == (640, 0)
    cache.put(key("new0"), cached(wire))
    assert (len(cache), cache.evictions) == (631, 10)
    assert cache.get(key("n9"), NOW) is None
    assert cache.get(key("n10"), NOW) is not None
    for index in range(1, 10):  # room for nine more without a sweep
        cache.put(key(f"new{index}"), cached(wire))
    assert (len(cache), cache.evictions) == (640, 10)
    cache.put(key("new10"), cached(wire))
    assert (len(cache), cache.evictions) == (631, 20)
    assert cache.get(key("n10"), NOW) is not None  # hit above, so n11..n20 went instead
    assert cache.get(key("n20"), NOW) is None


@pytest.mark.parametrize(
    ("now", "hit"),
    [
        pytest.param(NOW, True, id="at-store"),
        pytest.param(NOW + 59.999, True, id="just-before-expiry"),
        pytest.param(NOW + 60.0, False, id="at-expires-at"),
        pytest.param(NOW + 3600.0, False, id="long-after"),
    ],
)
def test_expiry_at_expires_at(now: float, hit: bool) -> None:
    cache = AnswerCache(10)
    entry = entry_with_ttl(60)
    cache.put(key("a"), entry)
    got = cache.get(key("a"), now)
    assert (got is entry) is hit
    assert (cache.hits, cache.misses) == ((1, 0) if hit else (0, 1))
    assert len(cache) == (1 if hit else 0)  # an expired entry is dropped on sight


def test_expired_entry_stays_gone() -> None:
    cache = AnswerCache(10)
    cache.put(key("a"), entry_with_ttl(60))
    assert cache.get(key("a"), NOW + 61) is None
    assert cache.get(key("a"), NOW) is None  # removed, even for an earlier clock
    assert (cache.hits, cache.misses, cache.evictions) == (0, 2, 0)


def test_hit_and_miss_counters() -> None:
    cache = AnswerCache(10)
    assert cache.get(key("a"), NOW) is None
    cache.put(key("a"), entry_with_ttl(60))
    for _ in range(3):
        assert cache.get(key("a"), NOW + 1) is not None
    assert cache.get(key("b"), NOW) is None
    assert (cache.hits, cache.misses, cache.evictions) == (3, 2, 0)
    cache.clear()
    assert len(cache) == 0
    assert cache.get(key("a"), NOW) is None
    assert (cache.hits, cache.misses) == (3, 3)


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(key("www.example.com", do=True), id="do"),
        pytest.param(key("www.example.com", cd=True), id="cd"),
        pytest.param(key("www.example.com", do=True, cd=True), id="do-cd"),
        pytest.param(key("www.example.com", qtype=28), id="qtype"),
        pytest.param(CacheKey("www.example.com", 1, 3, False, False), id="qclass"),
        pytest.param(key("example.com"), id="qname"),
    ],
)
def test_key_fields_keep_entries_apart(variant: Key) -> None:
    base = key("www.example.com")
    assert variant != base
    cache = AnswerCache(10)
    first, second = entry_with_ttl(60), entry_with_ttl(60)
    cache.put(base, first)
    assert cache.get(variant, NOW) is None
    cache.put(variant, second)
    assert cache.get(base, NOW) is first
    assert cache.get(variant, NOW) is second
    assert len(cache) == 2


def test_keys_of_different_questions_differ() -> None:
    questions = [
        ("a", 1, 1, False, False),
        ("a", 28, 1, False, False),
        ("a", 1, 1, True, False),
        ("a", 1, 1, False, True),
        ("a", 1, 3, False, False),
        ("a", 28, 3, False, False),
        ("a\x00\x1c", 1, 1, False, False),  # the name is latin-1 text: any octet may be in it
        ("a\x1c", 1, 1, False, False),
    ]
    keys = [CacheKey(*question) for question in questions]
    assert len(set(keys)) == len(keys)


def test_usual_key_is_the_name_itself() -> None:
    """IN A without DO or CD, most of what a cache holds, costs no key object."""
    name = "www.example.com"
    assert CacheKey(name, 1, 1, False, False) is name


def test_entries_of_one_shape_share_their_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "_LAYOUTS", {})
    first = entry_with_ttl(60)
    second = cached(response(["www.example.com. 300 IN A 192.0.2.9"]), NOW + 5)
    assert first.layout is second.layout
    assert cached(_TWO_A).layout is not first.layout


def test_cache_keeps_ttl_policy() -> None:
    policy = TtlPolicy(min_ttl=5, max_ttl=50, negative_max_ttl=20)
    assert AnswerCache(4, policy).ttl_policy == policy
    assert AnswerCache(4).ttl_policy == TtlPolicy(0, 86400, 3600)


# ---------------------------------------------------------------------------------------
# Serve-stale (RFC 8767): expired entries kept for get_stale, never returned by get


@pytest.mark.parametrize(
    ("now", "fresh", "stale", "kept"),
    [
        pytest.param(NOW + 59.999, True, True, True, id="fresh"),
        pytest.param(NOW + 60.0, False, True, True, id="just-expired"),
        pytest.param(NOW + 60 + 99.999, False, True, True, id="just-inside-max-age"),
        pytest.param(NOW + 60 + 100.0, False, False, False, id="at-max-age"),
        pytest.param(NOW + 86400.0, False, False, False, id="long-after"),
    ],
)
def test_stale_window(now: float, fresh: bool, stale: bool, kept: bool) -> None:
    cache = AnswerCache(10, stale_max_age=100)
    entry = entry_with_ttl(60)
    cache.put(key("a"), entry)
    assert (cache.get_stale(key("a"), now) is entry) is stale
    assert (cache.get(key("a"), now) is entry) is fresh
    assert (len(cache) == 1) is kept  # get() drops an entry only past the stale window
    assert (cache.get_stale(key("a"), now) is entry) is (stale and kept)


def test_get_stale_counts_nothing_and_keeps_lru_order() -> None:
    cache = AnswerCache(2, stale_max_age=100)
    cache.put(key("a"), entry_with_ttl(60))
    cache.put(key("b"), entry_with_ttl(600))
    assert cache.get(key("a"), NOW + 61) is None  # a stale candidate is a miss
    assert cache.get_stale(key("a"), NOW + 61) is not None
    assert (cache.hits, cache.misses) == (0, 1)
    cache.put(key("c"), entry_with_ttl(60))  # a was not made recent: it goes first
    assert cache.get_stale(key("a"), NOW + 61) is None
    assert cache.evictions == 1


def test_stale_max_age_zero_drops_at_expiry() -> None:
    cache = AnswerCache(10)
    cache.put(key("a"), entry_with_ttl(60))
    assert cache.get_stale(key("a"), NOW + 60) is None
    assert cache.get(key("a"), NOW + 60) is None
    assert len(cache) == 0


@pytest.mark.parametrize("edns", [False, True], ids=["no-edns", "edns"])
def test_stale_reply_sets_every_ttl(edns: bool) -> None:
    wire = response(
        [
            "www.example.com. 300 IN CNAME a.example.net.",
            "a.example.net. 60 IN A 192.0.2.9",
        ],
        ["example.com. 3600 IN NS ns1.example.com."],
    )
    entry = cached(wire)
    opt = opt_record(False) if edns else b""
    stale = entry.stale_reply(0x4242, RD, CLIENT_QUESTION, opt, 30, False)
    assert served_ttls(stale) == [30, 30, 30]
    fresh = render(entry, NOW + 10, opt)
    assert len(stale) == len(fresh)
    assert stale[:12] == fresh[:12], "same header: client's ID and RD, counts, our OPT"
    assert stale.endswith(opt)
    assert served_ttls(render(entry, NOW + 10)) == [290, 50, 3590], "entry not mutated"


def test_stale_reply_of_negative_answer_keeps_rcode() -> None:
    entry = cached(response(rcode=3, authority=[SOA_300]))
    stale = dns.message.from_wire(entry.stale_reply(0x4242, RD, CLIENT_QUESTION, b"", 30, False))
    assert stale.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.ttl for rrset in stale.authority] == [30]


@pytest.mark.parametrize(
    ("ttl", "prefetch_at"),
    [
        pytest.param(100, NOW + 90, id="ttl-100"),
        pytest.param(10, NOW + 9, id="ttl-10"),
        pytest.param(1, NOW + 0.9, id="ttl-1"),
    ],
)
def test_prefetch_window_is_last_tenth(ttl: int, prefetch_at: float) -> None:
    entry = entry_with_ttl(ttl)
    assert entry.prefetch_at == pytest.approx(prefetch_at)
    assert (entry.late_hits, entry.prefetching, entry.stale_until) == (0, False, 0.0)


def test_resolver_state_kept_on_the_entry() -> None:
    entry = entry_with_ttl(100)
    entry.late_hits += 1
    entry.late_hits += 1
    entry.prefetching = True
    entry.stale_until = NOW + 30
    assert (entry.late_hits, entry.prefetching, entry.stale_until) == (2, True, NOW + 30)
    assert served_ttls(render(entry, NOW + 5)) == [95]


def test_opt_between_additional_records_is_left_out() -> None:
    """An OPT that is not the last record (legal, if unusual): the body is put together
    from the records around it, and serves the same reply as the usual order."""
    usual = _WITH_GLUE_AND_OPT
    scan = scan_response(usual)
    assert scan.opt is not None
    glue = scan.records[-1]
    assert glue.end == scan.opt.start  # dnslib writes the OPT last
    moved = (
        usual[: glue.start]
        + usual[scan.opt.start : scan.opt.end]
        + usual[glue.start : glue.end]
        + usual[scan.opt.end :]
    )
    assert len(moved) == len(usual) and scan_response(moved).opt is not None
    for opt in (b"", opt_record(True)):
        assert render(cached(moved), NOW + 2, opt) == render(cached(usual), NOW + 2, opt)


def test_records_left_out_by_scrubbing_are_copied_one_by_one_with_their_ttls() -> None:
    """When scrub drops a record, the others no longer sit back to back: they are copied one
    by one, counted in their own sections, and each TTL still counts down in place."""
    reply = DNSRecord(DNSHeader(id=7, qr=1, ra=1), q=DNSQuestion("www.example.test"))
    for n, ttl in ((1, 300), (2, 200), (3, 100)):
        reply.add_answer(*RR.fromZone(f"www.example.test. {ttl} IN A 192.0.2.{n}"))
    reply.add_auth(*RR.fromZone("example.test. 400 IN NS ns.example.test."))
    reply.add_ar(*RR.fromZone("ns.example.test. 500 IN A 192.0.2.53"))
    wire = bytes(reply.pack())
    scan = scan_response(wire)
    kept = scan._replace(records=tuple(r for i, r in enumerate(scan.records) if i != 1))
    entry = make_entry(wire, kept, NOW, TtlPolicy())
    assert entry is not None
    asked = question(b"\x03www\x07example\x04test\x00")
    served = DNSRecord.parse(entry.reply(0x4242, 0, asked, b"", NOW + 10, False))
    assert [(str(r.rname), r.ttl, str(r.rdata)) for r in served.rr] == [
        ("www.example.test.", 290, "192.0.2.1"),
        ("www.example.test.", 90, "192.0.2.3"),
    ]
    assert [(r.ttl, str(r.rdata)) for r in served.auth] == [(390, "ns.example.test.")]
    assert [(r.ttl, str(r.rdata)) for r in served.ar] == [(490, "192.0.2.53")]
