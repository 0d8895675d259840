"""Forwarding to upstream resolvers: UDP with TCP on truncation, or DNS over TLS; failover.

Every try uses a fresh socket, so the kernel picks a fresh ephemeral source port, and a
fresh ID from the OS CSPRNG (`secrets`, read in batches). The UDP socket is connected, so
the kernel drops datagrams from any other address or port; a datagram from the right peer
is accepted only if its ID and question match and the whole message parses. Anything else
is ignored until the timeout, as a spoofed or stray reply must not end the wait for the
real one.

A DNS-over-TLS server (RFC 7858) is reached through its TlsPool instead: a few verified
connections kept open and shared, several queries in flight on each (RFC 7766), answers
matched by an ID unique on their connection and by the question.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import select
import socket
import ssl
import struct
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import NamedTuple, Protocol, cast

from dnsfilter.config import HostPort, UpstreamServer
from dnsfilter.datapath.wire import (
    HEADER_LEN,
    QType,
    Query,
    Rcode,
    ResponseScan,
    make_query,
    opt_record,
    padded_query,
    same_question,
    scan_response,
)
from dnsfilter.errors import (
    ConfigError,
    FormatError,
    SocketUnavailable,
    UpstreamError,
    UpstreamTimeout,
)
from dnsfilter.observe.metrics import UpstreamStats

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!HHHHHH")
_RD = 0x0100
_CD = 0x0010
_TC = 0x0200
_MAX_MESSAGE = 65535
#: Seconds between two log lines about sockets that could not be made (one per query would
#: flood the log just when the host is short of resources).
SHORTAGE_LOG_INTERVAL = 10.0
#: errnos that mean this process or host has no socket to spare: our shortage, not the server's
_SHORTAGES = {
    errno.EMFILE: "EMFILE",
    errno.ENFILE: "ENFILE",
    errno.ENOBUFS: "ENOBUFS",
    errno.ENOMEM: "ENOMEM",
}


def socket_error(server: object, exc: OSError, what: str = "") -> UpstreamError:
    """The UpstreamError for an OSError met reaching server: SocketUnavailable when it is
    a shortage of descriptors or buffers here."""
    reason = _SHORTAGES.get(exc.errno or 0)
    message = f"{server}: {what}{exc.strerror or exc}"
    if reason is not None:
        return SocketUnavailable(message, reason)
    return UpstreamError(message)


class _ShortageLog:
    """Logs the sockets that could not be made at most once per interval, with a count."""

    def __init__(
        self, interval: float = SHORTAGE_LOG_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.unlogged = 0  #: failures since the last line
        self._next = 0.0

    def __call__(self, exc: SocketUnavailable) -> bool:
        """Count exc; True when it was logged."""
        self.unlogged += 1
        now = self.clock()
        if now < self._next:
            return False
        log.warning(
            "no socket for upstream queries (%s): %d since the last report, answered stale "
            "or SERVFAIL; raise the descriptor limit (LimitNOFILE) or lower "
            "server.max_inflight",
            exc,
            self.unlogged,
        )
        self.unlogged = 0
        self._next = now + self.interval
        return True


shortage_log = _ShortageLog()


class UpstreamAnswer(NamedTuple):
    wire: bytes
    scan: ResponseScan
    server: str  #: the upstream's configured name, for logs and metrics


class Upstream(Protocol):
    """Anything that can answer a query: a group of servers, or a fake in unit tests."""

    async def forward(self, q: Query) -> UpstreamAnswer: ...


class _RandomIds:
    """Message IDs from the OS's CSPRNG (what `secrets` uses), read 4096 at a time: one
    getrandom() call per upstream query was about a microsecond of a forwarded query's CPU.
    A forked child starts on fresh bytes, or workers would send the same ID sequence."""

    _BATCH = 8192  #: bytes: 4096 IDs

    def __init__(self) -> None:
        self._ids: memoryview = memoryview(b"").cast("H")
        self._next = 0

    def __call__(self) -> int:
        position = self._next
        if position >= len(self._ids):
            self.refill()
            position = 0
        self._next = position + 1
        return int(self._ids[position])

    def refill(self) -> None:
        self._ids = memoryview(secrets.token_bytes(self._BATCH)).cast("H")
        self._next = 0


random_id = _RandomIds()
os.register_at_fork(after_in_child=random_id.refill)


def upstream_query(q: Query, msg_id: int, edns: bool = True) -> bytes:
    """The query we send upstream: our ID, RD set, the client's CD, question and DO bit.

    We speak EDNS upstream, whatever the client sent, so one cached answer can serve
    clients with and without EDNS (the OPT is rebuilt per client when serving); edns False
    for a server that rejects it (RFC 6891 7).
    """
    flags = _RD | (q.flags & _CD)
    if not edns:
        return _HEADER.pack(msg_id, flags, 1, 0, 0, 0) + q.wire[HEADER_LEN : q.question_end]
    return (
        _HEADER.pack(msg_id, flags, 1, 0, 0, 1)
        + q.wire[HEADER_LEN : q.question_end]
        + opt_record(q.do)
    )


def _check_answer(data: bytes, msg_id: int, question: bytes) -> ResponseScan | None:
    """The scan of data if it answers our query, else None (to be ignored)."""
    if len(data) < HEADER_LEN or int.from_bytes(data[:2], "big") != msg_id:
        return None
    try:
        scan = scan_response(data)
    except FormatError:
        return None
    if not same_question(data[HEADER_LEN : scan.question_end], question):
        return None
    return scan


class _ReadinessPoller:
    """One epoll for every upstream UDP socket in flight, registered with the loop once.

    A reader per short-lived socket costs the event loop a handle to create and tear down
    (uvloop: a libuv poll handle, about a quarter of a forwarded query's CPU); registering
    the socket with our own epoll is a single syscall, and the loop wakes us on its fd.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._epoll = select.epoll()
        self._handlers: dict[int, Callable[[], None]] = {}
        loop.add_reader(self._epoll.fileno(), self._ready)

    def watch(self, fd: int, handler: Callable[[], None]) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._handlers[fd] = handler

    def forget(self, fd: int) -> None:
        """Drop fd's handler; its socket must be closed next, which takes it out of the
        epoll set without an epoll_ctl call (the kernel does so when the file is released)."""
        del self._handlers[fd]

    def _ready(self) -> None:
        for fd, _events in self._epoll.poll(0):
            handler = self._handlers.get(fd)
            if handler is not None:
                handler()


_pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ReadinessPoller] = (
    weakref.WeakKeyDictionary()
)
#: the last loop asked for and its poller: one loop serves for the life of the process
_last_poller: tuple[asyncio.AbstractEventLoop | None, _ReadinessPoller | None] = (None, None)


