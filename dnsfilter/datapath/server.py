"""The listeners: asyncio UDP and TCP on every configured address.

A datagram is parsed and answered inside `datagram_received` whenever the answer needs no
network (blocked, refused, cached, malformed). A UDP cache miss starts its first upstream
try by callbacks (QueryHandler.forward) and becomes a task only if that try does not settle
it; a TCP miss is a task. The number of misses in flight is capped: past the cap a query is
dropped, as a full queue should drop rather than grow. Per-client limits
(dnsfilter.datapath.ratelimit) are checked right after parsing: a client's query rate, and its share
of the queries in flight.

A TCP client holds a connection slot (dnsfilter.operate.budget.ConnectionSlots: per IPv4 address or
IPv6 /64, and in all, the global cap being the descriptor budget's TCP share), and a bounded
amount of unread replies: past server.max_tcp_queued_bytes its queries stop being read until
it takes its replies, and it is closed if it does not within the idle timeout. None of this
depends on rate-limit exemption: that is about query rates, not about memory or descriptors.

On close the listeners first stop accepting (new datagrams and TCP messages are ignored),
then the queries in flight get up to server.shutdown_timeout to be answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from bisect import bisect_left
from collections.abc import Callable, Coroutine, Sequence
from time import monotonic, time
from typing import Any, cast

from dnsfilter.config import RESERVED_NETWORK as NO_NETWORK
from dnsfilter.config import HostPort, RateLimitConfig, ServerConfig
from dnsfilter.datapath import fastpath
from dnsfilter.datapath.policy import Verdict
from dnsfilter.datapath.ratelimit import ClientLimits
from dnsfilter.datapath.resolver import Reply, ReplyKind, Resolver, bug_reply
from dnsfilter.datapath.upstream import FirstTry
from dnsfilter.datapath.wire import (
    OPT_TCP_KEEPALIVE,
    EdeCode,
    Query,
    Rcode,
    Transport,
    add_option,
    badvers_reply,
    build_reply,
    ede_option,
    error_reply,
    notauth_reply,
    parse_query,
    query_has_option,
    tcp_keepalive_option,
)
from dnsfilter.errors import BadVersion, DropPacket, NotImplementedOpcode, Unverifiable, WireError
from dnsfilter.observe.metrics import DURATION_BUCKETS, OTHER_QTYPE, QTYPE_LABELS, QueryStats
from dnsfilter.observe.querylog import AuditEvent, AuditSink
from dnsfilter.operate.budget import Budget, ClientKey, ConnectionSlots

log = logging.getLogger(__name__)

_UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
_TCP_BACKLOG = 128
_TCP_PIPELINE = 32  #: queries one TCP connection may have in flight at once
_RATELIMITED = ede_option(EdeCode.OTHER, "rate limited")
_BLOCKED: str = ReplyKind.BLOCKED._value_
_new_tuple = tuple.__new__


class ListenError(Exception):
    """A listener could not be bound; the message says which and why."""


class QueryHandler:
    """Turns a message into a reply now, a pending resolution, or nothing; counts each."""

    def __init__(
        self,
        resolver: Resolver,
        config: ServerConfig,
        stats: QueryStats | None = None,
        audit: AuditSink | None = None,
        ratelimit: RateLimitConfig | None = None,
        max_inflight: int | None = None,
    ) -> None:
        """max_inflight: the descriptor budget's cap, when below server.max_inflight."""
        self.resolver = resolver
        self.stats = stats if stats is not None else QueryStats()
        self.audit = audit
        self.udp_limit = config.udp_payload_size
        self.max_inflight = min(config.max_inflight, max_inflight or config.max_inflight)
        self.inflight: set[asyncio.Task[None]] = set()
        self.untasked = 0  #: queries resolving by callbacks, without a task (forward())
        #: per-client limits; None when ratelimit.enabled is false
        self.limits: ClientLimits | None = None
        self.rate_limited = False  #: limits is set and its rate is not 0 (unlimited)
        self.refuse_limited = False  #: ratelimit.action refused: answer REFUSED, not nothing
        if ratelimit is not None and ratelimit.enabled:
            self.limits = ClientLimits(
                ratelimit.rate,
                ratelimit.burst,
                ratelimit.max_inflight,
                ratelimit.max_clients,
                ratelimit.exempt_networks,
            )
            self.rate_limited = ratelimit.rate > 0
            self.refuse_limited = ratelimit.action == "refused"
        self.draining = False  #: shutting down: new queries are ignored
        self.closed = False  #: shut down: queries still resolving are abandoned

    def handle(
        self, data: bytes, client: tuple[str, int], transport: Transport
    ) -> bytes | tuple[Query, Verdict, float] | None:
        """bytes to send now, (query, verdict, start time) to resolve, or None to drop."""
        # One clock for durations, rate limits and the blocked-clients gauge: monotonic()
        # is as fine-grained as perf_counter() on Linux, and one call per query is enough.
        started = monotonic()
        if self.draining:
            return None
        try:
            q = parse_query(data, client, transport, self.udp_limit)
        except DropPacket:
            self._count_bad(client, transport, ReplyKind.DROPPED, started)
            return None
        except NotImplementedOpcode:
            self._count_bad(client, transport, ReplyKind.NOTIMP, started)
            return error_reply(data, Rcode.NOTIMP)
        except BadVersion as exc:
            self._count_bad(client, transport, ReplyKind.FORMERR, started)
            return badvers_reply(data, exc.question_end)
        except Unverifiable as exc:
            try:
                reply = notauth_reply(data, exc.question_end, exc.tsig_start)
            except WireError:  # a TSIG record too broken to echo: no better than FORMERR
                self._count_bad(client, transport, ReplyKind.FORMERR, started)
                return error_reply(data, Rcode.FORMERR)
            self._count_bad(client, transport, ReplyKind.NOTAUTH, started)
            return reply
        except WireError:
            self._count_bad(client, transport, ReplyKind.FORMERR, started)
            return error_reply(data, Rcode.FORMERR)
        # Per-client limits first: a client over its rate costs no policy or cache work.
        limits = self.limits
        key = None
        if limits is not None:
            key = limits.key(client[0])  # None: an exempt network
            if key is not None and self.rate_limited and not limits.allow(key, started):
                return self._over_rate(q, started)
        result = self.resolver.answer_now(q)
        if type(result) is Reply:
            self._count(q, result, started)
            return result.wire
        assert isinstance(result, Verdict)
        # The in-flight caps: server-wide, and this client's share of it. Past either a UDP
        # query is dropped (the client retries); TCP gets SERVFAIL, as silence would hold
        # its connection open.
        if len(self.inflight) + self.untasked >= self.max_inflight:
            kind = ReplyKind.DROPPED
        elif key is not None and limits is not None and limits.over_inflight(key):
            kind = ReplyKind.RATELIMITED
        else:
            return q, result, started
        self._count_bad(client, transport, kind, started, q.qtype)
        if transport is Transport.TCP:
            return build_reply(q, Rcode.SERVFAIL)
        return None

    def _over_rate(self, q: Query, started: float) -> bytes | None:
        """A query over its client's rate: counted, then REFUSED or dropped (None)."""
        self._count_bad(q.client, q.transport, ReplyKind.RATELIMITED, started, q.qtype)
        if self.refuse_limited:
            return build_reply(q, Rcode.REFUSED, ede=_RATELIMITED if q.edns else b"")
        return None

    def over_rate_datagram(self, data: bytes, host: str, started: float) -> bytes | None:
        """_over_rate for a UDP query the compiled datapath parsed and found over the rate
        (its token taken there): it is one parse_query accepts."""
        return self._over_rate(parse_query(data, (host, 0), Transport.UDP, self.udp_limit), started)

    async def resolve(
        self, q: Query, verdict: Verdict, started: float, first: FirstTry | None = None
    ) -> bytes:
        try:
            reply = await self.resolver.resolve(q, verdict, first)
        except Exception:
            reply = bug_reply(q, verdict)
        self._count(q, reply, started)
        return reply.wire

    def forward(
        self, q: Query, verdict: Verdict, started: float, send: Callable[[bytes], None]
    ) -> None:
        """Resolve q and send() the reply: by callbacks while Resolver.start can (a first
        UDP try settles most queries), as a task from where it could not."""
        limits = self.limits
        key = None if limits is None else limits.key(q.client[0])
        if key is not None:
            assert limits is not None
            limits.begin(key)
        self.untasked += 1

        def settled() -> None:
            self.untasked -= 1
            if key is not None:
                assert limits is not None
                limits.end(key)

        def on_reply(reply: Reply) -> None:
            settled()
            self._count(q, reply, started)
            send(reply.wire)

        def on_fallback(first: FirstTry | None) -> None:
            settled()
            if self.closed:  # abandoned by DnsServer.close(): nothing may start now
                return
            self.spawn(q, self._send_later(q, verdict, started, send, first))

        try:
            self.resolver.start(q, verdict, on_reply, on_fallback)
        except Exception:
            on_reply(bug_reply(q, verdict))

    async def _send_later(
        self,
        q: Query,
        verdict: Verdict,
        started: float,
        send: Callable[[bytes], None],
        first: FirstTry | None,
    ) -> None:
        send(await self.resolve(q, verdict, started, first))

    def _count(self, q: Query, reply: Reply, started: float) -> None:
        stats = self.stats
        # _value_ is a plain attribute; .value goes through a descriptor at 0.3 µs a time.
        kind: str = reply.kind._value_
        verdict = reply.verdict
        rule = verdict.rule
        network = NO_NETWORK if rule is None else rule.network
        stats.queries[
            (network, q.transport._value_, QTYPE_LABELS.get(q.qtype, OTHER_QTYPE), kind)
        ] += 1
        if kind == _BLOCKED:
            list_name = verdict.list_name
            stats.blocked[(network, list_name, verdict.category._value_)] += 1
            stats.blocked_client(network, list_name, q.client[0], started)
            if self.audit is not None:
                self._audit(q, reply, kind, network)
        elif self.audit is not None and self.audit.log_allowed:
            self._audit(q, reply, kind, network)
        # Histogram.observe inlined, its histogram made once per kind: this runs per query.
        histogram = stats.durations.get(kind) or stats.duration(kind)
        elapsed = monotonic() - started
        histogram.counts[bisect_left(DURATION_BUCKETS, elapsed)] += 1
        histogram.sum += elapsed

    def _audit(self, q: Query, reply: Reply, kind: str, network: str) -> None:
        assert self.audit is not None
        verdict = reply.verdict
        action = ""
        if kind == _BLOCKED and verdict.rule is not None:
            action = (verdict.mode or verdict.rule.answers.mode)._value_
        # tuple.__new__: the NamedTuple's own __new__ costs as much again, per blocked query.
        event: AuditEvent = _new_tuple(
            AuditEvent,
            (
                time(),
                q.client[0],
                network,
                q.qname,
                q.qtype,
                kind,
                verdict.list_name,
                verdict.category._value_ if verdict.list_name else "",
                action,
                "",  # destination: only bypass events have one
            ),
        )
        self.audit.record(event)

    def _count_bad(
        self,
        client: tuple[str, int],
        transport: Transport,
        kind: ReplyKind,
        started: float,
        qtype: int = -1,
    ) -> None:
        """Count a query that never reached the resolver (qtype -1: not parsed)."""
        network = self.resolver.policy.networks.lookup(client[0]) or NO_NETWORK
        qtype_label = QTYPE_LABELS.get(qtype, OTHER_QTYPE)
        self.stats.queries[(network, transport.value, qtype_label, kind.value)] += 1
        self.stats.duration(kind.value).observe(monotonic() - started)

    def spawn(self, q: Query, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run coro (the resolution of q) as a task counted against the in-flight caps."""
        task = asyncio.get_running_loop().create_task(coro)
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
        limits = self.limits
        if limits is not None:
            key = limits.key(q.client[0])
            if key is not None:
                limits.begin(key)
                # A done callback runs even for a task cancelled before it started.
                task.add_done_callback(lambda _: limits.end(key))
        return task

    def inflight_count(self) -> int:
        """Queries being resolved now (UDP and TCP), for dnsfilter_inflight_queries."""
        return len(self.inflight) + self.untasked

    def ratelimited_clients(self) -> int:
        """Clients limited within the last minute, for dnsfilter_ratelimited_clients."""
        return 0 if self.limits is None else self.limits.limited_clients(monotonic())


class UdpListener(asyncio.DatagramProtocol):
    def __init__(self, handler: QueryHandler) -> None:
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # addr as it is: IPv6 adds flow info and scope ID, but only [0] and [1] are read.
        result = self.handler.handle(data, addr, Transport.UDP)
        if type(result) is bytes:
            self.transport.sendto(result, addr)  # type: ignore[union-attr]
            return
        if result is None:
            return
        assert isinstance(result, tuple)
        transport = self.transport
        assert transport is not None

        def send(wire: bytes) -> None:
            if not transport.is_closing():
                transport.sendto(wire, addr)

        self.handler.forward(*result, send)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (a client that went away) are not ours to fix.
        log.debug("UDP error: %s", exc)


class TcpListener:
    """RFC 7766: length-prefixed messages, several per connection, answered as they finish."""

    def __init__(
        self, handler: QueryHandler, config: ServerConfig, max_connections: int | None = None
    ) -> None:
        """max_connections: the descriptor budget's TCP share, when below the configured cap."""
        self.handler = handler
        self.idle_timeout = config.tcp_idle_timeout
        self.max_queued = config.max_tcp_queued_bytes
        total = config.max_tcp_connections
        lowered = max_connections is not None and max_connections < total
        if max_connections is not None:
            total = min(total, max_connections)
        self.slots = ConnectionSlots(total, config.max_tcp_per_client, lowered)
        self.keepalive = tcp_keepalive_option(self.idle_timeout)
        #: the task serving each open connection, so close() can wait for them
        self.tasks: set[asyncio.Task[Any]] = set()
        #: the timeouts of connections now waiting for a message; drain() ends them at once
        self._waiting: set[asyncio.Timeout] = set()

    @property
    def connections(self) -> int:
        return self.slots.count

    def __call__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Coroutine[Any, Any, None] | None:
        # Not a coroutine: called as the connection is accepted, so a refused one is closed
        # before a task, a buffer or a timer exists for it.
        if self.handler.draining:
            writer.close()  # nothing is queued: the descriptor goes at once
            return None
        peer = writer.get_extra_info("peername")
        client = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        key, refused = self.slots.take(client[0])
        if refused:
            self.handler.stats.tcp_rejected[refused] += 1
            writer.close()  # nothing is queued: the descriptor goes at once
            return None
        return self._serve(reader, writer, client, key)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: tuple[str, int],
        key: ClientKey,
    ) -> None:
        this = asyncio.current_task()
        if this is not None:
            self.tasks.add(this)
        transport = writer.transport
        # drain() then waits while more than max_queued bytes are unread, until a quarter is left.
        transport.set_write_buffer_limits(high=self.max_queued)
        stats = self.handler.stats
        pending: set[asyncio.Task[None]] = set()
        try:
            while not self.handler.draining:
                if transport.get_write_buffer_size() > self.max_queued:
                    # The client does not take its replies: read none of its queries until
                    # it does, and give up on it after the idle timeout.
                    stats.tcp_paused += 1
                    if not await self._drained(writer):
                        stats.tcp_closed["unread_replies"] += 1
                        return
                message = await self._read_message(reader)
                if message is None:
                    break
                result = self.handler.handle(message, client, Transport.TCP)
                if type(result) is bytes:
                    _write_message(writer, self._keepalive(message, result))
                elif isinstance(result, tuple):
                    task = self.handler.spawn(
                        result[0], self._answer_later(*result, writer, message)
                    )
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    if len(pending) >= _TCP_PIPELINE:
                        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                await asyncio.wait(pending)
            writer.close()  # once every reply is sent
            try:
                async with asyncio.timeout(self.idle_timeout):
                    with contextlib.suppress(ConnectionError):
                        await writer.wait_closed()
            except TimeoutError:
                stats.tcp_closed["unread_replies"] += 1
        finally:
            for task in pending:
                task.cancel()
            self.slots.give_back(key)
            if this is not None:
                self.tasks.discard(this)
            # abort when replies are still queued: close() would keep the descriptor until a
            # client that does not read had taken them all.
            if not transport.is_closing() or transport.get_write_buffer_size():
                transport.abort()

    async def _drained(self, writer: asyncio.StreamWriter) -> bool:
        """Wait up to the idle timeout for the client to take its replies, down to a quarter
        of max_queued; False when it did not, or went away."""
        try:
            async with asyncio.timeout(self.idle_timeout):
                await writer.drain()
        except (TimeoutError, ConnectionError):
            return False
        return True

    async def _read_message(self, reader: asyncio.StreamReader) -> bytes | None:
        started = False  #: the length arrived: a timeout now is a query not finished in time
        try:
            async with asyncio.timeout(self.idle_timeout) as timeout:
                self._waiting.add(timeout)
                try:
                    length = int.from_bytes(await reader.readexactly(2), "big")
                    started = True
                    return await reader.readexactly(length)
                finally:
                    self._waiting.discard(timeout)
        except TimeoutError:
            if not self.handler.draining:
                self.handler.stats.tcp_closed["incomplete" if started else "idle"] += 1
            return None
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def drain(self) -> None:
        """Stop reading: connections waiting for a message end now, the others once their
        queries in flight are answered."""
        now = asyncio.get_running_loop().time()
        for timeout in list(self._waiting):
            timeout.reschedule(now)

    def _keepalive(self, query: bytes, reply: bytes) -> bytes:
        """reply with edns-tcp-keepalive (our idle timeout) when the query carried it: RFC
        7828 3.3.2 lets a server send it only to clients that asked."""
        if query_has_option(query, OPT_TCP_KEEPALIVE):
            return add_option(reply, self.keepalive)
        return reply

    async def _answer_later(
        self,
        q: Query,
        verdict: Verdict,
        started: float,
        writer: asyncio.StreamWriter,
        message: bytes,
    ) -> None:
        wire = await self.handler.resolve(q, verdict, started)
        if not writer.is_closing():
            _write_message(writer, self._keepalive(message, wire))


