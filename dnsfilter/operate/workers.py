"""server.workers > 1: a supervisor process and N forked workers sharing the listeners.

The supervisor loads config and lists and builds the resolver once, then binds one UDP and one
TCP socket per listen address for each worker slot, all with SO_REUSEPORT: the kernel spreads
clients over a port's sockets by a hash of their address and port. It drops privileges and
forks the workers. Each inherits the resolver copy-on-write (gc.freeze() first, so that the
worker's collections never write to the pages of the lists), closes the other slots' sockets
and serves its own on an event loop of its own, with its own cache, upstream sockets and audit
connection. The supervisor serves no DNS, but keeps every slot's sockets open: while a slot's
worker is replaced, its queries wait in its sockets instead of being lost.

Control: one socketpair per worker carries length-prefixed pickles. A worker says "ready" once
serving, answers "snapshot" with its Metrics.snapshot() -- the supervisor asks when Prometheus
scrapes, so the query path counts exactly as in one process and pays nothing more -- and sends
a "final" snapshot once it has drained. EOF tells a worker that its supervisor is gone (it
stops), and the supervisor that its worker is gone.

Reload: the supervisor reads config and lists once, builds a new resolver and forks a new
worker per slot on the same sockets; once all are serving, it stops the old ones, which drain
as on SIGTERM. If a new worker does not start, the new ones are stopped and the old ones keep
serving: all workers always answer from the same lists.

A worker that exits unexpectedly is started again in its slot (logged, and counted in
dnsfilter_worker_restarts_total); after RESTART_LIMIT restarts within RESTART_WINDOW seconds
the supervisor stops everything and exits 1, for systemd to restart the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import itertools
import logging
import os
import pickle
import signal
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from prometheus_client import CollectorRegistry

from dnsfilter.config import Config, HostPort
from dnsfilter.datapath.fastpath import DATAPATH
from dnsfilter.datapath.resolver import Resolver, build_resolver
from dnsfilter.datapath.server import bind_sockets
from dnsfilter.lists.model import BlockList
from dnsfilter.observe.httpserver import StatusServer
from dnsfilter.observe.metrics import Metrics, Snapshot, WorkerStats
from dnsfilter.observe.querylog import build_audit_log
from dnsfilter.operate.app import Loader, Reloading, Service, run_loop
from dnsfilter.operate.budget import descriptor_limit, log_budget, plan_budget
from dnsfilter.operate.privileges import drop_privileges, resolve_account

log = logging.getLogger("dnsfilter")

#: Seconds a new worker gets to say it is serving.
START_TIMEOUT = 30.0
#: Seconds a worker gets to answer a snapshot request; a scrape waits at most this long.
SCRAPE_TIMEOUT = 1.0
#: Unexpected worker exits tolerated within RESTART_WINDOW seconds before giving up.
RESTART_LIMIT = 10
RESTART_WINDOW = 60.0
#: Seconds past server.shutdown_timeout that stopping workers get before SIGKILL.
STOP_GRACE = 5.0
_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
#: Config sections a worker keeps from the start: a reload changes the lists and policies.
_FIXED_SECTIONS = ("server", "upstream", "forward_zones", "cache", "ratelimit", "metrics", "audit")

Bound = tuple[HostPort, socket.socket, socket.socket]


def worker_count(config: Config) -> int:
    """server.workers, with 0 meaning one per CPU this process may run on."""
    return config.server.workers or len(os.sched_getaffinity(0))


@dataclass
class _Template:
    """What a worker is forked with: its config, and the resolver built from the lists."""

    config: Config
    metrics: Metrics
    resolver: Resolver

    @classmethod
    def build(cls, config: Config, lists: Sequence[BlockList]) -> _Template:
        metrics = Metrics()
        return cls(config, metrics, build_resolver(config, lists, metrics.upstreams))


@dataclass(eq=False)
class _Worker:
    """The supervisor's view of one worker process."""

    slot: int
    pid: int
    writer: asyncio.StreamWriter
    ready: asyncio.Future[None]
    exited: asyncio.Future[int]
    last: Snapshot = field(default_factory=Snapshot)  #: its latest snapshot
    readiness: tuple[bool, str] = (False, "not started")
    answered: bool = False  #: answered the latest snapshot request in time
    retiring: bool = False  #: stopped on purpose: its exit is no surprise
    pending: dict[int, asyncio.Future[None]] = field(default_factory=dict)