def _poller(loop: asyncio.AbstractEventLoop) -> _ReadinessPoller:
    global _last_poller
    last_loop, poller = _last_poller
    if last_loop is loop and poller is not None:
        return poller
    poller = _pollers.get(loop)
    if poller is None:
        poller = _pollers[loop] = _ReadinessPoller(loop)
    _last_poller = (loop, poller)
    return poller


#: SOCK_NONBLOCK at creation (Linux) spares a setblocking() syscall on every try.
_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)

#: How a UDP try ends: (answer, its scan, None) or (None, None, the error).
UdpOutcome = Callable[[bytes | None, ResponseScan | None, UpstreamError | None], None]


class UdpTry:
    """One UDP query to one server on its own fresh socket, driven by callbacks.

    No task, coroutine or future: the forwarding fast path (a query's first try) runs on
    these alone; udp_exchange wraps one in a future for everything else. `done` is called
    exactly once, from the event loop, unless cancel() comes first.
    """

    __slots__ = ("_done", "_fd", "_msg_id", "_poller", "_question", "_sock", "_timer", "server")

    def __init__(
        self,
        server: HostPort,
        query: bytes,
        question: bytes,
        timeout: float,
        loop: asyncio.AbstractEventLoop,
        done: UdpOutcome,
    ) -> None:
        """Send query now; UpstreamError (and no callback) if it cannot be sent."""
        self.server = server
        self._question = question
        self._msg_id = int.from_bytes(query[:2], "big")
        self._done = done
        family = socket.AF_INET6 if server.family_v6 else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM | _NONBLOCK)
        except OSError as exc:
            raise socket_error(server, exc) from None
        try:
            if not _NONBLOCK:
                sock.setblocking(False)
            sock.connect((server.host, server.port))
            sock.send(query)
        except OSError as exc:
            sock.close()
            raise socket_error(server, exc) from None
        self._sock = sock
        self._fd = sock.fileno()
        self._poller = _poller(loop)
        self._poller.watch(self._fd, self._readable)
        self._timer = loop.call_later(timeout, self._expired, timeout)

    def _readable(self) -> None:
        while True:
            try:
                data = self._sock.recv(_MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError as exc:  # e.g. ICMP port unreachable
                self._end(None, None, UpstreamError(f"{self.server}: {exc.strerror or exc}"))
                return
            scan = _check_answer(data, self._msg_id, self._question)
            if scan is not None:
                self._end(data, scan, None)
                return
            if log.isEnabledFor(logging.DEBUG):
                log.debug("ignored a non-matching datagram from %s", self.server)

    def _expired(self, timeout: float) -> None:
        # The message is formatted only now: building it per try showed up in profiles.
        error = UpstreamTimeout(f"{self.server}: no answer over UDP in {timeout:g}s")
        self._end(None, None, error)

    def cancel(self) -> None:
        """Give up: close the socket; done is never called."""
        if self._sock.fileno() >= 0:
            self._close()

    def _close(self) -> None:
        self._timer.cancel()
        self._poller.forget(self._fd)
        self._sock.close()

    def _end(
        self, data: bytes | None, scan: ResponseScan | None, error: UpstreamError | None
    ) -> None:
        self._close()
        self._done(data, scan, error)


async def udp_exchange(
    server: HostPort, query: bytes, question: bytes, timeout: float
) -> tuple[bytes, ResponseScan]:
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[tuple[bytes, ResponseScan]] = loop.create_future()

    def done(data: bytes | None, scan: ResponseScan | None, error: UpstreamError | None) -> None:
        if waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            assert data is not None and scan is not None
            waiter.set_result((data, scan))

    exchange = UdpTry(server, query, question, timeout, loop, done)
    try:
        return await waiter
    finally:
        exchange.cancel()


async def tcp_exchange(
    server: HostPort, query: bytes, question: bytes, timeout: float
) -> tuple[bytes, ResponseScan]:
    msg_id = int.from_bytes(query[:2], "big")
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(len(query).to_bytes(2, "big") + query)
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(length)
                scan = _check_answer(data, msg_id, question)
                if scan is not None:
                    return data, scan
    except TimeoutError:
        raise UpstreamTimeout(f"{server}: no answer over TCP in {timeout:g}s") from None
    except OSError as exc:
        raise socket_error(server, exc, "TCP: ") from None
    except asyncio.IncompleteReadError as exc:
        raise UpstreamError(f"{server}: TCP: {exc}") from None
    finally:
        if writer is not None:
            writer.close()


# ---------------------------------------------------------------------------------------
# DNS over TLS (RFC 7858): connections kept open, queries pipelined (RFC 7766)

#: Connections kept open to one DoT server; a new one opens only when all are busy.
TLS_MAX_CONNECTIONS = 2
#: Queries in flight on one connection before another connection is worth opening.
TLS_PIPELINE = 32
#: Seconds an unused connection stays open (servers often close theirs after 10-30 s).
TLS_IDLE_TIMEOUT = 20.0
#: Queries left unanswered (timed out) on one connection before it is given up.
TLS_MAX_ABANDONED = 16


def frame(message: bytes) -> bytes:
    """A DNS message as sent over a stream: two length bytes first (RFC 1035 4.2.2)."""
    return len(message).to_bytes(2, "big") + message


class FrameDecoder:
    """Splits a byte stream into length-prefixed DNS messages; no I/O."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The messages completed by data (none, one or several), oldest first."""
        buffer = self._buffer
        buffer += data
        messages = []
        start = 0
        while len(buffer) - start >= 2:
            end = start + 2 + int.from_bytes(buffer[start : start + 2], "big")
            if end > len(buffer):
                break
            messages.append(bytes(buffer[start + 2 : end]))
            start = end
        if start:
            del buffer[:start]
        return messages

    @property
    def buffered(self) -> int:
        """Bytes of a message not yet complete."""
        return len(self._buffer)


class ConnectionClosed(Exception):
    """The connection closed before the query was answered."""


def tls_context(server: UpstreamServer) -> ssl.SSLContext:
    """Certificate and name checks as a browser does them; only ca_file's CAs when set."""
    try:
        context = ssl.create_default_context(cafile=server.ca_file)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            [f"{server.ca_file}: cannot load CA certificates for {server.name}: {reason}"]
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def check_ca_files(servers: Iterable[UpstreamServer]) -> None:
    """Load every DoT server's ca_file now: ConfigError naming each one that cannot be."""
    problems: list[str] = []
    for server in servers:
        if server.tls and server.ca_file:
            try:
                tls_context(server)
            except ConfigError as exc:
                problems.extend(exc.problems)
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))


