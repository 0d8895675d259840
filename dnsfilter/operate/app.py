"""One running dnsfilter: the DNS listeners, the status endpoint, health checks, signals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from dnsfilter.config import DEFAULT_CONFIG_NAME, Config, HostPort
from dnsfilter.datapath.fastpath import DATAPATH
from dnsfilter.datapath.policy import build_policy
from dnsfilter.datapath.resolver import Resolver, build_resolver
from dnsfilter.datapath.server import DnsServer
from dnsfilter.errors import ConfigError, ListError
from dnsfilter.lists.catalog import list_sources
from dnsfilter.lists.location import resolve_list_path
from dnsfilter.lists.model import BlockList
from dnsfilter.lists.refresh import ListRefresher
from dnsfilter.lists.sources import HostResolver, ListSource
from dnsfilter.observe.httpserver import StatusServer
from dnsfilter.observe.metrics import Metrics
from dnsfilter.observe.querylog import build_audit_log
from dnsfilter.operate.budget import descriptor_limit, log_budget, plan_budget
from dnsfilter.operate.loading import release_memory
from dnsfilter.operate.privileges import drop_privileges, resolve_account

log = logging.getLogger("dnsfilter")
_T = TypeVar("_T")


#: Reads the config and its lists again, with the command line's overrides applied.
Loader = Callable[[], tuple[Config, list[BlockList]]]
#: Config sections a reload cannot change in a running process.
_RESTART_SECTIONS = (
    "server",
    "upstream",
    "forward_zones",
    "cache",
    "ratelimit",
    "metrics",
    "audit",
)


class Reloading:
    """Reads config and lists again on SIGHUP, on a changed file and on a changed URL list,
    and puts a good result in force with `apply`; a bad one leaves the last good in force.

    Service applies by swapping its policy; the supervisor of server.workers
    (dnsfilter.operate.workers) by starting workers on the new lists in place of the old ones.
    """

    def __init__(self, config: Config, metrics: Metrics, loader: Loader | None) -> None:
        self.config = config
        self.metrics = metrics
        self.loader = loader
        self.reloads = 0
        self._reload_lock = asyncio.Lock()
        self._watch_task: asyncio.Task[None] | None = None
        self._refresher: ListRefresher | None = None
        self._background: set[asyncio.Task[bool]] = set()

    async def apply(self, config: Config, lists: Sequence[BlockList]) -> bool:
        """Put config and lists in force; raise ConfigError or ListError if they cannot be,
        or return False once the reason is logged."""
        raise NotImplementedError

    def start_reloading(self) -> None:
        """SIGHUP, file watching and URL list refreshes, on the running loop (with a loader)."""
        if self.loader is None:
            return
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon, "SIGHUP")
        if self.config.reload.watch_files and self.config.reload.watch_interval > 0:
            self._watch_task = loop.create_task(self._watch(self.config.reload.watch_interval))
        # URL lists are downloaded again when due; a changed one reloads as SIGHUP does.
        self._refresher = ListRefresher(self._url_sources, lambda: self.reload("list downloaded"))
        self._refresher.start()

    async def stop_reloading(self) -> None:
        if self._refresher is not None:
            await self._refresher.stop()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task

    def _url_sources(self) -> list[ListSource]:
        """The current config's URL lists (read again each round: a reload may change them)."""
        resolver = HostResolver.from_config(self.config)
        return [s for s in list_sources(self.config.lists, Path.cwd(), resolver) if s.is_url]

    def _reload_soon(self, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(reason))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload(self, reason: str) -> bool:
        """Read config and lists again off the event loop; apply them only if all are good.

        Queries keep flowing meanwhile on the old policy; a failed reload leaves it in force.
        """
        if self.loader is None:
            return False
        try:
            return await self._reload(reason, self.loader)
        finally:
            # The parsed lists are garbage now (about 100 MB for a million names), and glibc
            # keeps freed heap for itself unless asked to return it.
            await asyncio.to_thread(release_memory)

    async def _reload(self, reason: str, loader: Loader) -> bool:
        async with self._reload_lock:
            started = time.monotonic()
            try:
                config, lists = await asyncio.to_thread(loader)
                if not await self.apply(config, lists):
                    return False
            except (ConfigError, ListError) as exc:
                for problem in exc.problems:
                    log.error("reload (%s) failed, keeping the lists in use: %s", reason, problem)
                self._count_failures(exc.problems)
                return False
            for section in _RESTART_SECTIONS:
                if getattr(config, section) != getattr(self.config, section):
                    log.warning("reload (%s): %s changed; restart to apply it", reason, section)
            self.config = config
            self.metrics.lists.lists.clear()
            self.metrics.lists_loaded((b.name, len(b.domains), b.skipped) for b in lists)
            self.reloads += 1
            log.info(
                "reloaded (%s): %d lists, %d entries in %.2fs",
                reason,
                len(lists),
                sum(len(b.domains) for b in lists),
                time.monotonic() - started,
            )
            return True

    def _count_failures(self, problems: Sequence[str]) -> None:
        """A failure counts against each list whose file a problem names, else against all."""
        named = {
            item.name
            for item in self.config.lists
            if item.file and any(problem.startswith(_list_path(item.file)) for problem in problems)
        }
        for name in named or {item.name for item in self.config.lists}:
            self.metrics.list_reload_failed(name)

    def watched_files(self) -> list[Path]:
        files = [
            Path(item.file)
            for item in self.config.lists
            if item.file and not item.file.startswith("shipped:")
        ]
        if self.config.source != DEFAULT_CONFIG_NAME:
            files.append(Path(self.config.source))
        return files

    async def _watch(self, interval: float) -> None:
        """Reload when the config file or a local list file changes (mtime, size or inode)."""
        seen = _stat_all(self.watched_files())
        while True:
            await asyncio.sleep(interval)
            now = _stat_all(self.watched_files())
            if now != seen:
                await self.reload("file changed")
                seen = _stat_all(self.watched_files())


