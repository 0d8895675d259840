"""Issue 17: RD=0 (cache snooping) and signed queries, against the real server.

RD=0 asks a resolver what its cache holds, which tells one client which names the others
resolved: REFUSED by default, as unbound does without allow_snoop; with a policy's
``non_recursive: cache``, answered from the cache alone, as BIND does for allow-query-cache,
and never with a new upstream query. A query signed with TSIG (or SIG(0)) with a key this
resolver does not have gets NOTAUTH with an unsigned TSIG record saying BADKEY (RFC 8945 5.2),
never an unsigned answer as if the signature had been checked.
"""

from __future__ import annotations

import socket
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import pytest
from dnslib import DNSRecord

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import TIMEOUT, DnsFilter, rdata_texts

pytestmark = pytest.mark.integration


def ask(server: DnsFilter, name: str, recursion: bool) -> dns.message.Message:
    query = dns.message.make_query(name, "A", use_edns=0)
    if not recursion:
        query.flags &= ~dns.flags.RD
    return dns.query.udp(query, "127.0.0.1", port=server.port, timeout=TIMEOUT)


def ede_code(reply: dns.message.Message) -> int | None:
    for option in reply.options:
        if isinstance(option, dns.edns.EDEOption):
            return int(option.code)
    return None


def _config(upstream: ScriptedUpstream, non_recursive: str | None) -> dict[str, Any]:
    policy: dict[str, Any] = {"networks": ["loopback"], "lists": ["apps"]}
    if non_recursive is not None:
        policy["non_recursive"] = non_recursive
    return base_config([upstream.address], policies={"default": policy})


@pytest.fixture
def upstream(scripted_upstream: ScriptedUpstream) -> ScriptedUpstream:
    return scripted_upstream.add("www.example.test", "A", "192.0.2.10")


def test_rd0_is_refused_by_default_even_for_a_cached_name(
    start_dnsfilter: StartDnsFilter, upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(_config(upstream, None))
    assert rdata_texts(ask(server, "www.example.test", recursion=True)) == ["192.0.2.10"]
    for name in ("www.example.test", "other.example.test", "banned.example.test"):
        reply = ask(server, name, recursion=False)
        assert reply.rcode() == dns.rcode.REFUSED, reply
        assert ede_code(reply) == dns.edns.EDECode.PROHIBITED
        assert reply.flags & dns.flags.RA
    assert [call.qname for call in upstream.calls] == ["www.example.test"]


def test_rd0_from_the_cache_only_when_the_policy_allows_it(
    start_dnsfilter: StartDnsFilter, upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(_config(upstream, "cache"))
    before = ask(server, "www.example.test", recursion=False)
    assert before.rcode() == dns.rcode.REFUSED  # not cached yet, and never fetched for RD=0
    assert ede_code(before) == dns.edns.EDECode.PROHIBITED
    assert upstream.calls == []
    assert rdata_texts(ask(server, "www.example.test", recursion=True)) == ["192.0.2.10"]
    after = ask(server, "www.example.test", recursion=False)
    assert after.rcode() == dns.rcode.NOERROR
    assert rdata_texts(after) == ["192.0.2.10"]
    assert not after.flags & dns.flags.RD
    assert rdata_texts(ask(server, "banned.example.test", recursion=False)) == ["0.0.0.0"]
    assert len(upstream.calls) == 1


def test_a_policy_with_an_unknown_non_recursive_value_is_a_config_error(
    tmp_path: Any, upstream: ScriptedUpstream
) -> None:
    server = DnsFilter(tmp_path, _config(upstream, "snoop"), {})
    with pytest.raises(RuntimeError, match="non_recursive: must be one of refuse, cache"):
        server.start()


KEYRING = dns.tsigkeyring.from_text({"stranger.key.": "c2VjcmV0IHRoYXQgd2UgZG8gbm90IGhhdmU="})


def test_a_tsig_signed_query_gets_notauth_badkey_unsigned(
    start_dnsfilter: StartDnsFilter, upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(_config(upstream, None))
    query = dns.message.make_query("www.example.test", "A")
    query.use_tsig(KEYRING, keyname="stranger.key.")
    # dnspython checks the reply as a signed client does, and reads BADKEY from it.
    with pytest.raises(dns.tsig.PeerBadKey):
        dns.query.udp(query, "127.0.0.1", port=server.port, timeout=TIMEOUT)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(query.to_wire(), ("127.0.0.1", server.port))
        raw = sock.recv(4096)
    reply = DNSRecord.parse(raw)
    assert reply.header.rcode == dns.rcode.NOTAUTH
    assert [str(rr.rname) for rr in reply.ar] == ["stranger.key."]
    assert str(reply.q.qname) == "www.example.test."
    assert not reply.rr  # no answer: never as if the signature had been checked
    assert upstream.calls == []
    assert server.metric("dnsfilter_queries_total", result="notauth", protocol="udp") == 2
