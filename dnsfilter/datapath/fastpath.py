"""Which UDP datapath runs: the compiled loop or the pure-Python listener.

The compiled loop (_fastpath.pyx, built by `pip install .` when a C compiler is present)
answers blocked names and fresh cache hits inside a recvmmsg batch and hands everything else
to the same UdpListener the pure-Python path uses. DNSFILTER_PURE=1 forces the pure path;
`dnsfilter --version` and the start-up log say which one runs (DATAPATH).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from types import ModuleType
from typing import Any, Protocol

from dnsfilter.datapath.cache import LIFETIME_PER_WINDOW
from dnsfilter.datapath.policy import REFUSE
from dnsfilter.datapath.wire import opt_record
from dnsfilter.observe.metrics import (
    BLOCKED_CLIENT_LIMIT,
    DURATION_BUCKETS,
    OTHER_QTYPE,
    QTYPE_LABELS,
)
from dnsfilter.observe.querylog import AuditEvent, AuditLog

log = logging.getLogger(__name__)


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get("DNSFILTER_PURE", "") not in ("", "0"):
        return None, "pure Python (DNSFILTER_PURE is set)"
    try:
        from dnsfilter.datapath import _fastpath  # type: ignore[attr-defined]
    except ImportError:
        return None, "pure Python (the compiled datapath is not built)"
    if not _fastpath.hash_matches_str():
        # The loop probes the DomainTable by hash(name) computed from the name's bytes.
        return None, "pure Python (this interpreter's str hash differs from the compiled one)"
    return _fastpath, "compiled (Cython, recvmmsg/sendmmsg)"


COMPILED, DATAPATH = _load()


def constants() -> dict[str, Any]:
    """What the compiled loop takes from the Python modules it mirrors, once."""
    return {
        "opt_plain": opt_record(False),
        "opt_do": opt_record(True),
        "refuse": REFUSE,
        "qtype_labels": QTYPE_LABELS,
        "other_qtype": OTHER_QTYPE,
        "audit_event": AuditEvent,
        "audit_log": AuditLog,
        "blocked_client_limit": BLOCKED_CLIENT_LIMIT,
        "lifetime_per_window": LIFETIME_PER_WINDOW,
        "buckets": DURATION_BUCKETS,
    }


class Listener(Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None: ...


class SocketTransport(asyncio.DatagramTransport):
    """The part of a datagram transport UdpListener uses, on a socket the compiled loop
    reads: replies of the Python path go out with a plain non-blocking sendto."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self._closing = False

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if self._closing:
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            pass  # a full send buffer: UDP drops, as uvloop's transport does
        except OSError as exc:
            log.debug("UDP send to %s failed: %s", addr, exc)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._sock if name == "socket" else default


class CompiledUdp:
    """One UDP socket served by the compiled loop, with listener behind it for the rest."""

    def __init__(self, sock: socket.socket, handler: Any, listener: Listener) -> None:
        assert COMPILED is not None
        sock.setblocking(False)
        self._sock = sock
        self.transport = SocketTransport(sock)
        listener.connection_made(self.transport)
        self.loop = COMPILED.FastPath(handler, listener, sock.fileno(), constants=constants())
        self._event_loop = asyncio.get_running_loop()
        self._event_loop.add_reader(sock.fileno(), self.loop.drain)

    def close(self) -> None:
        if self.transport.is_closing():
            return
        self._event_loop.remove_reader(self._sock.fileno())
        self.transport.close()
        self._sock.close()
