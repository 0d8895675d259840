"""The detector: packet facts in, bypass events out, for every kind and every exemption."""

from __future__ import annotations

import ipaddress

import pytest

from dnsfilter.config import RESERVED_NETWORK
from dnsfilter.datapath.policy import NetworkMap
from dnsfilter.egress.decode import PROTO_TCP, PROTO_UDP, Facts
from dnsfilter.egress.detect import Detector, Event, EventKind
from dnsfilter.egress.plan import EgressPlan, ListNetworks
from dnsfilter.lists.model import BlockList, Category, DomainEntry, NetworkEntry

APPS = BlockList(
    "apps",
    "apps.yaml",
    category=Category.MESSAGING,
    domains=(DomainEntry("banned.example.test", 1),),
    exceptions=(DomainEntry("ok.banned.example.test", 2),),
    networks=(
        NetworkEntry(ipaddress.ip_network("203.0.113.0/24"), 3),
        NetworkEntry(ipaddress.ip_network("2001:db8:bad::/48"), 4),
    ),
)
DOH = BlockList(
    "doh",
    "doh.yaml",
    category=Category.BYPASS,
    domains=(DomainEntry("doh.example.test", 1), DomainEntry("dns.example.test", 2)),
    networks=(NetworkEntry(ipaddress.ip_network("192.0.2.128/25"), 3),),
)
APPROVED = "198.51.100.53"
APPROVED_V6 = "2001:db8::53"
OTHER = "198.51.100.99"
OFFICE = "10.1.0.5"


def detector(flow_timeout: float = 60.0, max_flows: int = 1000) -> Detector:
    plan = EgressPlan(
        approved=(ipaddress.ip_address(APPROVED), ipaddress.ip_address(APPROVED_V6)),
        upstreams=(),
        lists=(APPS, DOH),
        banned=(ListNetworks("apps", tuple(n.prefix for n in APPS.networks)),),
        doh=(ListNetworks("doh", tuple(n.prefix for n in DOH.networks)),),
        drop_doh=False,
        allowlist=("allowed.banned.example.test",),
    )
    clients = NetworkMap(
        [
            ("office", [ipaddress.ip_network("10.1.0.0/16")]),
            ("lab", [ipaddress.ip_network("fd00::/8")]),
        ]
    )
    return Detector(plan, clients, flow_timeout=flow_timeout, max_flows=max_flows)


def udp(dst: str, dport: int, src: str = OFFICE, sport: int = 40000) -> Facts:
    return Facts(src, dst, PROTO_UDP, sport, dport)


def tcp(dst: str, dport: int, src: str = OFFICE, sport: int = 50000, sni: str = "") -> Facts:
    return Facts(src, dst, PROTO_TCP, sport, dport, sni=sni)


def query(name: str, dst: str = OTHER, src: str = OFFICE, proto: int = PROTO_UDP) -> Facts:
    return Facts(src, dst, proto, 40000, 53, dns_query=True, qname=name)


