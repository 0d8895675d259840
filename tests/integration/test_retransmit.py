"""Issue 17: a lost datagram costs a retry, not the query (RFC 1035 4.2.1 and 7.2).

Between dnsfilter and a real nsd sits a UDP relay on loopback that loses the first copy of
every question it relays, as a lossy WAN link would now and then. With one upstream
configured, every query must still be answered NOERROR, within the server's timeout, each
retry on a fresh source port under a fresh ID (RFC 5452).
"""

from __future__ import annotations

import selectors
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from types import TracebackType
from typing import Self

import dns.message
import dns.rcode
import pytest

from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import rdata_texts
from tests.nsd import NsdServer

pytestmark = pytest.mark.integration


class LossyRelay:
    """Relays UDP queries to target and their answers back; the first copy of each
    question (name, type) is lost. Counts what it saw per question, and the source ports and
    IDs of every copy."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.listener.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.copies: Counter[bytes] = Counter()
        self.sources: list[tuple[int, int]] = []  #: (source port, message ID) of each copy
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()

    def _run(self) -> None:
        self._selector.register(self.listener, selectors.EVENT_READ, None)
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data is None:
                    self._query(sock)
                else:
                    self._answer(sock, key.data)

    def _query(self, sock: socket.socket) -> None:
        data, client = sock.recvfrom(4096)
        question = dns.message.from_wire(data).question[0]
        key = (question.name.to_wire() or b"").lower() + question.rdtype.to_bytes(2, "big")
        self.copies[key] += 1
        self.sources.append((client[1], int.from_bytes(data[:2], "big")))
        if self.copies[key] == 1:
            return  # lost on the way
        upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        upstream.sendto(data, self.target)
        self._selector.register(upstream, selectors.EVENT_READ, client)

    def _answer(self, upstream: socket.socket, client: tuple[str, int]) -> None:
        data = upstream.recv(65535)
        self._selector.unregister(upstream)
        upstream.close()
        self.listener.sendto(data, client)


@pytest.fixture
def relay(nsd_upstream: NsdServer) -> Iterator[LossyRelay]:
    with LossyRelay((nsd_upstream.host, nsd_upstream.port)) as lossy:
        yield lossy


NAMES = ["www.example.test", "mail.example.test", "alias.example.test", "txt.example.test"]


def test_every_query_is_answered_although_every_first_copy_is_lost(
    start_dnsfilter: StartDnsFilter, relay: LossyRelay
) -> None:
    # One upstream, and its timeout is well above the first try's (0.4 s before any RTT).
    server = start_dnsfilter(base_config([relay.address], upstream={"timeout": 2.0}))
    answered = 0
    for name in NAMES:
        for qtype in ("A", "AAAA", "TXT"):
            reply = server.udp(name, qtype)
            assert reply.rcode() == dns.rcode.NOERROR, (name, qtype, reply)
            answered += 1
    assert answered == len(NAMES) * 3
    assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.10"]
    # Every question reached the relay exactly twice: lost once, answered the second time.
    assert set(relay.copies.values()) == {2}
    # Each copy from its own source port under its own ID.
    assert len({port for port, _ in relay.sources}) == len(relay.sources)
    assert len({msg_id for _, msg_id in relay.sources}) == len(relay.sources)
    upstream = relay.address
    assert server.metric("dnsfilter_upstream_retries_total", upstream=upstream) == len(relay.copies)
    rtt = server.metric("dnsfilter_upstream_rtt_seconds", upstream=upstream)
    assert rtt is not None and 0 < rtt < 0.4
    assert server.metric("dnsfilter_upstream_up", upstream=upstream) == 1


def test_tcp_clients_get_the_retried_answer_too(
    start_dnsfilter: StartDnsFilter, relay: LossyRelay
) -> None:
    server = start_dnsfilter(base_config([relay.address], upstream={"timeout": 2.0}))
    reply = server.tcp("www.example.test")
    assert rdata_texts(reply) == ["192.0.2.10"]
    assert set(relay.copies.values()) == {2}
