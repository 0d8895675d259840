"""DNS over TLS without sockets: the stream framing, one connection's pipelining, the pool.

A TlsConnection is an asyncio.Protocol, so these tests drive it with a fake transport and a
scripted peer that reads the framed queries and writes framed answers back (in any order,
or never, or by closing). The pool gets a connector that makes such connections. The real
thing, against unbound with a real certificate, is tests/integration/test_dot.py.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import pytest

from dnsfilter.config import HostPort, UpstreamServer
from dnsfilter.datapath.upstream import (
    ConnectionClosed,
    FrameDecoder,
    TlsConnection,
    TlsPool,
    frame,
    tls_context,
)
from dnsfilter.datapath.wire import HEADER_LEN, make_query
from dnsfilter.errors import ConfigError, UpstreamError, UpstreamTimeout

SERVER = UpstreamServer(HostPort("192.0.2.53", 853), tls=True, tls_name="dns.example")


def question(qname: str) -> bytes:
    return make_query(qname, 1)[HEADER_LEN:]


def query(qname: str) -> bytes:
    return make_query(qname, 1, msg_id=0x0101)


def answer_to(message: bytes, qname: str | None = None) -> bytes:
    """A NOERROR answer (no records) with the message's ID and its question (or qname's)."""
    body = message[HEADER_LEN:] if qname is None else question(qname)
    return message[:2] + struct.pack("!HHHHH", 0x8180, 1, 0, 0, 0) + body


class Peer(asyncio.Transport):
    """The transport under one TlsConnection, and the server behind it."""

    def __init__(self, protocol: TlsConnection, mode: str = "answer") -> None:
        super().__init__()
        self.protocol = protocol
        self.mode = mode  #: answer | hold | close
        self.received: list[bytes] = []  #: every query, unframed, in order
        self.held: list[bytes] = []
        self.closing = False
        self._decoder = FrameDecoder()
        protocol.connection_made(self)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        for message in self._decoder.feed(bytes(data)):
            self.received.append(message)
            if self.mode == "answer":
                self.reply(message)
            elif self.mode == "hold":
                self.held.append(message)
            else:
                self.close()

    def reply(self, message: bytes, qname: str | None = None) -> None:
        wire = frame(answer_to(message, qname))
        asyncio.get_running_loop().call_soon(self.protocol.data_received, wire)

    def release(self, order: list[int] | None = None) -> None:
        held, self.held = self.held, []
        for index in order if order is not None else range(len(held)):
            self.reply(held[index])

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


class Connector:
    """Makes connections whose peers behave as mode says; optionally slow to connect."""

    def __init__(self, mode: str = "answer", delay: float = 0.0) -> None:
        self.mode = mode
        self.delay = delay
        self.peers: list[Peer] = []
        self.failure: Exception | None = None

    async def __call__(self) -> TlsConnection:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failure is not None:
            raise self.failure
        connection = TlsConnection(SERVER.name, idle_timeout=60)
        self.peers.append(Peer(connection, self.mode))
        return connection


def pool(connector: Connector, **options: Any) -> TlsPool:
    return TlsPool(SERVER, connector=connector, **options)


# ---------------------------------------------------------------------------------------
# Framing

STREAM_MESSAGES = [b"\x12\x34" + bytes(10), b"x" * 300, b""]
STREAM = b"".join(frame(m) for m in STREAM_MESSAGES)


CHUNKINGS = [
    pytest.param([STREAM], id="all-at-once"),
    pytest.param([bytes([b]) for b in STREAM], id="byte-by-byte"),
    pytest.param([STREAM[:1], STREAM[1:13], STREAM[13:]], id="split-length-prefix"),
    pytest.param([STREAM[:-1], STREAM[-1:]], id="last-byte-late"),
]


@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_frame_decoder(chunks: list[bytes]) -> None:
    decoder = FrameDecoder()
    messages = [m for chunk in chunks for m in decoder.feed(chunk)]
    assert messages == STREAM_MESSAGES
    assert decoder.buffered == 0


def test_frame_decoder_keeps_a_partial_message() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(frame(b"abc") + b"\x00\x05ab") == [b"abc"]
    assert decoder.buffered == 4
    assert decoder.feed(b"cde") == [b"abcde"]


def test_frame() -> None:
    assert frame(b"\x01\x02\x03") == b"\x00\x03\x01\x02\x03"
    assert frame(bytes(0x1234))[:2] == b"\x12\x34"


# ---------------------------------------------------------------------------------------
# One connection


@pytest.mark.asyncio
async def test_pipelined_queries_answered_out_of_order(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([0xA001, 0xA002, 0xA003])
    monkeypatch.setattr("dnsfilter.datapath.upstream.random_id", lambda: next(draws))
    connection = TlsConnection("t")
    peer = Peer(connection, "hold")
    names = ["a.test", "b.test", "c.test"]
    tasks = [asyncio.create_task(connection.exchange(query(n), question(n))) for n in names]
    await asyncio.sleep(0)
    assert len(peer.held) == 3 and connection.load == 3, "all three in flight at once"
    # The caller's ID (0x0101, the same on all three) is replaced by one drawn per query.
    assert [m[:2] for m in peer.received] == [b"\xa0\x01", b"\xa0\x02", b"\xa0\x03"]
    assert [m[2:] for m in peer.received] == [query(n)[2:] for n in names]
    peer.release([2, 0, 1])
    results = await asyncio.wait_for(asyncio.gather(*tasks), 1)
    for name, sent, (wire, scan) in zip(names, peer.received, results, strict=True):
        assert wire[:2] == sent[:2], "each answer went to the query with its ID"
        assert wire[HEADER_LEN : scan.question_end] == question(name)
    assert (connection.load, connection.answered) == (0, 3)


@pytest.mark.asyncio
async def test_ids_are_redrawn_on_collision(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([7, 7, 7, 9])
    monkeypatch.setattr("dnsfilter.datapath.upstream.random_id", lambda: next(draws))
    connection = TlsConnection("t")
    peer = Peer(connection, "hold")
    first = asyncio.create_task(connection.exchange(query("a.test"), question("a.test")))
    second = asyncio.create_task(connection.exchange(query("b.test"), question("b.test")))
    await asyncio.sleep(0)
    assert [m[:2] for m in peer.received] == [b"\x00\x07", b"\x00\x09"]
    peer.release()
    await asyncio.wait_for(asyncio.gather(first, second), 1)


@pytest.mark.asyncio
async def test_answer_with_wrong_question_is_ignored() -> None:
    connection = TlsConnection("t")
    peer = Peer(connection, "hold")
    task = asyncio.create_task(connection.exchange(query("a.test"), question("a.test")))
    await asyncio.sleep(0)
    peer.reply(peer.held[0], qname="evil.test")
    await asyncio.sleep(0.01)
    assert not task.done()
    peer.release()
    wire, _ = await asyncio.wait_for(task, 1)
    assert wire.endswith(question("a.test"))


@pytest.mark.asyncio
async def test_abandoned_query_keeps_its_id_until_its_late_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draws = iter([5, 5, 6, 5])
    monkeypatch.setattr("dnsfilter.datapath.upstream.random_id", lambda: next(draws))
    connection = TlsConnection("t")
    peer = Peer(connection, "hold")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await connection.exchange(query("a.test"), question("a.test"))
    late = peer.held.pop()
    # ID 5 is still reserved: the next query draws 5, then gets 6.
    task = asyncio.create_task(connection.exchange(query("a.test"), question("a.test")))
    await asyncio.sleep(0)
    assert peer.held[0][:2] == b"\x00\x06"
    peer.reply(late)  # the late answer (same question!) must not answer the new query
    await asyncio.sleep(0.01)
    assert not task.done()
    peer.release()
    await asyncio.wait_for(task, 1)
    # Its late answer freed ID 5 again.
    next_task = asyncio.create_task(connection.exchange(query("b.test"), question("b.test")))
    await asyncio.sleep(0)
    assert peer.held[0][:2] == b"\x00\x05"
    peer.release()
    await asyncio.wait_for(next_task, 1)


@pytest.mark.asyncio
async def test_connection_lost_fails_every_query_in_flight() -> None:
    connection = TlsConnection("t")
    peer = Peer(connection, "hold")
    tasks = [asyncio.create_task(connection.exchange(query(n), question(n))) for n in ("a", "b")]
    await asyncio.sleep(0)
    peer.close()
    for task in tasks:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(task, 1)
    assert connection.closed
    with pytest.raises(ConnectionClosed):
        connection.send(query("c"), question("c"))


class LoopClock:
    """The running loop's time, moved only by advance(): call_later timers fire exactly
    when the test says the time has come, however slow the machine (the idle timer is a
    loop.call_later, so the loop is the clock to replace)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.now = loop.time()

    def __enter__(self) -> LoopClock:
        self.loop.time = lambda: self.now  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.loop.time  # the class's time() again

    async def advance(self, seconds: float) -> None:
        """Move the time on, then let the loop run what is due (callbacks scheduled by
        callbacks too): a few turns, none of which waits on the real clock."""
        self.now += seconds
        for _ in range(5):
            await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_idle_connection_closes_itself() -> None:
    with LoopClock(asyncio.get_running_loop()) as clock:
        connection = TlsConnection("t", idle_timeout=20)
        peer = Peer(connection, "answer")
        await connection.exchange(query("a"), question("a"))
        await clock.advance(10)
        await connection.exchange(query("a"), question("a"))  # in use again: the timer restarts
        await clock.advance(19.9)  # 29.9 s after the first use, 19.9 s after the second
        assert not peer.closing
        await clock.advance(0.2)
        assert peer.closing and connection.closed