#: Allocations between young collections while serving (CPython's default is 700).
SERVING_GC_THRESHOLDS = (50_000, 20, 100)


def settle_gc() -> None:
    """Tune the cyclic collector for serving, once everything long-lived exists.

    What is alive now (config, lists, resolver, listeners) lives as long as the process:
    frozen, collections never walk it again. A forwarded query allocates a task, its
    coroutines and a future, so at the default thresholds the collector ran every few
    dozen queries: about 11% of the server's CPU on the miss set (py-spy). Reference
    counting still frees nearly everything at once; the collector is only for cycles.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)


class Service(Reloading):
    def __init__(
        self,
        config: Config,
        lists: Sequence[BlockList],
        metrics: Metrics,
        loader: Loader | None = None,
        *,
        resolver: Resolver | None = None,
    ) -> None:
        """resolver: one built already from config and lists (a worker's, built before the
        supervisor forked it), used instead of building one from lists."""
        super().__init__(config, metrics, loader)
        self.resolver: Resolver = (
            resolver if resolver is not None else build_resolver(config, lists, metrics.upstreams)
        )
        metrics.watch_cache(self.resolver.cache)
        metrics.lists_loaded((b.name, len(b.domains), b.skipped) for b in lists)
        self.lists_loaded = True
        # A store that cannot be opened is retried while DNS serves (its gauge says so); only
        # a bad hash key raises ConfigError.
        self.audit = build_audit_log(config.audit, metrics.audit)
        #: this process's descriptors by share (per process: each worker has its own)
        self.budget = plan_budget(descriptor_limit(), config)
        metrics.budget.update(self.budget.shares())
        self.dns = DnsServer(
            self.resolver,
            config.server,
            metrics.queries,
            audit=self.audit,
            ratelimit=config.ratelimit,
            budget=self.budget,
        )
        metrics.watch_server(self.dns.handler)
        # Looked up now, so an unknown user fails before anything is bound (ConfigError).
        server = config.server
        self.account = resolve_account(server.user, server.group) if server.user else None
        self.status = StatusServer(
            metrics.registry,
            self.readiness,
            config=config.metrics,
            max_connections=self.budget.http,
            stats=metrics.http,
        )
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
        log_budget(self.budget)
        self._start_audit()
        for address in await self.dns.start(self.config.server.listen):
            log.info("listening on %s (udp, tcp)", address)
        log.info("datapath: %s", DATAPATH)
        if self.config.metrics.enabled:
            address = await self.status.start(self.config.metrics.listen)
            log.info("metrics on http://%s/metrics", address)
        await self._started()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop.set)
        self.start_reloading()
        # Logged last: supervisors and tests take this line to mean "ready for signals too".
        log.info("forwarding to %s", self.resolver.router.default)
        await self._stop.wait()
        log.info("stopping")
        await self.close()
        return 0

    async def run_bound(
        self,
        bound: Sequence[tuple[HostPort, socket.socket, socket.socket]],
        ready: Callable[[], None],
    ) -> None:
        """Serve sockets bound by a supervisor until stop(), then drain: a worker's life
        (dnsfilter.operate.workers), which neither serves metrics nor reloads; ready() once
        serving."""
        self._start_audit()
        await self.dns.start_bound(bound)
        # The supervisor dropped root before forking (or warned that it keeps it): only check.
        await self._started(drop=self.account is not None)
        ready()
        await self._stop.wait()
        await self.close()

    def _start_audit(self) -> None:
        if self.audit is not None:
            self.audit.start()
            log.info("audit log: %s", self.audit.describe())

    async def _started(self, drop: bool = True) -> None:
        """Every socket is bound: drop root (if we are root), start the health checks."""
        try:
            if drop:
                drop_privileges(self.account)
        except Exception:
            await self.close()
            raise
        interval = self.config.upstream.health_check_interval
        if interval > 0:
            self._health_task = asyncio.get_running_loop().create_task(self._check_health(interval))
        settle_gc()

    def stop(self) -> None:
        self._stop.set()

    async def apply(self, config: Config, lists: Sequence[BlockList]) -> bool:
        self.resolver.swap_policy(await asyncio.to_thread(build_policy, config, lists))
        return True

    async def close(self) -> None:
        await self.stop_reloading()
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self.status.close()
        # Graceful stop: no new queries; those in flight get up to shutdown_timeout.
        timeout = self.config.server.shutdown_timeout
        inflight = self.dns.handler.inflight_count()
        if inflight:
            log.info("waiting up to %gs for %d queries in flight", timeout, inflight)
        answered, cancelled = await self.dns.close(timeout)
        if cancelled:
            log.warning("stopped with %d queries unanswered after %gs", cancelled, timeout)
        elif answered:
            log.info("answered the %d queries in flight", answered)
        await self.resolver.close()  # background refreshes, connections to DoT upstreams
        # After the listeners: no event may arrive once the final flush has started.
        if self.audit is not None:
            await self.audit.close()

    async def _check_health(self, interval: float) -> None:
        """Probe every upstream now and then, so /readyz and upstream_up reflect idle times too."""
        while True:
            for group in self.resolver.groups:
                await group.probe()
            await asyncio.sleep(interval)


def _stat_all(paths: Sequence[Path]) -> dict[Path, tuple[int, int, int] | None]:
    stats: dict[Path, tuple[int, int, int] | None] = {}
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            stats[path] = None
        else:
            stats[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return stats


def _list_path(file: str) -> str:
    return str(resolve_list_path(file, Path.cwd()))


def run_loop(main: Coroutine[Any, Any, _T]) -> _T:
    """Run on uvloop when it is installed (it is a dependency on Linux), else on asyncio."""
    try:
        import uvloop
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
