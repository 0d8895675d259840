"""The monitor's /metrics, /healthz and /readyz: `serve`'s StatusServer on an event loop of its
own, in a daemon thread.

The monitor has no event loop: its main thread reads the capture file or watches the capture
thread, and scapy's sniffer has a thread of its own. A third thread with a small asyncio loop
reuses the StatusServer unchanged (same routes, same bind errors) and keeps scrapes and
capture apart: neither waits for the other except for the GIL. The collector reads the
counters with dict() copies (see dnsfilter.observe.metrics.BypassStats), so no lock is shared.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from prometheus_client import CollectorRegistry

from dnsfilter.config import HostPort
from dnsfilter.observe.httpserver import Readiness, StatusServer

#: Seconds to wait for the thread to bind, and for it to stop.
_TIMEOUT = 10.0


class StatusThread:
    def __init__(
        self, registry: CollectorRegistry, readiness: Readiness, address: HostPort
    ) -> None:
        self._server = StatusServer(registry, readiness)
        self.address = address
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def start(self) -> HostPort:
        """Serve on the address (port 0: any); return where. Raises OSError if it cannot bind."""
        bound: Future[HostPort] = Future()
        self._thread = threading.Thread(
            target=asyncio.run,
            args=(self._serve(self.address, bound),),
            name="dnsfilter-metrics",
            daemon=True,  # never keeps the process alive, whatever happens to the loop
        )
        self._thread.start()
        try:
            return bound.result(_TIMEOUT)
        except BaseException:
            self._thread.join(_TIMEOUT)
            self._thread = None
            raise

    async def _serve(self, address: HostPort, bound: Future[HostPort]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            where = await self._server.start(address)
        except OSError as exc:
            bound.set_exception(exc)
            return
        bound.set_result(where)
        await self._stop.wait()
        await self._server.close()

    def close(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(_TIMEOUT)
        self._thread = None