@pytest.mark.asyncio
async def test_too_many_unanswered_queries_close_the_connection() -> None:
    connection = TlsConnection("t")
    peer = Peer(connection, "hold")
    for _ in range(17):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.001):
                await connection.exchange(query("a"), question("a"))
    assert peer.closing and connection.closed


# ---------------------------------------------------------------------------------------
# The pool


@pytest.mark.asyncio
async def test_sequential_queries_reuse_one_connection() -> None:
    connector = Connector()
    p = pool(connector)
    for _ in range(10):
        await p.exchange(query("a.test"), question("a.test"), 1.0)
    assert p.opened == 1
    assert len(connector.peers[0].received) == 10


@pytest.mark.asyncio
async def test_concurrent_queries_share_one_handshake_and_pipeline() -> None:
    connector = Connector(delay=0.02)
    p = pool(connector)
    names = [f"n{i}.test" for i in range(10)]
    results = await asyncio.gather(*(p.exchange(query(n), question(n), 1.0) for n in names))
    assert p.opened == 1 and len(connector.peers) == 1
    for name, (wire, _) in zip(names, results, strict=True):
        assert wire.endswith(question(name))


@pytest.mark.asyncio
async def test_second_connection_only_when_the_first_is_full() -> None:
    connector = Connector("hold")
    p = pool(connector, pipeline=2, max_connections=2)
    tasks = [
        asyncio.create_task(p.exchange(query(f"n{i}"), question(f"n{i}"), 1.0)) for i in range(5)
    ]
    for _ in range(100):
        await asyncio.sleep(0)
        if sum(len(peer.held) for peer in connector.peers) == 5:
            break
    assert p.opened == 2, "never more than max_connections"
    assert sorted(len(peer.held) for peer in connector.peers) == [2, 3]
    for peer in connector.peers:
        peer.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert p.pick() is not None


