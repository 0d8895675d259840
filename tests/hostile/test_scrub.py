"""What an upstream adds beyond the question's chain never reaches a client (issue 16,
item 6), and a chain that loops is refused (issue 17, item 3).

The hostile upstream is a real DNS server on loopback that answers every question truthfully
and adds a record about a name nobody asked for, in the answer and additional sections: the
classic poisoning attempt a resolver's scrubber exists for (unbound's iter_scrub.c). The loop
comes from a real nsd serving a zone whose CNAMEs point at each other.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.edns
import dns.message
import dns.rcode
import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import rdata_texts
from tests.nsd import NEGATIVE_TTL, NsdServer

pytestmark = pytest.mark.integration

FOREIGN = RR("victim.example.", QTYPE.A, rdata=A("203.0.113.66"), ttl=86400)


class PoisoningUpstream:
    """Answers each A question with 192.0.2.1, plus the foreign record in two sections."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                data, client = self.sock.recvfrom(4096)
            except OSError:
                return
            request = DNSRecord.parse(data)
            reply = request.reply()
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("192.0.2.1"), ttl=300))
            reply.add_answer(FOREIGN)
            reply.add_ar(FOREIGN)
            self.sock.sendto(reply.pack(), client)

    def __enter__(self) -> PoisoningUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        self.thread.join(5)


@pytest.mark.parametrize("minimal", [True, False], ids=["minimal", "full"])
def test_a_record_for_another_name_is_scrubbed(
    start_dnsfilter: StartDnsFilter, minimal: bool
) -> None:
    with PoisoningUpstream() as upstream:
        server = start_dnsfilter(
            base_config([upstream.address], server={"minimal_responses": minimal})
        )
        for _ in range(2):  # fresh, then from the cache
            reply = server.udp("www.example.test", edns=True)
            assert reply.rcode() == dns.rcode.NOERROR
            names = {rrset.name.to_text() for rrset in reply.answer + reply.additional}
            assert names == {"www.example.test."}, reply
            assert rdata_texts(reply) == ["192.0.2.1"]


LOOP_ZONE = f"""\
$ORIGIN loop.test.
$TTL 300
@     IN SOA ns1.loop.test. hostmaster.loop.test. 1 3600 900 604800 {NEGATIVE_TTL}
@     IN NS  ns1.loop.test.
ns1   IN A   192.0.2.1
a     IN CNAME b
b     IN CNAME a
self  IN CNAME self
fine  IN CNAME ns1
"""


@pytest.fixture(scope="module")
def loop_nsd() -> Iterator[NsdServer]:
    with NsdServer(zones={"loop.test": LOOP_ZONE}) as server:
        yield server


@pytest.mark.parametrize("name", ["a.loop.test", "self.loop.test"])
def test_a_cname_loop_is_servfail_with_its_reason(
    start_dnsfilter: StartDnsFilter, loop_nsd: NsdServer, name: str
) -> None:
    server = start_dnsfilter(base_config([loop_nsd.address]))
    for _ in range(2):  # and it was not cached as an answer either
        reply = server.udp(name, edns=True)
        assert reply.rcode() == dns.rcode.SERVFAIL, reply
        assert not reply.answer
        (ede,) = [opt for opt in reply.options if opt.otype == dns.edns.EDE]
        assert isinstance(ede, dns.edns.EDEOption)
        assert ede.code == dns.edns.EDECode.OTHER
        assert ede.text is not None and "loop" in ede.text
    chain = server.udp("fine.loop.test")
    assert rdata_texts(chain) == ["192.0.2.1"]
