"""Queries to a DNS-over-TLS upstream are padded (RFC 8467), over UDP they are not."""

from __future__ import annotations

import asyncio

import dns.edns
import dns.message
import dns.name
import pytest

from dnsfilter.config import HostPort, UpstreamServer
from dnsfilter.datapath.upstream import UpstreamGroup
from dnsfilter.datapath.wire import Transport, make_query, parse_query, scan_response

TLS = UpstreamServer(HostPort("192.0.2.53", 853), tls=True, tls_name="dns.example")


class RecordingPool:
    """Stands for the TLS pool: keeps each query and answers NOERROR with its question."""

    def __init__(self) -> None:
        self.queries: list[bytes] = []

    async def exchange(self, query: bytes, question: bytes, timeout: float) -> tuple[bytes, object]:
        self.queries.append(query)
        answer = query[:2] + b"\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00" + question
        return answer, scan_response(answer)


@pytest.mark.parametrize("qname", ["a.test", "a-much-longer-name.of.some.example.org"])
def test_tls_queries_are_padded_to_128(qname: str) -> None:
    group = UpstreamGroup([TLS], timeout=1.0, dead_time=30)
    pool = RecordingPool()
    group.tls_pools[TLS] = pool  # type: ignore[assignment]
    q = parse_query(make_query(qname, 1), ("127.0.0.1", 5353), Transport.UDP)
    asyncio.run(group.forward(q))
    (sent,) = pool.queries
    assert len(sent) == 128
    message = dns.message.from_wire(sent)
    assert message.question[0].name == dns.name.from_text(qname)
    assert [option.otype for option in message.options] == [dns.edns.OptionType.PADDING]
