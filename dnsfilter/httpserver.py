"""The HTTP status endpoint: /metrics for Prometheus, /healthz and /readyz for orchestrators.

It runs on the resolver's own event loop, so readiness reads live state without locks; a
scrape renders in a few milliseconds, which the loop can spare every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from dnsfilter.config import HostPort

log = logging.getLogger(__name__)

_MAX_HEAD = 8192
_READ_TIMEOUT = 5.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}

#: Returns (ready, reason); reason says what is missing when not ready.
Readiness = Callable[[], tuple[bool, str]]


class StatusServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: Readiness,
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """refresh: awaited before /metrics and /readyz are answered (a supervisor asks its
        workers for their figures)."""
        self.registry = registry
        self.readiness = readiness
        self.refresh = refresh
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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        if len(head) > _MAX_HEAD:
            writer.close()
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
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

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
