"""The ceiling row: a bare uvloop UDP server that answers every datagram by setting the QR bit.

No parsing, no policy, no cache: the most any Python design built on uvloop can answer on one
core. ``python bench/echo.py --port PORT`` listens on 127.0.0.1:PORT (0 = any free port) and
logs ``listening on 127.0.0.1:PORT (udp)`` on stderr; SIGTERM or SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import cast


class EchoProtocol(asyncio.DatagramProtocol):
    """Sends each datagram back with the QR (response) bit set."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport does not subclass asyncio.DatagramTransport, so no isinstance.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) < 12 or self.transport is None:
            return
        self.transport.sendto(data[:2] + bytes((data[2] | 0x80,)) + data[3:], addr)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(EchoProtocol, local_addr=(host, port))
    bound = transport.get_extra_info("sockname")
    print(f"listening on {bound[0]}:{bound[1]} (udp)", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        transport.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # the ceiling is meant for uvloop; asyncio still lets smoke runs pass
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
