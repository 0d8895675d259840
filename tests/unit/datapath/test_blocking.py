"""dnsfilter.datapath.blocking: the reply a blocked query gets in each mode, decoded with
dnspython."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, cast

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import pytest

from dnsfilter.datapath import blocking
from dnsfilter.datapath.blocking import BlockAnswers, BlockMode
from dnsfilter.datapath.wire import QType, Query, Transport, parse_query
from tests.vectors import CD, DO, RD, WWW_EXAMPLE_COM_MIXED, opt_rr, query

CLIENT = ("198.51.100.7", 40000)
TTL = 123
SINK4 = ipaddress.IPv4Address("192.0.2.99")
SINK6 = ipaddress.IPv6Address("2001:db8::99")
OWNER = "WwW.ExAmPlE.COM."  # the question's own spelling, reached through the 0xC00C pointer

A, AAAA, MX, TXT, HTTPS = QType.A, QType.AAAA, QType.MX, QType.TXT, QType.HTTPS
NOERROR, NXDOMAIN, REFUSED = dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED


@dataclass(frozen=True)
class Expect:
    rcode: dns.rcode.Rcode
    answer: tuple[str, ...] = ()  #: rdata text of each answer record
    soa: bool = False  #: a synthetic SOA in the authority section


NULL_A = Expect(NOERROR, ("0.0.0.0",))
NULL_AAAA = Expect(NOERROR, ("::",))
SINK_A = Expect(NOERROR, (str(SINK4),))
SINK_AAAA = Expect(NOERROR, (str(SINK6),))
NODATA = Expect(NOERROR, soa=True)
NX = Expect(NXDOMAIN, soa=True)
REFUSE = Expect(REFUSED)


def make_query(qtype: int, edns: bool, do: bool = False, flags: int = RD) -> Query:
    opt = opt_rr(payload=1232, flags=DO if do else 0) if edns else None
    wire = query(WWW_EXAMPLE_COM_MIXED, qtype, msg_id=0x2468, flags=flags, opt=opt)
    return parse_query(wire, CLIENT, Transport.UDP)


def check(wire: bytes, q: Query, expect: Expect, ttl: int, list_name: str) -> None:
    """Decode wire and compare it with what a blocked reply to q must hold."""
    assert wire[12 : q.question_end] == q.wire[12 : q.question_end]
    msg = dns.message.from_wire(wire)
    assert msg.id == q.id
    assert msg.flags & ~0xF == dns.flags.QR | dns.flags.RA | (q.flags & (RD | CD))
    assert not msg.flags & dns.flags.AA
    assert msg.rcode() == expect.rcode
    assert msg.question[0].name.to_text() == OWNER
    assert msg.question[0].rdtype == q.qtype
    answers = [
        (rrset.name.to_text(), rrset.rdtype, rrset.ttl, rdata.to_text())
        for rrset in msg.answer
        for rdata in rrset
    ]
    assert answers == [(OWNER, q.qtype, ttl, text) for text in expect.answer]
    if expect.soa:
        (rrset,) = msg.authority
        assert (rrset.name.to_text(), rrset.rdtype, rrset.ttl) == (OWNER, dns.rdatatype.SOA, ttl)
        soa = cast(dns.rdtypes.ANY.SOA.SOA, rrset[0])
        assert soa.minimum == ttl
        assert soa.mname.to_text() == "dnsfilter.invalid."
    else:
        assert msg.authority == []
    assert msg.additional == []
    if q.edns:
        assert (msg.edns, msg.ednsflags) == (0, dns.flags.DO if q.do else 0)
        assert list(msg.options) == [dns.edns.EDEOption(dns.edns.EDECode.BLOCKED, list_name)]
    else:
        assert msg.edns == -1


_MODE_TABLE = {
    BlockMode.NULL: {A: NULL_A, AAAA: NULL_AAAA, MX: NODATA, TXT: NODATA, HTTPS: NODATA},
    BlockMode.NXDOMAIN: {A: NX, AAAA: NX, MX: NX, TXT: NX, HTTPS: NX},
    BlockMode.NODATA: {A: NODATA, AAAA: NODATA, MX: NODATA, TXT: NODATA, HTTPS: NODATA},
    BlockMode.REFUSED: {A: REFUSE, AAAA: REFUSE, MX: REFUSE, TXT: REFUSE, HTTPS: REFUSE},
    BlockMode.SINKHOLE: {A: SINK_A, AAAA: SINK_AAAA, MX: NODATA, TXT: NODATA, HTTPS: NODATA},
}


@pytest.mark.parametrize(
    ("edns", "do"),
    [
        pytest.param(False, False, id="no-edns"),
        pytest.param(True, False, id="edns"),
        pytest.param(True, True, id="edns-do"),
    ],
)
@pytest.mark.parametrize(
    ("mode", "qtype", "expect"),
    [
        pytest.param(mode, qtype, expect, id=f"{mode.value}-{qtype.name}")
        for mode, row in _MODE_TABLE.items()
        for qtype, expect in row.items()
    ],
)
def test_reply_per_mode_and_qtype(
    mode: BlockMode, qtype: QType, expect: Expect, edns: bool, do: bool
) -> None:
    # Sinkhole addresses are configured for every mode; only SINKHOLE may use them.
    answers = BlockAnswers(mode, TTL, SINK4, SINK6)
    q = make_query(qtype, edns, do)
    check(answers.reply(q, "ads-list"), q, expect, TTL, "ads-list")


@pytest.mark.parametrize(
    ("policy", "entry", "qtype", "expect"),
    [
        pytest.param(BlockMode.NULL, BlockMode.NXDOMAIN, A, NX, id="null-entry-nxdomain-A"),
        pytest.param(BlockMode.NULL, BlockMode.NXDOMAIN, MX, NX, id="null-entry-nxdomain-MX"),
        pytest.param(BlockMode.NULL, BlockMode.REFUSED, A, REFUSE, id="null-entry-refused"),
        pytest.param(BlockMode.NULL, BlockMode.NODATA, A, NODATA, id="null-entry-nodata-A"),
        pytest.param(BlockMode.NULL, BlockMode.NULL, AAAA, NULL_AAAA, id="null-entry-same-mode"),
        pytest.param(BlockMode.NXDOMAIN, BlockMode.NULL, A, NULL_A, id="nxdomain-entry-null-A"),
        pytest.param(
            BlockMode.NXDOMAIN, BlockMode.NULL, AAAA, NULL_AAAA, id="nxdomain-entry-null-AAAA"
        ),
        pytest.param(BlockMode.NXDOMAIN, BlockMode.NULL, TXT, NODATA, id="nxdomain-entry-null-TXT"),
        pytest.param(BlockMode.SINKHOLE, BlockMode.NULL, A, NULL_A, id="sinkhole-entry-null-A"),
        pytest.param(
            BlockMode.SINKHOLE, BlockMode.NULL, AAAA, NULL_AAAA, id="sinkhole-entry-null-AAAA"
        ),
        pytest.param(BlockMode.SINKHOLE, BlockMode.NXDOMAIN, A, NX, id="sinkhole-entry-nxdomain"),
        pytest.param(
            BlockMode.SINKHOLE, BlockMode.NODATA, AAAA, NODATA, id="sinkhole-entry-nodata"
        ),
        pytest.param(BlockMode.SINKHOLE, BlockMode.SINKHOLE, A, SINK_A, id="sinkhole-entry-same"),
        pytest.param(BlockMode.REFUSED, BlockMode.NODATA, A, NODATA, id="refused-entry-nodata"),
        pytest.param(BlockMode.NODATA, BlockMode.REFUSED, MX, REFUSE, id="nodata-entry-refused"),
        pytest.param(BlockMode.NODATA, None, A, NODATA, id="no-override"),
        # A sinkhole entry in a policy of another mode has no addresses to give: NODATA.
        pytest.param(
            BlockMode.NXDOMAIN, BlockMode.SINKHOLE, A, NODATA, id="nxdomain-entry-sinkhole-A"
        ),
    ],
)
def test_entry_mode_overrides_policy(
    policy: BlockMode, entry: BlockMode | None, qtype: QType, expect: Expect
) -> None:
    answers = BlockAnswers(policy, TTL, SINK4, SINK6)
    q = make_query(qtype, edns=True)
    check(answers.reply(q, "kaspersky", entry), q, expect, TTL, "kaspersky")


def test_override_ttl_follows_each_policy() -> None:
    """The null records built for overrides are per TTL, not shared across policies."""
    short = BlockAnswers(BlockMode.NXDOMAIN, 5)
    long = BlockAnswers(BlockMode.NXDOMAIN, 86400)
    q = make_query(A, edns=False)
    check(short.reply(q, "l", BlockMode.NULL), q, NULL_A, 5, "l")
    check(long.reply(q, "l", BlockMode.NULL), q, NULL_A, 86400, "l")
    check(short.reply(q, "l", BlockMode.NULL), q, NULL_A, 5, "l")


@pytest.mark.parametrize(
    ("ipv4", "ipv6", "qtype", "expect"),
    [
        pytest.param(SINK4, None, A, SINK_A, id="v4-only-A"),
        pytest.param(SINK4, None, AAAA, NODATA, id="v4-only-AAAA-nodata"),
        pytest.param(None, SINK6, A, NODATA, id="v6-only-A-nodata"),
        pytest.param(None, SINK6, AAAA, SINK_AAAA, id="v6-only-AAAA"),
        pytest.param(SINK4, None, HTTPS, NODATA, id="v4-only-HTTPS-nodata"),
    ],
)
def test_sinkhole_with_one_family(
    ipv4: ipaddress.IPv4Address | None,
    ipv6: ipaddress.IPv6Address | None,
    qtype: QType,
    expect: Expect,
) -> None:
    answers = BlockAnswers(BlockMode.SINKHOLE, TTL, ipv4, ipv6)
    for edns in (False, True):
        q = make_query(qtype, edns)
        check(answers.reply(q, "tiktok"), q, expect, TTL, "tiktok")


@pytest.mark.parametrize(
    ("ttl", "mode", "qtype", "expect"),
    [
        pytest.param(0, BlockMode.NULL, A, NULL_A, id="ttl-0-null"),
        pytest.param(1, BlockMode.NXDOMAIN, AAAA, NX, id="ttl-1-nxdomain"),
        pytest.param(604800, BlockMode.NODATA, MX, NODATA, id="ttl-week-nodata"),
        pytest.param(3600, BlockMode.SINKHOLE, AAAA, SINK_AAAA, id="ttl-hour-sinkhole"),
    ],
)
def test_configured_ttl_used(ttl: int, mode: BlockMode, qtype: QType, expect: Expect) -> None:
    answers = BlockAnswers(mode, ttl, SINK4, SINK6)
    q = make_query(qtype, edns=True, do=True)
    check(answers.reply(q, "wechat"), q, expect, ttl, "wechat")


def test_ede_text_is_the_list_of_each_reply() -> None:
    answers = BlockAnswers(BlockMode.NULL, TTL)
    q = make_query(A, edns=True)
    for name in ("wechat", "tiktok", "wechat", "Liste Ü", ""):
        msg = dns.message.from_wire(answers.reply(q, name))
        (option,) = msg.options
        assert isinstance(option, dns.edns.EDEOption)
        assert option.code == dns.edns.EDECode.BLOCKED
        assert option.text == (name or None)


@pytest.mark.parametrize(
    ("flags", "edns", "do"),
    [
        pytest.param(0, False, False, id="rd-clear"),
        pytest.param(RD | CD, True, True, id="rd-cd-do"),
        pytest.param(CD, True, False, id="cd-only"),
    ],
)
def test_reply_echoes_query_flags(flags: int, edns: bool, do: bool) -> None:
    answers = BlockAnswers(BlockMode.NULL, TTL)
    q = make_query(A, edns, do, flags)
    check(answers.reply(q, "x"), q, NULL_A, TTL, "x")


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        pytest.param("null", BlockMode.NULL, id="null"),
        pytest.param("nxdomain", BlockMode.NXDOMAIN, id="nxdomain"),
        pytest.param("nodata", BlockMode.NODATA, id="nodata"),
        pytest.param("refused", BlockMode.REFUSED, id="refused"),
        pytest.param("sinkhole", BlockMode.SINKHOLE, id="sinkhole"),
    ],
)
def test_block_mode_config_names(text: str, mode: BlockMode) -> None:
    assert BlockMode(text) is mode


def test_reused_reply_shapes_match_fresh_ones() -> None:
    """Shapes are built once per (list, mode, type, EDNS, DO) and reused: whatever order
    queries come in, each reply equals the one a fresh BlockAnswers builds for it."""
    shared = BlockAnswers(BlockMode.SINKHOLE, TTL, SINK4, None)
    shapes = [
        (qtype, edns, do, flags, name, mode)
        for qtype in (A, AAAA, QType.MX)
        for edns, do in ((False, False), (True, False), (True, True))
        for flags in (RD, RD | CD)
        for name in ("wechat", "tiktok")
        for mode in (None, BlockMode.NULL, BlockMode.NXDOMAIN)
    ]
    for qtype, edns, do, flags, name, mode in shapes * 2:
        q = make_query(qtype, edns, do, flags)
        fresh = BlockAnswers(BlockMode.SINKHOLE, TTL, SINK4, None)
        assert shared.reply(q, name, mode) == fresh.reply(q, name, mode)


def test_null_records_for_overrides_are_built_per_ttl_on_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The module's null records start empty here: a mutation run forks after every test
    ran once, and records built then would hide a broken builder."""
    monkeypatch.setattr(blocking, "_NULL_A", blocking._NullRecords(QType.A, 4))
    monkeypatch.setattr(blocking, "_NULL_AAAA", blocking._NullRecords(QType.AAAA, 16))
    answers = BlockAnswers(BlockMode.NXDOMAIN, 777)
    for qtype, expect in ((A, NULL_A), (AAAA, NULL_AAAA)):
        q = make_query(qtype, edns=False)
        check(answers.reply(q, "l", BlockMode.NULL), q, expect, 777, "l")
    assert list(blocking._NULL_A) == [777]


def test_each_reply_shape_is_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Types other than A and AAAA share one shape; a shape is built on first use only."""
    built: list[int] = []
    make = BlockAnswers._make

    def counting_make(
        self: BlockAnswers, qtype: int, name: str, mode: BlockMode | None, edns: bool, do: bool
    ) -> Any:
        built.append(qtype)
        return make(self, qtype, name, mode, edns, do)

    monkeypatch.setattr(BlockAnswers, "_make", counting_make)
    answers = BlockAnswers(BlockMode.NULL, TTL)
    for qtype in (A, A, MX, TXT, HTTPS, AAAA, A):
        q = make_query(qtype, edns=False)
        answers.reply(q, "l")
    assert built == [A, MX, AAAA]
