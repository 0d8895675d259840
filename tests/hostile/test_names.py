"""A label that holds a dot (or a backslash, a NUL, a newline) is a label like any other.

Played against real `dnsfilter serve` forwarding to a real nsd that serves both ``test`` and
``victim.test``: on the wire ``www\\.victim.test`` (two labels, the first one "www.victim") and
``www.victim.test`` (three labels) are different names in different zones, and one client's
question about the first must never decide another client's answer for the second.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import pytest

from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import TIMEOUT, DnsFilter, rdata_texts
from tests.nsd import NEGATIVE_TTL, NsdServer

pytestmark = pytest.mark.integration

TEST_ZONE = f"""\
$ORIGIN test.
$TTL 300
@    IN SOA ns1.test. hostmaster.test. 1 3600 900 604800 {NEGATIVE_TTL}
@    IN NS  ns1.test.
ns1  IN A   192.0.2.1
"""
VICTIM_ZONE = f"""\
$ORIGIN victim.test.
$TTL 300
@    IN SOA ns1.victim.test. hostmaster.victim.test. 1 3600 900 604800 {NEGATIVE_TTL}
@    IN NS  ns1.victim.test.
ns1  IN A   192.0.2.1
www  IN A   192.0.2.80
"""
ATTACKER, VICTIM = "127.0.0.2", "127.0.0.3"


@pytest.fixture(scope="module")
def nsd() -> Iterator[NsdServer]:
    with NsdServer(zones={"test": TEST_ZONE, "victim.test": VICTIM_ZONE}) as server:
        yield server


def ask(server: DnsFilter, name: str, source: str, qtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(dns.name.from_text(name), qtype, use_edns=0)
    return dns.query.udp(query, "127.0.0.1", port=server.port, timeout=TIMEOUT, source=source)


@pytest.mark.parametrize("attacker_first", [True, False], ids=["poison-first", "victim-first"])
def test_a_dotted_label_never_shares_a_cache_entry(
    start_dnsfilter: StartDnsFilter, nsd: NsdServer, attacker_first: bool
) -> None:
    server = start_dnsfilter(base_config([nsd.address]))
    if not attacker_first:
        assert rdata_texts(ask(server, "www.victim.test", VICTIM)) == ["192.0.2.80"]
    poison = ask(server, r"www\.victim.test", ATTACKER)
    assert poison.rcode() == dns.rcode.NXDOMAIN, poison
    # The question is echoed as it was asked: one label "www.victim" under test.
    assert poison.question[0].name.labels == (b"www.victim", b"test", b"")
    for _ in range(2):  # the second time from the cache
        victim = ask(server, "www.victim.test", VICTIM)
        assert victim.rcode() == dns.rcode.NOERROR, victim
        assert rdata_texts(victim) == ["192.0.2.80"]
        again = ask(server, r"www\.victim.test", ATTACKER)
        assert again.rcode() == dns.rcode.NXDOMAIN, again


def test_policy_matches_label_by_label(start_dnsfilter: StartDnsFilter, nsd: NsdServer) -> None:
    """banned.example.test is listed: a name below it is blocked whatever its first label
    holds, and a label that merely spells "banned.example" is not below it."""
    server = start_dnsfilter(base_config([nsd.address]))
    below = ask(server, r"evil\.label.banned.example.test", ATTACKER)
    assert rdata_texts(below) == ["0.0.0.0"], below
    # Labels: "x", "banned.example", "test": a name in the test zone, not in the list.
    lookalike = ask(server, r"x.banned\.example.test", ATTACKER)
    assert lookalike.rcode() == dns.rcode.NXDOMAIN, lookalike
    assert not lookalike.answer
    one_label = ask(server, r"banned\.example\.test", ATTACKER)
    assert rdata_texts(one_label) != ["0.0.0.0"], one_label


def test_names_become_escaped_text_in_the_audit_log(
    start_dnsfilter: StartDnsFilter, nsd: NsdServer
) -> None:
    """A newline, a NUL or a backslash in a label never reaches a log line raw."""
    server = start_dnsfilter(base_config([nsd.address]))
    name = dns.name.Name([b"a\nb\x00c\\d", b"banned", b"example", b"test", b""])
    query = dns.message.make_query(name, "A", use_edns=0)
    reply = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=TIMEOUT, source=ATTACKER)
    assert rdata_texts(reply) == ["0.0.0.0"]
    assert reply.flags & dns.flags.QR
    code = server.stop()
    assert code == 0, server.log
    with sqlite3.connect(server.tmp_path / "audit.sqlite3") as db:
        rows = db.execute("SELECT qname FROM events").fetchall()
    assert rows == [(r"a\010b\000c\\d.banned.example.test",)]
    assert "\x00" not in server.log
