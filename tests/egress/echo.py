"""Echo servers on the given addresses; run inside a namespace until SIGTERM.

    python echo.py udp:ADDR:PORT tcp:ADDR:PORT ...

Prints "ready" once every socket is bound. UDP datagrams are sent back; a TCP connection gets
back what it sent first, then is closed.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading


def udp(sock: socket.socket) -> None:
    while True:
        data, peer = sock.recvfrom(65535)
        sock.sendto(data, peer)


def tcp(sock: socket.socket) -> None:
    while True:
        conn, _ = sock.accept()
        with conn:
            conn.settimeout(5)
            try:
                data = conn.recv(65535)
                conn.sendall(data)
            except OSError:
                pass


def main(argv: list[str]) -> int:
    for spec in argv:
        proto, rest = spec.split(":", 1)
        address, port = rest.rsplit(":", 1)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        sock = socket.socket(family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, int(port)))
        if proto == "tcp":
            sock.listen()
        target = udp if proto == "udp" else tcp
        threading.Thread(target=target, args=(sock,), daemon=True).start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait(300)  # never outlives a hung test by long
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
