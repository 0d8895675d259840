"""A flood of UDP queries from many loopback sources, run as its own process.

    python -m tests.integration.flood --port 5353 --sources 40 --count 60000 --rate 8000

Each source is a socket bound to its own address (127.0.0.10, .11, ...): spoof-free clients,
as the kernel routes the whole of 127.0.0.0/8 to loopback. Queries go round-robin over the
sources, in bursts every 10 ms at the given total rate, for fresh random names under --zone
(a random-subdomain attack) or always --name. Replies are read as they come; at the end one
JSON line on stdout says what was sent and what came back, by rcode.

A separate process, so the flood's CPU does not hold the test's GIL while the test measures
a legitimate client's latency.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import sys
import time
from collections import Counter

_BURSTS_PER_SECOND = 100


def _query(qname: str, msg_id: int) -> bytes:
    labels = b"".join(bytes((len(p),)) + p.encode() for p in qname.split("."))
    return struct.pack("!HHHHHH", msg_id, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sources", type=int, default=40, help="clients, from 127.0.0.10 up")
    parser.add_argument("--first", type=int, default=10, help="last octet of the first source")
    parser.add_argument("--count", type=int, default=60000, help="queries in all")
    parser.add_argument("--rate", type=float, default=8000, help="queries per second in all")
    parser.add_argument("--zone", default="example.test")
    parser.add_argument("--name", help="ask this name every time (default: random subdomains)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    sockets = []
    for n in range(args.sources):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((f"127.0.0.{args.first + n}", 0))
        sock.setblocking(False)
        sockets.append(sock)
    target = ("127.0.0.1", args.port)
    per_burst = max(1, round(args.rate / _BURSTS_PER_SECOND))
    rcodes: Counter[int] = Counter()
    sent = would_block = 0
    started = time.monotonic()
    next_burst = started
    while sent < args.count:
        for _ in range(min(per_burst, args.count - sent)):
            qname = args.name or f"{rng.getrandbits(48):012x}.{args.zone}"
            try:
                sockets[sent % len(sockets)].sendto(_query(qname, sent & 0xFFFF), target)
            except BlockingIOError:
                would_block += 1
            sent += 1
        for sock in sockets:
            _drain(sock, rcodes)
        next_burst += 1.0 / _BURSTS_PER_SECOND
        delay = next_burst - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.monotonic() - started
    # Answers still on their way (a slow upstream) are counted for a moment longer.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        for sock in sockets:
            _drain(sock, rcodes)
        time.sleep(0.02)
    for sock in sockets:
        sock.close()
    report = {
        "sent": sent,
        "would_block": would_block,
        "seconds": round(elapsed, 2),
        "replies": sum(rcodes.values()),
        "rcodes": {str(code): n for code, n in sorted(rcodes.items())},
    }
    print(json.dumps(report), flush=True)
    return 0


def _drain(sock: socket.socket, rcodes: Counter[int]) -> None:
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        if len(data) >= 4:
            rcodes[data[3] & 0xF] += 1


if __name__ == "__main__":
    sys.exit(main())
