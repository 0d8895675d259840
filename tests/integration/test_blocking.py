"""Blocking end to end: modes, subdomains, allowlist, exceptions, networks, REFUSED."""

from __future__ import annotations

import socket
import subprocess

import dns.edns
import dns.flags
import dns.rcode
import pytest

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import rdata_texts

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("policy", "qtype", "rcode", "answers", "has_soa"),
    [
        pytest.param({"mode": "null"}, "A", dns.rcode.NOERROR, ["0.0.0.0"], False, id="null-A"),
        pytest.param({"mode": "null"}, "AAAA", dns.rcode.NOERROR, ["::"], False, id="null-AAAA"),
        pytest.param({"mode": "null"}, "MX", dns.rcode.NOERROR, [], True, id="null-MX-nodata"),
        pytest.param({"mode": "nxdomain"}, "A", dns.rcode.NXDOMAIN, [], True, id="nxdomain"),
        pytest.param({"mode": "nodata"}, "A", dns.rcode.NOERROR, [], True, id="nodata"),
        pytest.param({"mode": "refused"}, "A", dns.rcode.REFUSED, [], False, id="refused"),
        pytest.param(
            {"mode": "sinkhole", "sinkhole_ipv4": "192.0.2.250", "sinkhole_ipv6": "2001:db8::250"},
            "A",
            dns.rcode.NOERROR,
            ["192.0.2.250"],
            False,
            id="sinkhole-A",
        ),
        pytest.param(
            {"mode": "sinkhole", "sinkhole_ipv4": "192.0.2.250", "sinkhole_ipv6": "2001:db8::250"},
            "AAAA",
            dns.rcode.NOERROR,
            ["2001:db8::250"],
            False,
            id="sinkhole-AAAA",
        ),
        pytest.param(
            {"mode": "sinkhole", "sinkhole_ipv4": "192.0.2.250"},
            "AAAA",
            dns.rcode.NOERROR,
            [],
            True,
            id="sinkhole-v4-only-AAAA-nodata",
        ),
    ],
)
def test_blocking_modes(
    start_dnsfilter: StartDnsFilter,
    scripted_upstream: ScriptedUpstream,
    policy: dict[str, str],
    qtype: str,
    rcode: int,
    answers: list[str],
    has_soa: bool,
) -> None:
    config = base_config(
        [scripted_upstream.address],
        policies={"default": {"networks": ["loopback"], "lists": ["apps"], "ttl": 42, **policy}},
    )
    server = start_dnsfilter(config)
    reply = server.udp("deep.sub.banned.example.test", qtype, edns=True)
    assert reply.rcode() == rcode
    assert rdata_texts(reply, qtype) == answers
    assert all(rrset.ttl == 42 for rrset in reply.answer)
    assert bool(reply.authority) == has_soa
    if has_soa:
        assert reply.authority[0].ttl == 42
    ede = [o for o in reply.options if isinstance(o, dns.edns.EDEOption)]
    assert [(o.code, o.text) for o in ede] == [(dns.edns.EDECode.BLOCKED, "apps")]
    assert scripted_upstream.calls == [], "a blocked name must never reach the upstream"


def test_no_ede_without_edns_and_question_echoed(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    reply = server.udp("BaNNed.Example.TEST", "A")
    assert reply.edns == -1
    assert reply.question[0].name.to_text() == "BaNNed.Example.TEST."
    assert rdata_texts(reply) == ["0.0.0.0"]
    assert reply.flags & dns.flags.RA and reply.flags & dns.flags.RD


def test_entry_mode_overrides_policy_and_exceptions_resolve(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.add("ok.banned.example.test", "A", "192.0.2.77")
    scripted_upstream.add("notbanned.example.test", "A", "192.0.2.78")
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    # canary.example.test carries mode: nxdomain in the list, whatever the policy says.
    assert server.udp("canary.example.test").rcode() == dns.rcode.NXDOMAIN
    # An exception under a blocked entry resolves normally, through the upstream.
    assert rdata_texts(server.udp("ok.banned.example.test")) == ["192.0.2.77"]
    # A name that merely ends in the same letters is not below the entry.
    assert rdata_texts(server.udp("notbanned.example.test")) == ["192.0.2.78"]
    assert rdata_texts(server.udp("plain.example.test")) == ["0.0.0.0"]
    asked = {call.qname for call in scripted_upstream.calls}
    assert asked == {"ok.banned.example.test", "notbanned.example.test"}


def test_allowlist_wins_over_blocklists(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.add("keep.banned.example.test", "A", "192.0.2.79")
    config = base_config([scripted_upstream.address], allowlist=["keep.banned.example.test"])
    server = start_dnsfilter(config)
    assert rdata_texts(server.udp("keep.banned.example.test")) == ["192.0.2.79"]
    assert rdata_texts(server.udp("other.banned.example.test")) == ["0.0.0.0"]


def test_per_network_policies_and_refused_outside(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.add("banned.example.test", "A", "192.0.2.80")
    scripted_upstream.add("other.example.test", "A", "192.0.2.81")
    config = base_config(
        [scripted_upstream.address],
        networks={"ministry": ["127.0.0.2/32"], "agency": ["127.0.0.3/32", "::1/128"]},
        policies={
            "strict": {"networks": ["ministry"], "lists": ["apps", "other"], "mode": "nxdomain"},
            "light": {"networks": ["agency"], "lists": ["other"]},
        },
    )
    server = start_dnsfilter(config)
    ministry = server.udp("banned.example.test", source="127.0.0.2")
    agency = server.udp("banned.example.test", source="127.0.0.3")
    assert ministry.rcode() == dns.rcode.NXDOMAIN
    assert rdata_texts(agency) == ["192.0.2.80"]
    assert rdata_texts(server.udp("other.example.test", source="127.0.0.3")) == ["0.0.0.0"]
    # 127.0.0.1 is in no network: not an open resolver.
    outside = server.udp("www.example.test", source="127.0.0.1", edns=True)
    assert outside.rcode() == dns.rcode.REFUSED
    ede = [o.code for o in outside.options if isinstance(o, dns.edns.EDEOption)]
    assert ede == [dns.edns.EDECode.PROHIBITED]
    assert [c.qname for c in scripted_upstream.calls] == ["banned.example.test"]


def test_ipv6_listener(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.add("www.example.test", "AAAA", "2001:db8::10")
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    host, port = server.address(socket.AF_INET6)
    assert host == "::1"
    assert rdata_texts(
        server.udp("banned.example.test", "AAAA", host="::1", port=port), "AAAA"
    ) == ["::"]
    tcp = server.tcp("www.example.test", "AAAA", host="::1", port=port)
    assert rdata_texts(tcp, "AAAA") == ["2001:db8::10"]


def test_dig_sees_blocked_answer(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    out = subprocess.run(
        [
            "dig",
            "+time=2",
            "+tries=1",
            "@127.0.0.1",
            "-p",
            str(server.port),
            "x.banned.example.test",
            "A",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    assert "status: NOERROR" in out
    assert "EDE: 15 (Blocked): (apps)" in out
    assert "x.banned.example.test.\t60\tIN\tA\t0.0.0.0" in out
