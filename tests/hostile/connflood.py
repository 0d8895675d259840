"""Hostile TCP clients for the hostile tests: connections held idle, and queries never read.

Each runs in a thread of the test process on non-blocking sockets and one selector, with a
deadline, so every loop is bounded; the test thread meanwhile plays the honest client.
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

#: The longest any flood runs, whatever the test asks: a stuck test must still end.
MAX_RUN = 30.0


def rss_mib(pid: int) -> float:
    """VmRSS of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for pid {pid}")


def open_descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


class IdleConnections:
    """count connections to (host, port) that send nothing, from sources in turn: the
    first count/len(sources) from the first source, and so on.

    A connection the server closes (EOF or reset) is counted in `closed` and, with reopen
    set, opened again after that many seconds: an attacker keeps up the pressure.
    """

    def __init__(
        self,
        address: tuple[str, int],
        count: int,
        sources: Sequence[str],
        reopen: float | None = None,
        duration: float = MAX_RUN,
    ) -> None:
        self.address = address
        self.count = count
        self.sources = list(sources)
        self.reopen = reopen
        self.deadline = time.monotonic() + min(duration, MAX_RUN)
        self.closed = 0  #: connections the server closed
        self.opened = 0
        self.errors: list[str] = []  #: connects that failed locally (not the server's doing)
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._due: list[tuple[float, int]] = []  #: (when, slot) connections to open again

    def __enter__(self) -> Self:
        for slot in range(self.count):
            self._open(slot)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for key in list(self._selector.get_map().values()):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            self._selector.unregister(sock)
            sock.close()
        self._selector.close()

    @property
    def held(self) -> int:
        """Connections open now (as this side sees them)."""
        return len(self._selector.get_map())

    def _open(self, slot: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((self.sources[slot * len(self.sources) // self.count], 0))
            code = sock.connect_ex(self.address)
        except OSError as exc:
            sock.close()
            self.errors.append(str(exc))
            return
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.errors.append(errno.errorcode.get(code, str(code)))
            return
        self.opened += 1
        self._selector.register(sock, selectors.EVENT_READ, slot)

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            for key, _ in self._selector.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    continue  # the metrics port's 408-less close never sends; ignore if it does
                self._selector.unregister(sock)
                sock.close()
                with self._lock:
                    self.closed += 1
                if self.reopen is not None:
                    self._due.append((time.monotonic() + self.reopen, key.data))
            now = time.monotonic()
            due, self._due = (
                [d for d in self._due if d[0] <= now],
                [d for d in self._due if d[0] > now],
            )
            for _, slot in due:
                self._open(slot)


class UnreadPipelines:
    """Connections that send the same pipelined queries as fast as the server reads them and
    never read a reply. `closed` counts those the server closed (a send fails)."""

    def __init__(
        self,
        address: tuple[str, int],
        count: int,
        source: str,
        burst: bytes,
        duration: float = MAX_RUN,
    ) -> None:
        self.address = address
        self.burst = burst
        self.deadline = time.monotonic() + min(duration, MAX_RUN)
        self.sent = 0  #: bytes of queries sent
        self.closed = 0
        self._sockets = []
        for _ in range(count):
            sock = socket.create_connection(address, timeout=3, source_address=(source, 0))
            sock.setblocking(False)
            self._sockets.append(sock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self._sockets:
            sock.close()

    @property
    def done(self) -> bool:
        """Every connection was closed by the server, or the flood ran out of time."""
        return self.closed == len(self._sockets) or not self._thread.is_alive()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        offsets: dict[socket.socket, int] = {}
        for sock in self._sockets:
            selector.register(sock, selectors.EVENT_WRITE)
            offsets[sock] = 0
        try:
            while selector.get_map() and not self._stop.is_set():
                if time.monotonic() >= self.deadline:
                    return
                for key, _ in selector.select(0.05):
                    peer = key.fileobj
                    assert isinstance(peer, socket.socket)
                    offset = offsets[peer]
                    try:
                        sent = peer.send(self.burst[offset:])
                    except BlockingIOError:
                        continue
                    except OSError:  # reset or broken pipe: the server gave up on us
                        selector.unregister(peer)
                        self.closed += 1
                        continue
                    self.sent += sent
                    offsets[peer] = (offset + sent) % len(self.burst)
        finally:
            selector.close()