_Waiter = asyncio.Future[tuple[bytes, ResponseScan]]


class TlsConnection(asyncio.Protocol):
    """One TLS connection to one server, with several queries in flight at once.

    Each query goes out under an ID that no other query in flight on this connection has;
    an answer is matched by that ID and must repeat the question. A query given up (its
    try timed out) keeps its ID reserved until its late answer arrives or the connection
    closes, so a late answer can never be taken for a newer query's.
    """

    def __init__(self, name: str, idle_timeout: float = TLS_IDLE_TIMEOUT) -> None:
        self.name = name
        self.idle_timeout = idle_timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False  #: set once closing starts: no new queries
        self.answered = 0  #: answers received on this connection
        self._decoder = FrameDecoder()
        self._pending: dict[int, tuple[bytes, _Waiter]] = {}
        self._abandoned: set[int] = set()
        self._idle: asyncio.TimerHandle | None = None
        self._lost = asyncio.Event()  #: set by connection_lost

    @property
    def load(self) -> int:
        """Queries in flight."""
        return len(self._pending)

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is not an asyncio.Transport subclass, but it is one.
        self.transport = cast(asyncio.Transport, transport)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        for message in self._decoder.feed(data):
            self._dispatch(message)

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._lost.set()
        self._cancel_idle()
        reason = f"{self.name}: TLS connection closed" + (f" ({exc})" if exc else "")
        pending, self._pending = self._pending, {}
        for _, waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(ConnectionClosed(reason))

    # -- queries

    def send(self, query: bytes, question: bytes) -> tuple[int, _Waiter]:
        """Write query under a fresh ID; the future gets the answer. Not on a closed one."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionClosed(f"{self.name}: TLS connection closed")
        msg_id = self.new_id()
        self.transport.write(frame(msg_id.to_bytes(2, "big") + query[2:]))
        waiter: _Waiter = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = (question, waiter)
        self._cancel_idle()
        return msg_id, waiter

    async def exchange(self, query: bytes, question: bytes) -> tuple[bytes, ResponseScan]:
        """Send query and wait for its answer; ConnectionClosed if the connection goes first.

        The caller bounds the wait (asyncio.timeout); a query given up is abandoned.
        """
        msg_id, waiter = self.send(query, question)
        try:
            return await waiter
        finally:
            # Cancelling the awaiting task cancels the waiter too: either way, no answer.
            if waiter.cancelled() or not waiter.done():
                waiter.cancel()
                self.abandon(msg_id)
            else:
                waiter.exception()  # retrieved, even when a cancel raced connection_lost

    def new_id(self) -> int:
        """A random ID no query in flight (or abandoned) on this connection has."""
        while True:
            msg_id = random_id()
            if msg_id not in self._pending and msg_id not in self._abandoned:
                return msg_id

    def abandon(self, msg_id: int) -> None:
        """Give up on a query: its answer, if it ever comes, is dropped."""
        if self._pending.pop(msg_id, None) is None:
            return
        self._abandoned.add(msg_id)
        if len(self._abandoned) > TLS_MAX_ABANDONED:
            log.debug("%s: %d queries unanswered, closing", self.name, len(self._abandoned))
            self.close()
        else:
            self._arm_idle()

    def close(self) -> None:
        """Start closing: TLS close_notify, then the socket (connection_lost when done)."""
        self.closed = True
        self._cancel_idle()
        if self.transport is not None:
            self.transport.close()

    async def aclose(self, timeout: float = 1.0) -> None:
        """close(), and wait until the socket is closed; abort it after timeout."""
        self.close()
        if self.transport is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._lost.wait()
        except TimeoutError:
            self.transport.abort()

    def _dispatch(self, message: bytes) -> None:
        if len(message) < HEADER_LEN:
            return
        msg_id = int.from_bytes(message[:2], "big")
        entry = self._pending.get(msg_id)
        if entry is None:
            # A late answer to an abandoned query, or one we never asked: drop it.
            self._abandoned.discard(msg_id)
            log.debug("%s: dropped an answer under an ID not in flight", self.name)
            return
        question, waiter = entry
        scan = _check_answer(message, msg_id, question)
        if scan is None:
            log.debug("%s: ignored a non-matching answer", self.name)
            return
        del self._pending[msg_id]
        self.answered += 1
        if not waiter.done():
            waiter.set_result((message, scan))
        self._arm_idle()

    def _arm_idle(self) -> None:
        if self._pending or self.closed or self._idle is not None:
            return
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self.idle_timeout, self._idle_expired)

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_expired(self) -> None:
        self._idle = None
        if not self._pending:
            self.close()


#: Opens a connection to the pool's server (the default: TCP + TLS handshake).
Connector = Callable[[], Awaitable[TlsConnection]]


class TlsPool:
    """The connections to one DoT server: reused, at most max_connections, reopened on demand.

    A query goes on the open connection with the fewest queries in flight; another
    connection opens only when every open one has `pipeline` queries in flight. While one
    connection is being opened, other queries wait for it rather than open their own.
    """

    def __init__(
        self,
        server: UpstreamServer,
        *,
        max_connections: int = TLS_MAX_CONNECTIONS,
        pipeline: int = TLS_PIPELINE,
        idle_timeout: float = TLS_IDLE_TIMEOUT,
        connector: Connector | None = None,
    ) -> None:
        self.server = server
        self.name = server.name
        self.max_connections = max_connections
        self.pipeline = pipeline
        self.idle_timeout = idle_timeout
        self.opened = 0  #: connections opened so far (a handshake completed)
        self._context = tls_context(server) if connector is None else None
        self._connector = connector if connector is not None else self._connect
        self._connections: list[TlsConnection] = []
        self._opening: asyncio.Task[TlsConnection] | None = None

    @property
    def connections(self) -> list[TlsConnection]:
        """The connections that are open and take queries."""
        live = [c for c in self._connections if not c.closed]
        self._connections = live
        return live

    async def exchange(
        self, query: bytes, question: bytes, timeout: float
    ) -> tuple[bytes, ResponseScan]:
        """One try: query (its ID is replaced) answered within timeout, else UpstreamError.

        A reused connection that the server closed before answering (an idle close racing
        our query, RFC 7766 6.2.3) costs a second attempt on a new one within the same timeout.
        """
        try:
            async with asyncio.timeout(timeout):
                for attempt in (1, 2):
                    connection, reused = await self._acquire(timeout)
                    try:
                        return await connection.exchange(query, question)
                    except ConnectionClosed as exc:
                        if not reused or attempt == 2:
                            raise UpstreamError(str(exc)) from None
                        log.debug("%s; retrying on a new connection", exc)
                raise AssertionError("unreachable")
        except TimeoutError:
            raise UpstreamTimeout(f"{self.name}: no answer over TLS in {timeout:g}s") from None
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamError(f"{self.name}: TLS: {exc.verify_message or exc}") from None
        except ssl.SSLError as exc:
            raise UpstreamError(f"{self.name}: TLS: {exc}") from None
        except OSError as exc:
            raise socket_error(self.name, exc, "TLS: ") from None

    async def close(self) -> None:
        """Close every connection (and stop one being opened)."""
        if self._opening is not None:
            self._opening.cancel()
        connections, self._connections = self._connections, []
        await asyncio.gather(*(c.aclose() for c in connections))

    def pick(self) -> TlsConnection | None:
        """The open connection to use, or None when a new one should be opened."""
        live = self.connections
        best = min(live, key=_load, default=None)
        if best is None:
            return None
        if best.load >= self.pipeline and len(live) < self.max_connections:
            return None
        return best

    async def _acquire(self, timeout: float) -> tuple[TlsConnection, bool]:
        """(connection, whether it was open before this query came)."""
        waited = False
        while True:
            connection = self.pick()
            if connection is not None:
                return connection, not waited
            opening = self._opening
            if opening is None:
                opening = self._opening = asyncio.get_running_loop().create_task(
                    self._open(timeout)
                )
                opening.add_done_callback(self._opened)
            # Shielded: a query that times out must not cancel the handshake others wait
            # for. Then pick again: the queries that waited share the connections fairly.
            await asyncio.shield(opening)
            waited = True

    async def _open(self, timeout: float) -> TlsConnection:
        async with asyncio.timeout(timeout):
            connection = await self._connector()
        self._connections.append(connection)
        self.opened += 1
        return connection

    def _opened(self, task: asyncio.Task[TlsConnection]) -> None:
        if self._opening is task:
            self._opening = None
        if not task.cancelled() and task.exception() is not None:
            # Retrieved here, so a failure nobody waits for any more is not logged as lost.
            log.debug("%s: TLS connection failed: %s", self.name, task.exception())

    async def _connect(self) -> TlsConnection:
        address = self.server.address
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: TlsConnection(self.name, self.idle_timeout),
            address.host,
            address.port,
            ssl=self._context,
            server_hostname=self.server.tls_name or address.host,
        )
        return connection


def _load(connection: TlsConnection) -> int:
    return connection.load


#: The first UDP try's timeout for a server whose round-trip time is not known yet
#: (unbound's infra cache starts at 376 ms), the floor of the retry timeout once it is known
#: (a recursive upstream's cold lookups take far longer than its cached answers), and its
#: growth per try.
INITIAL_RTO = 0.4
MIN_RTO = 0.2
RETRY_BACKOFF = 2.0
#: A UDP try shorter than this is not worth a socket.
_SHORTEST_TRY = 0.01


class UpstreamGroup:
    """Servers tried in order, skipping those that failed within the last dead_time seconds.

    Over UDP a server is asked again, on a fresh socket under a fresh ID, whenever its
    retry timeout passes without an answer, until its own timeout is spent; then the next
    server is asked. One lost datagram costs a retry, not the query."""

    def __init__(
        self,
        servers: Sequence[UpstreamServer],
        timeout: float,
        dead_time: float,
        clock: Callable[[], float] = time.monotonic,
        stats: UpstreamStats | None = None,
    ) -> None:
        if not servers:
            raise ValueError("an upstream group needs at least one server")
        self.servers = tuple(servers)
        self.timeout = timeout
        self.dead_time = dead_time
        self.stats = stats if stats is not None else UpstreamStats()
        self._clock = clock
        self._dead_until: dict[UpstreamServer, float] = {}
        #: (smoothed RTT, RTT variation) of each server's UDP answers, in seconds
        self._rtt: dict[UpstreamServer, tuple[float, float]] = {}
        #: servers that answered FORMERR or NOTIMP to EDNS: asked without it until then
        self._no_edns_until: dict[UpstreamServer, float] = {}
        #: the connection pool of each DNS-over-TLS server
        self.tls_pools = {s: TlsPool(s) for s in self.servers if s.tls}

    def __str__(self) -> str:
        return ", ".join(server.name for server in self.servers)

    def retry_timeout(self, server: UpstreamServer) -> float:
        """How long a UDP try to server waits before the next one: the RFC 6298
        retransmission timeout of its answers so far (INITIAL_RTO before the first)."""
        estimate = self._rtt.get(server)
        if estimate is None:
            return INITIAL_RTO
        srtt, rttvar = estimate
        return max(MIN_RTO, srtt + 4 * rttvar)

    def _rtt_sample(self, server: UpstreamServer, seconds: float) -> None:
        estimate = self._rtt.get(server)
        if estimate is None:
            srtt, rttvar = seconds, seconds / 2
        else:
            srtt, rttvar = estimate
            rttvar = 0.75 * rttvar + 0.25 * abs(srtt - seconds)
            srtt = 0.875 * srtt + 0.125 * seconds
        self._rtt[server] = (srtt, rttvar)
        self.stats.rtt[server.name] = srtt

    def speaks_edns(self, server: UpstreamServer) -> bool:
        """False for a while after server rejected a query for its OPT record."""
        until = self._no_edns_until.get(server)
        if until is None:
            return True
        if until <= self._clock():
            del self._no_edns_until[server]
            return True
        return False

    def _edns_rejected(self, server: UpstreamServer, scan: ResponseScan, edns: bool) -> bool:
        """Whether scan answers an EDNS query with FORMERR or NOTIMP: then the server is
        asked without EDNS for EDNS_FALLBACK_TIME (unbound remembers it in its infra cache),
        and a client is never told that its own valid query was malformed."""
        if not edns or scan.rcode not in _EDNS_REJECTIONS:
            return False
        if server not in self._no_edns_until:
            log.info("%s rejects EDNS (%s): asking it without EDNS", server.name, scan.rcode)
        self._no_edns_until[server] = self._clock() + EDNS_FALLBACK_TIME
        return True

    def _retried(self, server: UpstreamServer) -> None:
        self.stats.retries[server.name] += 1

    def is_up(self, server: UpstreamServer) -> bool:
        return self._dead_until.get(server, 0.0) <= self._clock()

    def _order(self) -> list[UpstreamServer]:
        if not self._dead_until:
            return list(self.servers)
        now = self._clock()
        alive = [s for s in self.servers if self._dead_until.get(s, 0.0) <= now]
        # Dead servers are still tried last: better a slow answer than none at all.
        return alive + [s for s in self.servers if s not in alive]

    def start(
        self, q: Query, done: Callable[[UpstreamAnswer | None, FirstTry | None], None]
    ) -> bool:
        """Make q's first try without a task: plain UDP to the first server, by callbacks.

        done(answer, None) when it settles the query; done(None, first) when it does not
        (no answer, truncated, SERVFAIL or REFUSED), and then forward(q, first) goes on
        exactly where a forward(q) would have. False, and no call, when the first server
        speaks TLS: forward() does it all then.
        """
        server = self.servers[0] if not self._dead_until else self._order()[0]
        if server.tls:
            return False
        started = time.perf_counter()
        budget = server.timeout or self.timeout
        timeout = min(self.retry_timeout(server), budget)

        def finished(
            data: bytes | None, scan: ResponseScan | None, error: UpstreamError | None
        ) -> None:
            if error is not None:
                if timeout < budget and isinstance(error, UpstreamTimeout):
                    # Lost, or slow: forward() tries the same server again within its budget.
                    done(None, FirstTry(server, started, str(error), retry=True))
                    return
                self._failed(server, error, started)
                timed_out = isinstance(error, UpstreamTimeout)
                first = FirstTry(server, started, str(error), timed_out=timed_out, error=error)
                done(None, first)
                return
            assert data is not None and scan is not None
            self._rtt_sample(server, time.perf_counter() - started)
            if self._edns_rejected(server, scan, edns):
                done(None, FirstTry(server, started, "", retry=True))  # again, without EDNS
                return
            if scan.flags & _TC:
                done(None, FirstTry(server, started, ""))
                return
            self._answered(server, scan, started)
            if scan.rcode in _UNHELPFUL:
                done(None, FirstTry(server, started, _unhelpful(server, scan.rcode)))
                return
            done(UpstreamAnswer(data, scan, server.name), None)

        edns = self.speaks_edns(server)
        query = upstream_query(q, random_id(), edns)
        question = q.wire[HEADER_LEN : q.question_end]
        loop = asyncio.get_running_loop()
        try:
            UdpTry(server.address, query, question, timeout, loop, finished)
        except UpstreamError as exc:
            finished(None, None, exc)
        return True

    async def forward(self, q: Query, first: FirstTry | None = None) -> UpstreamAnswer:
        """Ask the servers in turn until one answers; first: how start() began it."""
        question = q.wire[HEADER_LEN : q.question_end]

        def query(edns: bool) -> bytes:
            return upstream_query(q, random_id(), edns)

        failures: list[str] = []
        timeouts = 0
        servers = self._order()
        truncated_at = None  #: the start of a try whose UDP answer was truncated
        resumed: FirstTry | None = None  #: a first UDP try that timed out, to go on from
        if first is not None:
            if isinstance(first.error, SocketUnavailable):
                raise first.error  # no socket for the others either
            servers.remove(first.server)
            if first.retry:
                servers.insert(0, first.server)
                resumed = first
            elif first.failure:
                failures.append(first.failure)
            else:
                servers.insert(0, first.server)
                truncated_at = first.started
        for server in servers:
            try:
                data, scan = await self._try(server, query, question, truncated_at, resumed)
            except SocketUnavailable:
                raise  # no socket for the others either: stale or SERVFAIL now
            except UpstreamError as exc:
                failures.append(str(exc))
                timeouts += isinstance(exc, UpstreamTimeout)
                continue
            finally:
                truncated_at = resumed = None
            if scan.rcode in _UNHELPFUL:
                # The server is alive but could not help; another one may.
                failures.append(_unhelpful(server, scan.rcode))
                continue
            return UpstreamAnswer(data, scan, server.name)
        # Every server silent (EDE 22 for the client) or some refusing or unreachable (23).
        if first is not None and first.timed_out:
            timeouts += 1
        if timeouts == len(failures):
            raise UpstreamTimeout("; ".join(failures))
        raise UpstreamError("; ".join(failures))

    async def close(self) -> None:
        """Close the connections kept open to DNS-over-TLS servers."""
        await asyncio.gather(*(pool.close() for pool in self.tls_pools.values()))

    async def probe(self) -> None:
        """Ask every server for the root NS records: any answer means it is up."""
        question = make_query("", QType.NS)[HEADER_LEN:]

        def query(edns: bool) -> bytes:
            return make_query("", QType.NS, random_id())

        for server in self.servers:
            with contextlib.suppress(UpstreamError):
                await self._try(server, query, question)

    async def _try(
        self,
        server: UpstreamServer,
        query: Callable[[bool], bytes],
        question: bytes,
        truncated_at: float | None = None,
        resumed: FirstTry | None = None,
    ) -> tuple[bytes, ResponseScan]:
        """One exchange with one server (UDP, then TCP if truncated), counted and timed.

        Each call of query(edns) makes a fresh message with a fresh random ID. truncated_at:
        the UDP part already happened at that time (start()) and was truncated. resumed:
        start()'s first UDP try, which timed out (or was rejected for its EDNS); the tries
        go on within its budget. A FORMERR or NOTIMP to EDNS is asked again without it.
        """
        timeout = server.timeout or self.timeout
        started = time.perf_counter() if truncated_at is None else truncated_at
        if resumed is not None:
            started = resumed.started
        tries = 0 if resumed is None else 1
        try:
            for _ in range(2):  # with EDNS, and once more without if the server rejects it
                edns = self.speaks_edns(server)

                def message(edns: bool = edns) -> bytes:
                    return query(edns)

                if server.tls:
                    # Padded (RFC 8467): the encrypted length must not give the name away.
                    query_wire = padded_query(message())
                    exchange = self.tls_pools[server].exchange(query_wire, question, timeout)
                    data, scan = await exchange
                elif truncated_at is not None:
                    data, scan = await tcp_exchange(server.address, message(), question, timeout)
                else:
                    data, scan = await self._udp(server, message, question, started, tries)
                    if scan.flags & _TC:
                        data, scan = await tcp_exchange(
                            server.address, message(), question, timeout
                        )
                if not self._edns_rejected(server, scan, edns):
                    break
        except UpstreamError as exc:
            self._failed(server, exc, started)
            raise
        self._answered(server, scan, started)
        return data, scan

    async def _udp(
        self,
        server: UpstreamServer,
        query: Callable[[], bytes],
        question: bytes,
        started: float,
        tries: int,
    ) -> tuple[bytes, ResponseScan]:
        """UDP tries to server until one is answered or its timeout since started is spent
        (RFC 1035 4.2.1: retransmit). A new try goes out each time the server's retry
        timeout, doubled for every try before it, passes unanswered, on a fresh socket under
        a fresh ID (RFC 5452); the earlier ones stay open, so a slow answer still counts.
        tries: made already (start()'s, which is closed)."""
        budget = server.timeout or self.timeout
        deadline = started + budget
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[tuple[bytes, ResponseScan]] = loop.create_future()
        pending: list[UdpTry] = []

        def outcome(sent: float) -> UdpOutcome:
            def done(
                data: bytes | None, scan: ResponseScan | None, error: UpstreamError | None
            ) -> None:
                if answered.done() or isinstance(error, UpstreamTimeout):
                    return  # a try that ran out of time: the deadline decides
                if error is not None:
                    answered.set_exception(error)
                    return
                assert data is not None and scan is not None
                self._rtt_sample(server, time.perf_counter() - sent)
                answered.set_result((data, scan))

            return done

        try:
            while True:
                sent = time.perf_counter()
                left = deadline - sent
                if left < _SHORTEST_TRY:
                    raise UpstreamTimeout(
                        f"{server.address}: no answer over UDP in {budget:g}s ({tries} tries)"
                    )
                if tries:
                    self._retried(server)
                pending.append(UdpTry(server.address, query(), question, left, loop, outcome(sent)))
                wait = min(self.retry_timeout(server) * RETRY_BACKOFF**tries, left)
                tries += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        return await asyncio.shield(answered)
        finally:
            for exchange in pending:
                exchange.cancel()
            if answered.done() and not answered.cancelled():
                answered.exception()  # retrieved: an error after the deadline is moot

    def _failed(self, server: UpstreamServer, exc: UpstreamError, started: float) -> None:
        if isinstance(exc, SocketUnavailable):
            # Nothing was sent: the server is not to blame, nor is it timed.
            self.stats.socket_errors[exc.reason] += 1
            shortage_log(exc)
            return
        self._dead_until[server] = self._clock() + self.dead_time
        outcome = "timeout" if isinstance(exc, UpstreamTimeout) else "error"
        self.stats.observe(server.name, outcome, time.perf_counter() - started, False)
        log.debug("upstream failed: %s", exc)

    def _answered(self, server: UpstreamServer, scan: ResponseScan, started: float) -> None:
        if self._dead_until:
            self._dead_until.pop(server, None)
        elapsed = time.perf_counter() - started
        self.stats.observe(server.name, _rcode_name(scan.rcode), elapsed, True)


class FirstTry(NamedTuple):
    """A first try made by UpstreamGroup.start() that did not settle its query."""

    server: UpstreamServer
    started: float  #: perf_counter() when it began
    failure: str  #: why it failed; "" when the answer was truncated (TCP comes next)
    retry: bool = False  #: it timed out before the server's timeout: retry that server
    timed_out: bool = False  #: it failed for the server's whole timeout, unanswered
    error: UpstreamError | None = None  #: the failure itself; None when truncated


def _unhelpful(server: UpstreamServer, rcode: int) -> str:
    return f"{server.name}: {_rcode_name(rcode)}"


#: rcodes with which a server rejects an EDNS query it does not understand (RFC 6891 7)
_EDNS_REJECTIONS = frozenset((int(Rcode.FORMERR), int(Rcode.NOTIMP)))
#: how long a server that rejected EDNS is asked without it (unbound: infra-host-ttl, 900 s)
EDNS_FALLBACK_TIME = 900.0

#: rcodes after which another server is tried, as plain ints (IntEnum compares cost more)
_UNHELPFUL = frozenset((int(Rcode.SERVFAIL), int(Rcode.REFUSED)))
#: the rcode label of every known rcode: Rcode(n).name costs a microsecond per answer
_RCODE_NAMES = {int(rcode): rcode.name for rcode in Rcode}


def _rcode_name(rcode: int) -> str:
    return _RCODE_NAMES.get(rcode, "OTHER")