class Supervisor(Reloading):
    """Binds, forks and watches server.workers workers; serves the merged /metrics."""

    def __init__(
        self,
        config: Config,
        lists: Sequence[BlockList],
        count: int,
        loader: Loader | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.pool = WorkerStats()
        super().__init__(config, Metrics(registry, workers=self.pool), loader)
        self.count = count
        self._start_config = config
        self.template = _Template.build(config, lists)
        self.metrics.lists_loaded((b.name, len(b.domains), b.skipped) for b in lists)
        server = config.server
        self.account = resolve_account(server.user, server.group) if server.user else None
        # Per process: the supervisor's HTTP share here, each worker's DNS shares in it.
        self.budget = plan_budget(descriptor_limit(), config)
        self.metrics.budget.update(self.budget.shares())
        self.status = StatusServer(
            self.metrics.registry,
            self.readiness,
            refresh=self.collect,
            config=config.metrics,
            max_connections=self.budget.http,
            stats=self.metrics.http,
        )
        self._sockets: list[list[Bound]] = []
        self._slots: list[_Worker | None] = [None] * count
        self._leaving: set[_Worker] = set()  #: retired workers still draining
        self._alive: set[_Worker] = set()  #: every worker not reaped yet
        self._retired = Snapshot()  #: the final counters of every worker that exited
        self._restarts: deque[float] = deque()
        self._requests = itertools.count()
        self._serving = False
        self._stop = asyncio.Event()
        self._exit_code = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        """Bind, fork the workers and supervise them until SIGTERM or SIGINT."""
        log_budget(self.budget)
        for address in self._bind():
            log.info("listening on %s (udp, tcp)", address)
        log.info("datapath: %s", DATAPATH)
        try:
            if self.config.metrics.enabled:
                address = await self.status.start(self.config.metrics.listen)
                log.info("metrics on http://%s/metrics", address)
            # Every socket is bound; workers forked from now on are unprivileged as well.
            drop_privileges(self.account)
            # Opened once here, as the workers' user: a bad hash key stops us before any fork,
            # and a new key file exists before the workers read it. A store that cannot be
            # opened is only logged: each worker retries it and counts what it drops.
            audit = build_audit_log(self.config.audit)
            if audit is not None:
                audit.close_now()
            workers = [await self._spawn(slot, self.template) for slot in range(self.count)]
            if not await self._started(workers):
                await self._shutdown()
                return 1
        except BaseException:
            await self._shutdown()
            raise
        self._slots = list(workers)
        self._serving = True
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop.set)
        self.start_reloading()
        self._log_serving()
        # Logged last, as by a single process: "ready for signals too".
        log.info("forwarding to %s", self.template.resolver.router.default)
        await self._stop.wait()
        log.info("stopping")
        await self._shutdown()
        return self._exit_code

    def _bind(self) -> list[HostPort]:
        """A UDP and a TCP socket per listen address for every slot, on the same ports."""
        addresses = list(self.config.server.listen)
        try:
            for _ in range(self.count):
                bound: list[Bound] = []
                self._sockets.append(bound)
                for index, address in enumerate(addresses):
                    udp, tcp = bind_sockets(address, reuse_port=True)
                    # Port 0 picks a port for the first slot; the others share it.
                    addresses[index] = HostPort(address.host, udp.getsockname()[1])
                    bound.append((addresses[index], udp, tcp))
        except BaseException:
            self._close_sockets()
            raise
        return addresses

    def _close_sockets(self) -> None:
        for bound in self._sockets:
            for _, udp, tcp in bound:
                udp.close()
                tcp.close()
        self._sockets = []

    async def _spawn(self, slot: int, template: _Template) -> _Worker:
        """Fork a worker serving slot's sockets with template's config and resolver."""
        ours, theirs = socket.socketpair()
        # Everything alive now is shared with the child; frozen, its collections skip it.
        gc.collect()
        gc.freeze()
        # Blocked until the child has handlers of its own: a SIGTERM arriving meanwhile must
        # not run ours in it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            gc.unfreeze()
            ours.close()
            theirs.close()
            raise
        if pid == 0:
            ours.close()
            _child(slot, template, self._sockets, theirs, self._control_sockets(), mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        gc.unfreeze()
        theirs.close()
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        worker = _Worker(slot, pid, writer, loop.create_future(), loop.create_future())
        self._alive.add(worker)
        self._track(self._listen(worker, reader))
        log.debug("worker %d: started (pid %d)", slot, pid)
        return worker

    def _control_sockets(self) -> list[int]:
        """The supervisor's ends of every worker's control socket (a child closes them, or
        the supervisor would not see EOF when a worker exits)."""
        fds = []
        for worker in self._alive:
            sock = worker.writer.get_extra_info("socket")
            if sock is not None:
                fds.append(sock.fileno())
        return fds

    def _track(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _started(self, workers: Sequence[_Worker]) -> bool:
        """Wait until every worker is serving; False (and logged) if one is not in time."""
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.gather(*(w.ready for w in workers))
        except TimeoutError:
            log.error("a worker did not start within %gs", START_TIMEOUT)
        except WorkerExited as exc:
            log.error("%s", exc)
        else:
            return True
        for worker in workers:
            self._retire(worker)
        await self._wait_gone(workers)
        return False

    async def _listen(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        """Read a worker's messages until it exits; then reap it and replace it if need be."""
        try:
            while (message := await _receive(reader)) is not None:
                self._handle(worker, message)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            log.error("worker %d: broken control channel: %s", worker.slot, exc)
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
        worker.writer.close()
        code = await _reap(worker.pid)
        worker.exited.set_result(code)
        if not worker.ready.done():
            worker.ready.set_exception(WorkerExited(worker.slot, worker.pid, code))
        for future in worker.pending.values():
            if not future.done():
                future.set_result(None)
        self._retired.add(worker.last.retired())
        self._leaving.discard(worker)
        self._alive.discard(worker)
        if worker.retiring or not self._serving or self._slots[worker.slot] is not worker:
            log.debug("worker %d (pid %d) exited with status %d", worker.slot, worker.pid, code)
            return
        self._slots[worker.slot] = None
        await self._restart(worker, code)

    def _handle(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            worker.readiness = (True, "")
            if not worker.ready.done():
                worker.ready.set_result(None)
        elif kind == "snapshot":
            _, request, snapshot, readiness = message
            worker.last, worker.readiness = snapshot, readiness
            future = worker.pending.pop(request, None)
            if future is not None and not future.done():
                worker.answered = True
                future.set_result(None)
        elif kind == "final":
            worker.last = message[1]

    async def _restart(self, worker: _Worker, code: int) -> None:
        now = time.monotonic()
        self._restarts.append(now)
        while self._restarts and self._restarts[0] < now - RESTART_WINDOW:
            self._restarts.popleft()
        if len(self._restarts) > RESTART_LIMIT:
            log.error(
                "worker %d (pid %d) exited with status %d: more than %d restarts within %gs, "
                "stopping",
                worker.slot,
                worker.pid,
                code,
                RESTART_LIMIT,
                RESTART_WINDOW,
            )
            self._exit_code = 1
            self._stop.set()
            return
        log.error(
            "worker %d (pid %d) exited with status %d; starting it again",
            worker.slot,
            worker.pid,
            code,
        )
        self.pool.restarts += 1
        self._slots[worker.slot] = await self._spawn(worker.slot, self.template)
        self._log_serving()

    async def apply(self, config: Config, lists: Sequence[BlockList]) -> bool:
        """Fork a worker per slot on the new lists; once all serve, stop the old ones."""
        kept = {name: getattr(self._start_config, name) for name in _FIXED_SECTIONS}
        worker_config = dataclasses.replace(config, **kept)
        template = await asyncio.to_thread(_Template.build, worker_config, lists)
        new = [await self._spawn(slot, template) for slot in range(self.count)]
        if not await self._started(new):
            log.error("reload failed, keeping the lists in use: the new workers did not start")
            return False
        old, self._slots, self.template = self._slots, list(new), template
        for worker in old:
            if worker is not None:
                self._retire(worker)
        self._log_serving()
        return True

    def _log_serving(self) -> None:
        pids = " ".join(str(w.pid) for w in self._slots if w is not None)
        log.info("%d workers serving (pids %s)", self.count, pids)

    def _retire(self, worker: _Worker) -> None:
        """Stop worker gracefully: it drains, sends its final counters and exits."""
        if worker.exited.done():
            return
        worker.retiring = True
        self._leaving.add(worker)
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGTERM)

    async def _wait_gone(self, workers: Sequence[_Worker]) -> None:
        """Wait for workers to exit, killing those still there after the grace period."""
        exits = [w.exited for w in workers]
        if not exits:
            return
        grace = self.config.server.shutdown_timeout + STOP_GRACE
        _, late = await asyncio.wait(exits, timeout=grace)
        for worker in workers:
            if not worker.exited.done():
                log.error("worker %d (pid %d) did not stop; killing it", worker.slot, worker.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
        if late:
            await asyncio.wait(late)

    async def _shutdown(self) -> None:
        self._serving = False
        await self.stop_reloading()
        workers = list(self._alive)
        for worker in workers:
            self._retire(worker)
        await self._wait_gone(workers)
        await self.status.close()
        self._close_sockets()

    async def collect(self) -> None:
        """Ask every worker for its figures and export their sum (the scrape hook)."""
        live = [w for w in self._slots if w is not None] + list(self._leaving)
        await asyncio.gather(*(self._ask(w) for w in live))
        merged = Snapshot()
        merged.add(self._retired)
        for worker in live:
            merged.add(worker.last)
        self.metrics.show(merged)
        self.pool.up = {
            slot: worker is not None and worker.answered for slot, worker in enumerate(self._slots)
        }

    async def _ask(self, worker: _Worker) -> None:
        request = next(self._requests)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        worker.pending[request] = future
        worker.answered = False
        try:
            _send(worker.writer, ("snapshot", request))
            async with asyncio.timeout(SCRAPE_TIMEOUT):
                await future
        except (TimeoutError, ConnectionError):
            log.warning("worker %d did not report its metrics in time", worker.slot)
        finally:
            worker.pending.pop(request, None)

    def readiness(self) -> tuple[bool, str]:
        """Ready when every slot's worker answered the last request and is ready itself."""
        for slot, worker in enumerate(self._slots):
            if worker is None or not worker.answered:
                return False, f"worker {slot} is not answering"
            ready, reason = worker.readiness
            if not ready:
                return False, f"worker {slot}: {reason}"
        return True, ""


class WorkerExited(Exception):
    """A worker exited before it was serving."""

    def __init__(self, slot: int, pid: int, code: int) -> None:
        super().__init__(f"worker {slot} (pid {pid}) exited with status {code} before serving")


# ---------------------------------------------------------------------------------------
# The worker side: runs in the forked child, never returns


def _child(
    slot: int,
    template: _Template,
    sockets: Sequence[Sequence[Bound]],
    control: socket.socket,
    foreign: Sequence[int],
    mask: set[int | signal.Signals],
) -> NoReturn:
    """The forked worker: leave the supervisor's loop, signals and sockets behind; serve."""
    code = 1
    try:
        # The supervisor's loop is never touched here (its epoll instance is shared with the
        # supervisor): a fresh loop is started, and the process ends in os._exit, so no
        # finalizer of the parent's objects ever runs.
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        # The supervisor reloads; a SIGHUP sent to the whole group must not end a worker.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        asyncio.events._set_running_loop(None)
        for fd in foreign:
            with contextlib.suppress(OSError):
                os.close(fd)
        for other, bound in enumerate(sockets):
            if other != slot:
                for _, udp, tcp in bound:
                    os.close(udp.detach())
                    os.close(tcp.detach())
        for handler in logging.getLogger().handlers:
            handler.addFilter(_SlotFilter(slot))
        code = run_loop(_serve(slot, template, sockets[slot], control, mask))
    except BaseException:
        log.exception("worker %d failed", slot)
    finally:
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(code)


async def _serve(
    slot: int,
    template: _Template,
    bound: Sequence[Bound],
    control: socket.socket,
    mask: set[int | signal.Signals],
) -> int:
    loop = asyncio.get_running_loop()
    metrics = template.metrics
    service = Service(template.config, (), metrics, resolver=template.resolver)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, service.stop)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    reader, writer = await asyncio.open_unix_connection(sock=control)
    answering = loop.create_task(_answer(reader, writer, service))
    await service.run_bound(bound, lambda: _send(writer, ("ready",)))
    answering.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await answering
    # After draining: these are the worker's last counts.
    with contextlib.suppress(ConnectionError):
        _send(writer, ("final", metrics.snapshot()))
        await writer.drain()
    writer.close()
    log.debug("worker %d: stopped", slot)
    return 0


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, svc: Service) -> None:
    """Answer the supervisor's requests; stop serving when it is gone."""
    with contextlib.suppress(OSError, EOFError, pickle.UnpicklingError):
        while (message := await _receive(reader)) is not None:
            if message[0] == "snapshot":
                _send(writer, ("snapshot", message[1], svc.metrics.snapshot(), svc.readiness()))
    log.warning("the supervisor is gone; stopping")
    svc.stop()


class _SlotFilter(logging.Filter):
    """Prefixes a worker's log lines with its slot."""

    def __init__(self, slot: int) -> None:
        super().__init__()
        self.prefix = f"worker {slot}: "

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            record.msg = self.prefix + str(record.msg)
        return True


# ---------------------------------------------------------------------------------------
# Messages: a 4-byte length, then a pickle (both ends are this program)


def _send(writer: asyncio.StreamWriter, message: tuple[Any, ...]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(len(data).to_bytes(4, "big") + data)


async def _receive(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message, or None at EOF."""
    try:
        length = int.from_bytes(await reader.readexactly(4), "big")
        message = pickle.loads(await reader.readexactly(length))
    except asyncio.IncompleteReadError:
        return None
    if not isinstance(message, tuple) or not message:
        raise EOFError(f"not a message: {message!r:.80}")
    return message


async def _reap(pid: int) -> int:
    """Wait for pid to exit (its control socket is closed: it is exiting) and return its
    exit status, or 128 + the signal that ended it, as a shell would."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code
        await asyncio.sleep(0.02)