@pytest.mark.asyncio
async def test_closed_connection_is_replaced() -> None:
    connector = Connector()
    p = pool(connector)
    await p.exchange(query("a"), question("a"), 1.0)
    connector.peers[0].close()
    await asyncio.sleep(0)
    await p.exchange(query("a"), question("a"), 1.0)
    assert p.opened == 2
    assert len(p.connections) == 1


@pytest.mark.asyncio
async def test_reused_connection_closed_before_answering_is_retried_once() -> None:
    connector = Connector()
    p = pool(connector)
    await p.exchange(query("a"), question("a"), 1.0)
    connector.peers[0].mode = "close"  # the server's idle close races our next query
    wire, _ = await p.exchange(query("b"), question("b"), 1.0)
    assert wire.endswith(question("b"))
    assert p.opened == 2


@pytest.mark.asyncio
async def test_new_connection_closed_before_answering_is_an_error() -> None:
    connector = Connector("close")
    p = pool(connector)
    with pytest.raises(UpstreamError, match="TLS connection closed") as info:
        await p.exchange(query("a"), question("a"), 1.0)
    assert not isinstance(info.value, UpstreamTimeout)
    assert p.opened == 1


@pytest.mark.asyncio
async def test_unanswered_query_times_out() -> None:
    connector = Connector("hold")
    p = pool(connector)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(UpstreamTimeout, match=r"tls://192.0.2.53:853: no answer over TLS"):
        await p.exchange(query("a"), question("a"), 0.05)
    assert loop.time() - started < 0.5
    assert p.connections[0].load == 0, "the query was abandoned"


@pytest.mark.asyncio
async def test_slow_handshake_counts_against_the_try() -> None:
    p = pool(Connector(delay=1.0))
    with pytest.raises(UpstreamTimeout):
        await p.exchange(query("a"), question("a"), 0.05)
    await p.close()


@pytest.mark.asyncio
async def test_connect_failure_is_an_upstream_error() -> None:
    connector = Connector()
    connector.failure = ConnectionRefusedError(111, "Connection refused")
    p = pool(connector)
    with pytest.raises(UpstreamError, match=r"tls://192\.0\.2\.53:853: TLS: Connection refused"):
        await p.exchange(query("a"), question("a"), 1.0)
    connector.failure = None
    await p.exchange(query("a"), question("a"), 1.0)  # the next try connects again
    assert p.opened == 1


@pytest.mark.asyncio
async def test_close_closes_every_connection() -> None:
    connector = Connector()
    p = pool(connector)
    await p.exchange(query("a"), question("a"), 1.0)
    await p.close()
    await asyncio.sleep(0)
    assert all(peer.closing for peer in connector.peers)
    assert p.connections == []


def test_tls_context_checks_names_and_certificates() -> None:
    context = tls_context(SERVER)
    assert context.check_hostname
    assert context.verify_mode.name == "CERT_REQUIRED"


def test_tls_context_unreadable_ca_file(tmp_path: Path) -> None:
    missing = UpstreamServer(
        HostPort("192.0.2.53", 853), tls=True, ca_file=str(tmp_path / "none.pem")
    )
    with pytest.raises(ConfigError) as info:
        tls_context(missing)
    assert info.value.problems == [
        f"{tmp_path / 'none.pem'}: cannot load CA certificates for tls://192.0.2.53:853: "
        "No such file or directory"
    ]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"garbage\.pem: cannot load CA certificates"):
        tls_context(UpstreamServer(HostPort("192.0.2.53", 853), tls=True, ca_file=str(garbage)))
