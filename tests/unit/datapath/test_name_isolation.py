"""One client's question never changes another client's answer for a different name.

The property behind the cache-key confusion of issue 16: names are compared in wire form
(ASCII case aside), so a label that holds a dot, a backslash or any other byte can neither
share a cache entry nor a policy decision with a name that merely prints like it.
"""

from __future__ import annotations

import asyncio
import hashlib

import dns.message
import dns.name
from dnslib import QTYPE, RCODE, RR, SOA, A, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfilter.config import parse_config
from dnsfilter.datapath.cache import AnswerCache
from dnsfilter.datapath.policy import Verdict, build_policy
from dnsfilter.datapath.resolver import Reply, Resolver, ZoneRouter
from dnsfilter.datapath.upstream import UpstreamAnswer
from dnsfilter.datapath.wire import Query, Transport, parse_query, scan_response
from dnsfilter.lists.model import BlockList, Category, DomainEntry

APPS = BlockList(
    name="apps",
    source="apps.yaml",
    category=Category.SOCIAL,
    domains=(DomainEntry("tok.example", 1),),
)
CONFIG = """
lists: {apps: {file: apps.yaml}}
networks: {everyone: [10.0.0.0/8]}
policies: {strict: {networks: [everyone], lists: [apps]}}
"""
ATTACKER, VICTIM = "10.0.0.66", "10.0.0.7"


class Authority:
    """An upstream whose answer depends on the exact wire name (case aside): NXDOMAIN for
    names whose first label is not alphanumeric, else an address derived from the name."""

    async def forward(self, q: Query) -> UpstreamAnswer:
        request = DNSRecord.parse(q.wire)
        reply = request.reply()
        qname = request.q.qname
        labels = [bytes(label).lower() for label in qname.label]
        if labels and not labels[0].isalnum():
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(RR("example", QTYPE.SOA, rdata=SOA("ns.example", "h.example"), ttl=60))
        else:
            digest = hashlib.sha256(b"\x00".join(labels)).digest()
            reply.add_answer(RR(qname, QTYPE.A, rdata=A(".".join(map(str, digest[:4]))), ttl=300))
        wire = bytes(reply.pack())
        return UpstreamAnswer(wire, scan_response(wire), "authority")


def _resolver() -> Resolver:
    config = parse_config(CONFIG, "isolation.yaml", None)
    return Resolver(
        build_policy(config, [APPS]), ZoneRouter(Authority(), {}), AnswerCache(100), lambda: 50.0
    )


async def _ask(resolver: Resolver, labels: tuple[bytes, ...], client: str) -> bytes:
    message = dns.message.make_query(dns.name.Name((*labels, b"")), "A", use_edns=False)
    message.id = 4321
    q = parse_query(message.to_wire(), (client, 5353), Transport.UDP)
    result = resolver.answer_now(q)
    if isinstance(result, Verdict):
        result = await resolver.resolve(q, result)
    assert isinstance(result, Reply)
    return result.wire


#: Few symbols, so that labels which print alike (a dot inside a label, an escape) are common.
_FEW = bytes(b"a.A\\\x00 t\n"[b % 8] for b in range(256))
_LABEL = st.binary(min_size=1, max_size=5).map(lambda raw: raw.translate(_FEW))
_NAME = st.lists(_LABEL, min_size=1, max_size=4).map(tuple)
_SUFFIX = st.sampled_from([(), (b"tok", b"example"), (b"TOK", b"Example")])


def _resplit(labels: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """The same bytes cut at every dot: another wire name that joins to the same text."""
    return tuple(part for part in b".".join(labels).split(b".") if part)


@given(attacker=_NAME, victim=_NAME, suffix=_SUFFIX, resplit=st.booleans())
@settings(max_examples=300, deadline=None)
def test_a_query_never_changes_another_clients_answer(
    attacker: tuple[bytes, ...],
    victim: tuple[bytes, ...],
    suffix: tuple[bytes, ...],
    resplit: bool,
) -> None:
    if resplit:
        victim = _resplit(attacker) or victim
    attacker, victim = attacker + suffix, victim + suffix
    if tuple(map(bytes.lower, attacker)) == tuple(map(bytes.lower, victim)):
        return  # the same name: sharing its answer is the point of a cache

    async def scenario() -> None:
        alone = await _ask(_resolver(), victim, VICTIM)
        resolver = _resolver()
        await _ask(resolver, attacker, ATTACKER)
        assert await _ask(resolver, victim, VICTIM) == alone
        assert await _ask(resolver, victim, VICTIM) == alone  # from the cache now

    asyncio.run(scenario())