E = EventKind


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        # plain DNS to another resolver: the name, and the list it is on, if any
        pytest.param(
            query("www.example.org"),
            [Event(E.DNS_OTHER_RESOLVER, "office", "", OFFICE, f"{OTHER}:53", "www.example.org")],
            id="dns-unlisted",
        ),
        pytest.param(
            query("a.banned.example.test"),
            [
                Event(
                    E.DNS_OTHER_RESOLVER,
                    "office",
                    "apps",
                    OFFICE,
                    f"{OTHER}:53",
                    "a.banned.example.test",
                )
            ],
            id="dns-listed",
        ),
        pytest.param(
            query("x.ok.banned.example.test"),
            [
                Event(
                    E.DNS_OTHER_RESOLVER,
                    "office",
                    "",
                    OFFICE,
                    f"{OTHER}:53",
                    "x.ok.banned.example.test",
                )
            ],
            id="dns-list-exception",
        ),
        pytest.param(
            query("allowed.banned.example.test"),
            [
                Event(
                    E.DNS_OTHER_RESOLVER,
                    "office",
                    "",
                    OFFICE,
                    f"{OTHER}:53",
                    "allowed.banned.example.test",
                )
            ],
            id="dns-allowlisted",
        ),
        pytest.param(
            query("", proto=PROTO_TCP),
            [Event(E.DNS_OTHER_RESOLVER, "office", "", OFFICE, f"{OTHER}:53", "")],
            id="dns-tcp-unreadable-name",
        ),
        pytest.param(
            query("dns.example.test", src="fd00::7", dst="2001:db8::99"),
            [
                Event(
                    E.DNS_OTHER_RESOLVER,
                    "lab",
                    "doh",
                    "fd00::7",
                    "[2001:db8::99]:53",
                    "dns.example.test",
                )
            ],
            id="dns-ipv6",
        ),
        pytest.param(
            query("www.example.org", src="172.16.0.9"),
            [
                Event(
                    E.DNS_OTHER_RESOLVER,
                    RESERVED_NETWORK,
                    "",
                    "172.16.0.9",
                    f"{OTHER}:53",
                    "www.example.org",
                )
            ],
            id="dns-client-in-no-network",
        ),
        pytest.param(query("banned.example.test", dst=APPROVED), [], id="dns-approved"),
        pytest.param(query("banned.example.test", dst=APPROVED_V6), [], id="dns-approved-v6"),
        pytest.param(
            query("banned.example.test", src=APPROVED), [], id="dns-forwarded-by-approved"
        ),
        pytest.param(udp(OTHER, 53), [], id="port-53-not-a-query"),
        pytest.param(tcp(OTHER, 53), [], id="dns-tcp-syn"),
        # DoT and DoQ
        pytest.param(
            tcp(OTHER, 853),
            [Event(E.DOT_OTHER_RESOLVER, "office", "", OFFICE, f"{OTHER}:853")],
            id="dot",
        ),
        pytest.param(
            udp(OTHER, 853),
            [Event(E.DOT_OTHER_RESOLVER, "office", "", OFFICE, f"{OTHER}:853")],
            id="doq",
        ),
        pytest.param(tcp(APPROVED, 853), [], id="dot-approved"),
        pytest.param(tcp(OTHER, 8853), [], id="other-port"),
        # TLS server names
        pytest.param(
            tcp("198.51.100.80", 443, sni="cdn.banned.example.test"),
            [
                Event(
                    E.SNI_BLOCKED,
                    "office",
                    "apps",
                    OFFICE,
                    "198.51.100.80:443",
                    "cdn.banned.example.test",
                )
            ],
            id="sni-blocked",
        ),
        pytest.param(
            tcp("198.51.100.80", 443, sni="doh.example.test"),
            [
                Event(
                    E.SNI_DOH_RESOLVER,
                    "office",
                    "doh",
                    OFFICE,
                    "198.51.100.80:443",
                    "doh.example.test",
                )
            ],
            id="sni-doh",
        ),
        pytest.param(tcp("198.51.100.80", 443, sni="www.example.org"), [], id="sni-unlisted"),
        pytest.param(
            tcp("198.51.100.80", 443, sni="allowed.banned.example.test"), [], id="sni-allowlisted"
        ),
        pytest.param(
            tcp(OTHER, 853, sni="dns.example.test"),
            [
                Event(E.DOT_OTHER_RESOLVER, "office", "", OFFICE, f"{OTHER}:853"),
                Event(
                    E.SNI_DOH_RESOLVER,
                    "office",
                    "doh",
                    OFFICE,
                    f"{OTHER}:853",
                    "dns.example.test",
                ),
            ],
            id="dot-hello-names-a-doh-resolver",
        ),
        # flows into banned prefixes
        pytest.param(
            tcp("203.0.113.10", 443),
            [Event(E.FLOW_BANNED_PREFIX, "office", "apps", OFFICE, "203.0.113.10:443")],
            id="flow-tcp",
        ),
        pytest.param(
            udp("203.0.113.10", 443),
            [Event(E.FLOW_BANNED_PREFIX, "office", "apps", OFFICE, "203.0.113.10:443")],
            id="flow-quic",
        ),
        pytest.param(
            tcp("2001:db8:bad::1", 443, src="fd00::7"),
            [Event(E.FLOW_BANNED_PREFIX, "lab", "apps", "fd00::7", "[2001:db8:bad::1]:443")],
            id="flow-ipv6",
        ),
        pytest.param(
            tcp("192.0.2.200", 443),
            [Event(E.FLOW_BANNED_PREFIX, "office", "doh", OFFICE, "192.0.2.200:443")],
            id="flow-doh-entry-point",
        ),
        pytest.param(tcp("192.0.2.100", 443), [], id="flow-just-outside"),
        pytest.param(
            query("www.example.org", dst="203.0.113.53"),
            [
                Event(E.FLOW_BANNED_PREFIX, "office", "apps", OFFICE, "203.0.113.53:53"),
                Event(
                    E.DNS_OTHER_RESOLVER,
                    "office",
                    "",
                    OFFICE,
                    "203.0.113.53:53",
                    "www.example.org",
                ),
            ],
            id="dns-to-a-banned-address",
        ),
        pytest.param(tcp(OFFICE, 50000, src="203.0.113.10", sport=443), [], id="reply-from-banned"),
    ],
)
def test_classify(facts: Facts, expected: list[Event]) -> None:
    assert detector().classify(facts, 0.0) == expected


@pytest.mark.parametrize(
    "facts",
    [
        pytest.param(tcp("203.0.113.10", 443), id="banned-flow"),
        pytest.param(tcp(OTHER, 853), id="dot"),
        pytest.param(tcp("198.51.100.80", 443, sni="banned.example.test"), id="sni"),
    ],
)
def test_flows_count_once_until_idle_for_the_timeout(facts: Facts) -> None:
    d = detector(flow_timeout=60.0)
    counts = [len(d.classify(facts, now)) for now in (0.0, 1.0, 59.0, 118.9, 179.0, 170.0)]
    # 0: new; 1, 59, 118.9: within 60 s of the previous packet; 179: idle 60.1 s, new;
    # 170: out of order (earlier than the last), the same flow.
    assert counts == [1, 0, 0, 0, 1, 0]
    other_port = facts._replace(sport=facts.sport + 1)
    assert len(d.classify(other_port, 170.0)) == 1


def test_dns_counts_every_query() -> None:
    d = detector()
    assert [len(d.classify(query("a.example"), t)) for t in (0.0, 0.1, 0.2)] == [1, 1, 1]


def test_flow_table_is_bounded() -> None:
    d = detector(max_flows=10)
    first = tcp("203.0.113.10", 443, sport=1)
    assert len(d.classify(first, 0.0)) == 1
    for port in range(2, 30):
        d.classify(tcp("203.0.113.10", 443, sport=port), 0.0)
    # The first flow was forgotten to make room, so it counts as new again.
    assert len(d.classify(first, 1.0)) == 1
