"""Forwarding to upstream resolvers: UDP with TCP on truncation, timeouts and failover.

Every try uses a fresh socket, so the kernel picks a fresh ephemeral source port, and a
fresh ID from `secrets`. The UDP socket is connected, so the kernel drops datagrams from
any other address or port; a datagram from the right peer is accepted only if its ID and
question match and the whole message parses. Anything else is ignored until the timeout,
as a spoofed or stray reply must not end the wait for the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from dnsfilter.config import HostPort, UpstreamServer
from dnsfilter.errors import FormatError, UpstreamError, UpstreamTimeout
from dnsfilter.metrics import UpstreamStats
from dnsfilter.wire import (
    HEADER_LEN,
    QType,
    Query,
    Rcode,
    ResponseScan,
    make_query,
    opt_record,
    same_question,
    scan_response,
)

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!HHHHHH")
_RD = 0x0100
_CD = 0x0010
_TC = 0x0200
_MAX_MESSAGE = 65535


class UpstreamAnswer(NamedTuple):
    wire: bytes
    scan: ResponseScan
    server: str  #: the upstream's configured name, for logs and metrics


class Upstream(Protocol):
    """Anything that can answer a query: a group of servers, or a fake in unit tests."""

    async def forward(self, q: Query) -> UpstreamAnswer: ...


def upstream_query(q: Query, msg_id: int) -> bytes:
    """The query we send upstream: our ID, RD set, the client's CD, question and DO bit.

    We always speak EDNS upstream, whatever the client sent, so one cached answer can
    serve clients with and without EDNS (the OPT is rebuilt per client when serving).
    """
    flags = _RD | (q.flags & _CD)
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


async def udp_exchange(
    server: HostPort, query: bytes, question: bytes, timeout: float
) -> tuple[bytes, ResponseScan]:
    loop = asyncio.get_running_loop()
    msg_id = int.from_bytes(query[:2], "big")
    family = socket.AF_INET6 if server.family_v6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        try:
            sock.connect((server.host, server.port))
            sock.send(query)
        except OSError as exc:
            raise UpstreamError(f"{server}: {exc.strerror or exc}") from None
        done: asyncio.Future[tuple[bytes, ResponseScan]] = loop.create_future()

        def on_readable() -> None:
            while not done.done():
                try:
                    data = sock.recv(_MAX_MESSAGE)
                except BlockingIOError:
                    return
                except OSError as exc:  # e.g. ICMP port unreachable
                    done.set_exception(UpstreamError(f"{server}: {exc.strerror or exc}"))
                    return
                scan = _check_answer(data, msg_id, question)
                if scan is not None:
                    done.set_result((data, scan))
                elif log.isEnabledFor(logging.DEBUG):
                    log.debug("ignored a non-matching datagram from %s", server)

        fd = sock.fileno()
        loop.add_reader(fd, on_readable)
        try:
            async with asyncio.timeout(timeout):
                return await done
        except TimeoutError:
            raise UpstreamTimeout(f"{server}: no answer over UDP in {timeout:g}s") from None
        finally:
            loop.remove_reader(fd)
    finally:
        sock.close()


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
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise UpstreamError(f"{server}: TCP: {exc}") from None
    finally:
        if writer is not None:
            writer.close()


class UpstreamGroup:
    """Servers tried in order, skipping those that failed within the last dead_time seconds."""

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

    def __str__(self) -> str:
        return ", ".join(server.name for server in self.servers)

    def is_up(self, server: UpstreamServer) -> bool:
        return self._dead_until.get(server, 0.0) <= self._clock()

    def _order(self) -> list[UpstreamServer]:
        if not self._dead_until:
            return list(self.servers)
        now = self._clock()
        alive = [s for s in self.servers if self._dead_until.get(s, 0.0) <= now]
        # Dead servers are still tried last: better a slow answer than none at all.
        return alive + [s for s in self.servers if s not in alive]

    async def forward(self, q: Query) -> UpstreamAnswer:
        question = q.wire[HEADER_LEN : q.question_end]

        def query() -> bytes:
            return upstream_query(q, secrets.randbits(16))

        failures: list[str] = []
        for server in self._order():
            try:
                data, scan = await self._try(server, query, question)
            except UpstreamError as exc:
                failures.append(str(exc))
                continue
            if scan.rcode in (Rcode.SERVFAIL, Rcode.REFUSED):
                # The server is alive but could not help; another one may.
                failures.append(f"{server.name}: {Rcode(scan.rcode).name}")
                continue
            return UpstreamAnswer(data, scan, server.name)
        raise UpstreamError("; ".join(failures))

    async def probe(self) -> None:
        """Ask every server for the root NS records: any answer means it is up."""
        question = make_query("", QType.NS)[HEADER_LEN:]

        def query() -> bytes:
            return make_query("", QType.NS, secrets.randbits(16))

        for server in self.servers:
            with contextlib.suppress(UpstreamError):
                await self._try(server, query, question)

    async def _try(
        self, server: UpstreamServer, query: Callable[[], bytes], question: bytes
    ) -> tuple[bytes, ResponseScan]:
        """One exchange with one server (UDP, then TCP if truncated), counted and timed.

        Each call of query() makes a fresh message with a fresh random ID.
        """
        timeout = server.timeout or self.timeout
        started = time.perf_counter()
        try:
            data, scan = await udp_exchange(server.address, query(), question, timeout)
            if scan.flags & _TC:
                data, scan = await tcp_exchange(server.address, query(), question, timeout)
        except UpstreamError as exc:
            self._dead_until[server] = self._clock() + self.dead_time
            outcome = "timeout" if isinstance(exc, UpstreamTimeout) else "error"
            self.stats.observe(server.name, outcome, time.perf_counter() - started, False)
            log.debug("upstream failed: %s", exc)
            raise
        self._dead_until.pop(server, None)
        elapsed = time.perf_counter() - started
        self.stats.observe(server.name, _rcode_name(scan.rcode), elapsed, True)
        return data, scan


def _rcode_name(rcode: int) -> str:
    try:
        return Rcode(rcode).name
    except ValueError:
        return "OTHER"
