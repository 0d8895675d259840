"""Issue 13: an upstream that rejects EDNS, and SERVFAIL that says why (RFC 6891 7, 8914).

The EDNS-intolerant upstream is a real DNS server on loopback that answers FORMERR to any
query carrying an OPT record, as old middleboxes and servers do: a client must never be
told that its own valid query was malformed.
"""

from __future__ import annotations

import socket
import threading

import dns.edns
import dns.rcode
import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import rdata_texts

pytestmark = pytest.mark.integration


class EdnsIntolerant:
    """FORMERR (or NOTIMP) to a query with EDNS; an A record for any name without."""

    def __init__(self, rcode: int = RCODE.FORMERR) -> None:
        self.rcode = rcode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen: list[bool] = []  #: per query: did it carry EDNS
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                data, client = self.sock.recvfrom(4096)
            except OSError:
                return
            request = DNSRecord.parse(data)
            edns = any(rr.rtype == QTYPE.OPT for rr in request.ar)
            self.seen.append(edns)
            reply = request.reply()
            if edns:
                reply.header.rcode = self.rcode
            else:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("192.0.2.77"), ttl=300))
            self.sock.sendto(reply.pack(), client)

    def __enter__(self) -> EdnsIntolerant:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        self.thread.join(5)


@pytest.mark.parametrize("rcode", [RCODE.FORMERR, RCODE.NOTIMP], ids=["formerr", "notimp"])
def test_an_upstream_that_rejects_edns_is_asked_without_it(
    start_dnsfilter: StartDnsFilter, rcode: int
) -> None:
    with EdnsIntolerant(rcode) as upstream:
        server = start_dnsfilter(base_config([upstream.address]))
        first = server.udp("www.example.test", edns=True, want_dnssec=True)
        assert first.rcode() == dns.rcode.NOERROR, first
        assert rdata_texts(first) == ["192.0.2.77"]
        assert first.edns == 0  # the client asked with EDNS: it gets EDNS back from us
        # Remembered: the next miss goes to it without EDNS at once.
        assert rdata_texts(server.udp("mail.example.test")) == ["192.0.2.77"]
        assert upstream.seen == [True, False, False]


def test_silent_upstreams_give_servfail_with_ede_22(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.drop()
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    reply = server.udp("www.example.test", edns=True)
    assert reply.rcode() == dns.rcode.SERVFAIL
    codes = [option.code for option in reply.options if isinstance(option, dns.edns.EDEOption)]
    assert codes == [dns.edns.EDECode.NO_REACHABLE_AUTHORITY]