def _write_message(writer: asyncio.StreamWriter, wire: bytes) -> None:
    writer.write(len(wire).to_bytes(2, "big") + wire)


def bind_sockets(
    address: HostPort, reuse_port: bool = False
) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same address and port (port 0 picks one for both)."""
    family = socket.AF_INET6 if address.family_v6 else socket.AF_INET
    for _ in range(50):
        udp = _socket(family, socket.SOCK_DGRAM, reuse_port)
        tcp = _socket(family, socket.SOCK_STREAM, reuse_port)
        try:
            udp.bind((address.host, address.port))
            port = udp.getsockname()[1]
            try:
                tcp.bind((address.host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE and address.port == 0:
                    udp.close()
                    tcp.close()
                    continue
                raise
            tcp.listen(_TCP_BACKLOG)
            return udp, tcp
        except OSError as exc:
            udp.close()
            tcp.close()
            hint = ""
            if exc.errno == errno.EACCES and address.port < 1024:
                hint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            raise ListenError(f"cannot listen on {address}: {exc.strerror}{hint}") from None
    raise ListenError(f"cannot find a port free for both UDP and TCP on {address.host}")


def _socket(family: int, kind: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, kind)
    if family == socket.AF_INET6:
        # So [::]:53 and 0.0.0.0:53 can both be bound, as two listeners.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if kind == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    else:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RECEIVE_BUFFER)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setblocking(False)
    return sock


class DnsServer:
    """All listeners of one process, sharing one handler (and so one cache)."""

    def __init__(
        self,
        resolver: Resolver,
        config: ServerConfig,
        stats: QueryStats | None = None,
        audit: AuditSink | None = None,
        ratelimit: RateLimitConfig | None = None,
        budget: Budget | None = None,
    ) -> None:
        """budget: this process's descriptor budget, whose shares may lower the in-flight
        and TCP caps."""
        self.config = config
        self.handler = QueryHandler(
            resolver, config, stats, audit, ratelimit, budget.inflight if budget else None
        )
        self.tcp = TcpListener(self.handler, config, budget.tcp if budget else None)
        self.bound: list[HostPort] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._servers: list[asyncio.Server] = []
        self._compiled: list[fastpath.CompiledUdp] = []

    async def start(self, addresses: Sequence[HostPort]) -> list[HostPort]:
        """Bind every address (UDP and TCP); return them with the real ports."""
        pairs = []
        try:
            for address in addresses:
                pairs.append((address, *bind_sockets(address)))
        except ListenError:
            for _, udp, tcp in pairs:
                udp.close()
                tcp.close()
            raise
        for address, udp, tcp in pairs:
            await self._serve_udp(udp)
            self._servers.append(await asyncio.start_server(self.tcp, sock=tcp))
            self.bound.append(HostPort(address.host, udp.getsockname()[1]))
        return self.bound

    async def _serve_udp(self, sock: socket.socket) -> None:
        """The compiled loop in front of a UdpListener where it is built, else the listener
        on the event loop's own datagram transport."""
        if fastpath.COMPILED is not None:
            self._compiled.append(
                fastpath.CompiledUdp(sock, self.handler, UdpListener(self.handler))
            )
            return
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: UdpListener(self.handler), sock=sock
        )
        self._transports.append(transport)

    async def start_bound(
        self, bound: Sequence[tuple[HostPort, socket.socket, socket.socket]]
    ) -> None:
        """Serve on (address, UDP, TCP) sockets bound elsewhere: a worker's SO_REUSEPORT share,
        bound by the supervisor before privileges were dropped."""
        for address, udp, tcp in bound:
            await self._serve_udp(udp)
            self._servers.append(await asyncio.start_server(self.tcp, sock=tcp))
            self.bound.append(address)

    async def close(self, timeout: float = 0.0) -> tuple[int, int]:
        """Stop accepting, give the queries in flight up to timeout seconds, cancel the rest.

        Returns (answered, cancelled): the queries in flight that finished, and that did not.
        """
        handler = self.handler
        handler.draining = True
        for server in self._servers:
            server.close()  # no new connections; open ones are drained below
        self.tcp.drain()
        in_flight = len(handler.inflight) + handler.untasked
        # Queries resolving without a task may still become one (failover): look again
        # until everything is done or the time is up.
        tasks: set[asyncio.Task[Any]] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            tasks |= handler.inflight
            waiting = {task for task in tasks | self.tcp.tasks if not task.done()}
            remaining = deadline - loop.time()
            if (not waiting and not handler.untasked) or remaining <= 0:
                break
            if waiting:
                await asyncio.wait(waiting, timeout=min(remaining, 0.05))
            else:
                await asyncio.sleep(min(remaining, 0.01))
        tasks |= handler.inflight
        left = [task for task in tasks | self.tcp.tasks if not task.done()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
        # Only now: the UDP answers of the queries in flight went out through these.
        for served in self._compiled:
            served.close()
        for transport in self._transports:
            transport.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        # Those still on their first try are abandoned: their late answers go nowhere.
        handler.closed = True
        cancelled = sum(1 for task in tasks if task.cancelled()) + handler.untasked
        return in_flight - cancelled, cancelled
