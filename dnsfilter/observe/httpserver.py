"""The HTTP status endpoint: /metrics for Prometheus, /healthz and /readyz for orchestrators.

It runs on the resolver's own event loop, so readiness reads live state without locks; a
scrape renders in a few milliseconds, which the loop can spare every few seconds.

It is a side door that must not take the DNS service down with it: connections are capped in
all and per client (ConnectionSlots; the global cap is the descriptor budget's HTTP share), a
connection past a cap is closed as soon as it is accepted, and a client gets
metrics.request_timeout seconds to send its request head (slowloris).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from dnsfilter.config import HostPort, MetricsConfig
from dnsfilter.observe.metrics import HttpStats
from dnsfilter.operate.budget import ClientKey, ConnectionSlots

log = logging.getLogger(__name__)

_MAX_HEAD = 8192
#: Seconds a reply gets to be taken by its client before the connection is cut.
_SEND_TIMEOUT = 10.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}

#: Returns (ready, reason); reason says what is missing when not ready.
Readiness = Callable[[], tuple[bool, str]]


class StatusServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: Readiness,
        refresh: Callable[[], Awaitable[None]] | None = None,
        *,
        config: MetricsConfig | None = None,
        max_connections: int | None = None,
        stats: HttpStats | None = None,
    ) -> None:
        """refresh: awaited before /metrics and /readyz are answered (a supervisor asks its
        workers for their figures). max_connections: the descriptor budget's HTTP share,
        when below config.max_connections."""
        self.registry = registry
        self.readiness = readiness
        self.refresh = refresh
        config = config if config is not None else MetricsConfig()
        total = config.max_connections
        lowered = max_connections is not None and max_connections < total
        if max_connections is not None:
            total = min(total, max_connections)
        self.slots = ConnectionSlots(total, config.max_connections_per_client, lowered)
        self.request_timeout = config.request_timeout
        self.stats = stats if stats is not None else HttpStats()
        self._server: asyncio.Server | None = None

    async def start(self, address: HostPort) -> HostPort:
        family = socket.AF_INET6 if address.family_v6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address.host, address.port))
            sock.listen(64)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot serve metrics on {address}: {exc.strerror}") from None
        self._server = await asyncio.start_server(self._handle, sock=sock)
        return HostPort(address.host, sock.getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Coroutine[Any, Any, None] | None:
        # Not a coroutine: called as the connection is accepted, so a refused one is closed
        # before a task, a buffer or a timer exists for it.
        peer = writer.get_extra_info("peername")
        key, refused = self.slots.take(str(peer[0]) if peer else "")
        if refused:
            self.stats.rejected[refused] += 1
            writer.close()  # nothing is queued: the descriptor goes at once
            return None
        return self._serve(key, reader, writer)

    async def _serve(
        self, key: ClientKey, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.stats.open += 1
        try:
            await self._answer(reader, writer)
        finally:
            self.stats.open -= 1
            self.slots.give_back(key)
            # A no-op once the reply is sent; else (no head in time, a reply not taken within
            # _SEND_TIMEOUT) the descriptor must go now, not when a client that does not read
            # has taken the rest.
            writer.transport.abort()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.request_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            self.stats.rejected["timeout"] += 1
            return
        except asyncio.LimitOverrunError:
            self.stats.rejected["too_large"] += 1
            return
        except (asyncio.IncompleteReadError, OSError):
            return
        if len(head) > _MAX_HEAD:
            self.stats.rejected["too_large"] += 1
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        method, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
        path = target.split("?", 1)[0]
        if self.refresh is not None and path in ("/metrics", "/readyz"):
            await self.refresh()
        status, content_type, body = self._route(method, path)
        headers = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(headers.encode("latin-1") + (b"" if method == "HEAD" else body))
        writer.close()  # once the reply is sent
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(_SEND_TIMEOUT):
                await writer.wait_closed()

    def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        text = "text/plain; charset=utf-8"
        if method not in ("GET", "HEAD"):
            return 405, text, b"only GET and HEAD\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/healthz":
            return 200, text, b"ok\n"
        if path == "/readyz":
            ready, reason = self.readiness()
            return (200, text, b"ready\n") if ready else (503, text, reason.encode() + b"\n")
        return 404, text, b"not found: try /metrics, /healthz or /readyz\n"
