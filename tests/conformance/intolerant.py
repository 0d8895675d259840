"""An EDNS-intolerant server in front of nsd: FORMERR to any query that carries an OPT.

Old or broken authoritative servers (and some middleboxes) still answer EDNS with FORMERR
(RFC 6891 7: the requester may then retry without EDNS). The relay listens on UDP on
127.0.0.1, answers FORMERR, with the question echoed, to every query with a record after
the question, and relays every other query to nsd, one thread per query.
"""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType
from typing import Self

_FORMERR = 1
_RELAY_TIMEOUT = 3.0


def _question_end(data: bytes) -> int:
    pos = 12
    while data[pos]:
        pos += 1 + data[pos]
    return pos + 5


class EdnsIntolerantRelay:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.host = "127.0.0.1"
        self.port = 0
        self.formerrs = 0  #: queries answered FORMERR (they had an OPT)
        self.relayed = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def __enter__(self) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.host, 0))
        sock.settimeout(0.1)  # how often the loop looks at _stopping
        self.port = int(sock.getsockname()[1])
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="edns-intolerant", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                data, client = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 12 or data[2] & 0x80:
                continue
            msg_id, flags, qdcount, _, _, arcount = struct.unpack_from("!HHHHHH", data)
            if arcount:
                self.formerrs += 1
                try:
                    question = data[12 : _question_end(data)] if qdcount == 1 else b""
                except IndexError:
                    question = b""
                header = struct.pack(
                    "!HHHHHH",
                    msg_id,
                    0x8000 | (flags & 0x7900) | _FORMERR,
                    1 if question else 0,
                    0,
                    0,
                    0,
                )
                self._sock.sendto(header + question, client)
                continue
            self.relayed += 1
            threading.Thread(target=self._relay, args=(data, client), daemon=True).start()

    def _relay(self, data: bytes, client: tuple[str, int]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            out.settimeout(_RELAY_TIMEOUT)
            out.connect(self.upstream)
            out.send(data)
            try:
                reply = out.recv(65535)
            except TimeoutError:
                return
        if self._sock is not None and not self._stopping.is_set():
            self._sock.sendto(reply, client)
