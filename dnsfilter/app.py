"""One running dnsfilter: the DNS listeners, the status endpoint, health checks, signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from dnsfilter.config import Config
from dnsfilter.httpserver import StatusServer
from dnsfilter.lists.model import BlockList
from dnsfilter.metrics import Metrics
from dnsfilter.resolver import Resolver, build_resolver
from dnsfilter.server import DnsServer

log = logging.getLogger("dnsfilter")


class Service:
    def __init__(self, config: Config, lists: Sequence[BlockList], metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.resolver: Resolver = build_resolver(config, lists, metrics.upstreams)
        metrics.watch_cache(self.resolver.cache)
        metrics.lists_loaded((b.name, len(b.domains)) for b in lists)
        self.lists_loaded = True
        self.dns = DnsServer(self.resolver, config.server, metrics.queries)
        self.status = StatusServer(metrics.registry, self.readiness)
        self._stop = asyncio.Event()
        self._health_task: asyncio.Task[None] | None = None

    def readiness(self) -> tuple[bool, str]:
        if not self.lists_loaded:
            return False, "lists not loaded"
        up = self.metrics.upstreams.up
        if not any(up.values()):
            return False, "no upstream has answered yet" if not up else "no upstream answering"
        return True, ""

    async def run(self) -> int:
        """Serve until SIGTERM or SIGINT."""
        for address in await self.dns.start(self.config.server.listen):
            log.info("listening on %s (udp, tcp)", address)
        if self.config.metrics.enabled:
            address = await self.status.start(self.config.metrics.listen)
            log.info("metrics on http://%s/metrics", address)
        log.info("forwarding to %s", self.resolver.router.default)
        interval = self.config.upstream.health_check_interval
        if interval > 0:
            self._health_task = asyncio.get_running_loop().create_task(self._check_health(interval))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop.set)
        await self._stop.wait()
        log.info("stopping")
        await self.close()
        return 0

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self.status.close()
        await self.dns.close()

    async def _check_health(self, interval: float) -> None:
        """Probe every upstream now and then, so /readyz and upstream_up reflect idle times too."""
        while True:
            for group in self.resolver.groups:
                await group.probe()
            await asyncio.sleep(interval)
