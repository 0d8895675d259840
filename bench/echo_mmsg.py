"""The ceiling-mmsg row: a compiled UDP echo (bench/_echo_mmsg.pyx), the kernel's floor.

Like bench/echo.py (the uvloop "ceiling" row) it answers every datagram by setting the QR bit,
but from a C loop that drains the socket with recvmmsg and answers with sendmmsg: what is left
is the kernel's UDP path, the least any server can spend on a query here.

    python bench/echo_mmsg.py --build-dir DIR --port PORT

DIR holds the module bench/servers.py built (``build_echo_mmsg``). Listens on 127.0.0.1:PORT
(0 = any free port), logs ``listening on 127.0.0.1:PORT (udp)`` on stderr and, when stopped,
what it answered; SIGTERM or SIGINT stop it (exit status 0).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import socket
import struct
import sys
from pathlib import Path
from types import FrameType

MODULE = "_echo_mmsg"
#: How long recvmmsg blocks before the loop looks at signals again (SO_RCVTIMEO): bounds the
#: wait of a signal that lands between the check and the next receive.
RECEIVE_TIMEOUT_S = 0.2


class Stop(Exception):
    """SIGTERM arrived."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--build-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.build_dir))
    echo = importlib.import_module(MODULE)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.host, args.port))
    seconds = int(RECEIVE_TIMEOUT_S)
    timeval = struct.pack("@ll", seconds, int((RECEIVE_TIMEOUT_S - seconds) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    signal.signal(signal.SIGTERM, _stop)
    host, port = sock.getsockname()
    print(f"listening on {host}:{port} (udp)", file=sys.stderr, flush=True)
    counts = [0, 0, 0]
    try:
        echo.serve(sock.fileno(), counts)
    except (Stop, KeyboardInterrupt):
        pass
    finally:
        sock.close()
        answered, batches, dropped = counts
        print(
            f"answered {answered:,} in {batches:,} batches "
            f"({answered / max(batches, 1):.1f} a batch), dropped {dropped:,}",
            file=sys.stderr,
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
