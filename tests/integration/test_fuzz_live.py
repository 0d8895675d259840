"""The live fuzz test: 100,000 hostile datagrams (and some TCP abuse) at a running server.

Packets come from tests/dnsfuzz.py (bad compression pointers and pointer loops, huge section
counts, truncated and misplaced OPT records, oversized labels, random bytes, mutated valid
queries, odd headers, and good queries for fresh names that are forwarded). They are sent in
bursts at a bounded rate. Afterwards the server must be alive with no traceback in its log,
have nothing left in flight, and still answer correctly.

DNSFILTER_FUZZ_PACKETS and DNSFILTER_FUZZ_SEED change the count (default 100000) and the seed.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections import Counter

import dns.rcode
import pytest

from tests import dnsfuzz
from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import DnsFilter, wait_until

pytestmark = pytest.mark.integration

PACKETS = int(os.environ.get("DNSFILTER_FUZZ_PACKETS", "100000"))
SEED = int(os.environ.get("DNSFILTER_FUZZ_SEED", "20240607"))
#: Packets per burst, and bursts per second: 16,000 packets a second at most.
BURST = 200
BURSTS_PER_SECOND = 80
TCP_CONNECTIONS = 20
TCP_MESSAGES = 100  #: per pipelined connection


def _queries_total(server: DnsFilter) -> Counter[str]:
    """dnsfilter_queries_total summed by result."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: Counter[str] = Counter()
    for family in text_string_to_metric_families(server.http_get("/metrics")[1]):
        if family.name == "dnsfilter_queries":
            for sample in family.samples:
                if sample.name == "dnsfilter_queries_total":
                    totals[sample.labels["result"]] += int(sample.value)
    return totals


def _fire_udp(port: int, rng: random.Random, count: int) -> tuple[Counter[str], int]:
    """Send count packets from a few sockets in paced bursts; return kinds sent, replies read."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
    for sock in sockets:
        sock.setblocking(False)
    kinds: Counter[str] = Counter()
    replies = 0
    target = ("127.0.0.1", port)
    interval = 1.0 / BURSTS_PER_SECOND
    next_burst = time.monotonic()
    try:
        sent = 0
        while sent < count:
            for _ in range(min(BURST, count - sent)):
                kind, data = dnsfuzz.packet(rng)
                kinds[kind] += 1
                try:
                    sockets[sent % len(sockets)].sendto(data, target)
                except BlockingIOError:
                    kinds["send_would_block"] += 1
                sent += 1
            for sock in sockets:
                replies += _drain(sock)
            next_burst += interval
            delay = next_burst - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        time.sleep(0.2)
        for sock in sockets:
            replies += _drain(sock)
    finally:
        for sock in sockets:
            sock.close()
    return kinds, replies


def _drain(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            sock.recv(65535)
        except BlockingIOError:
            return count
        count += 1


def _abuse_tcp(port: int, rng: random.Random) -> int:
    """Pipelined hostile messages, then the stream-level tricks; return messages sent."""
    sent = 0
    for n in range(TCP_CONNECTIONS):
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            stream = b""
            for _ in range(TCP_MESSAGES):
                _, data = dnsfuzz.packet(rng)
                data = data[:65535]
                stream += len(data).to_bytes(2, "big") + data
                sent += 1
            trick = n % 5
            if trick == 0:
                stream += b"\x00\x00"  # an empty message
            elif trick == 1:
                stream += b"\xff\xff" + b"short"  # promises 65535 octets, then hangs up
            elif trick == 2:
                stream += b"\x00"  # half a length prefix
            elif trick == 3:
                stream += dnsfuzz.random_bytes(rng)  # no framing at all
            sock.sendall(stream)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(3)
            try:
                while sock.recv(65535):
                    pass
            except (TimeoutError, ConnectionResetError):
                pass
    return sent


def test_a_hundred_thousand_hostile_packets(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    config = base_config(
        [scripted_upstream.address], server={"tcp_idle_timeout": 2}, upstream={"timeout": 1}
    )
    server = start_dnsfilter(config)
    rng = random.Random(SEED)
    started = time.monotonic()
    kinds, replies = _fire_udp(server.port, rng, PACKETS)
    tcp_sent = _abuse_tcp(server.port, rng)
    took = time.monotonic() - started

    assert server.process is not None and server.process.poll() is None, server.log
    # Nothing stuck: every resolution finished or timed out, every TCP connection closed.
    assert wait_until(lambda: server.metric("dnsfilter_inflight_queries") == 0, 10), (
        f"{server.metric('dnsfilter_inflight_queries')} queries still in flight"
    )
    results = _queries_total(server)
    print(
        f"\nfuzz: {PACKETS} UDP packets (seed {SEED}) and {tcp_sent} TCP messages in {took:.1f}s;"
        f" {replies} UDP replies; kinds {dict(kinds)}; server counted {dict(results)}"
    )
    # Still right: a forwarded, a blocked and an ANY answer, over UDP and TCP.
    assert server.udp("www.example.test").answer[0][0].to_text() == "192.0.2.10"
    assert server.tcp("www.example.test").answer[0][0].to_text() == "192.0.2.10"
    assert server.udp("banned.example.test").answer[0][0].to_text() == "0.0.0.0"
    assert server.udp("www.example.test", "ANY").answer[0][0].to_text() == '"RFC8482" ""'
    assert server.udp("nothing-here.example.test").rcode() == dns.rcode.NXDOMAIN
    # The server saw most of it: every kind of outcome. What the kernel drops depends on
    # the machine's load (91 % seen at load 5 on 2 cores, 99 % quiet); a server that stalled
    # or died mid-run sees far less than half.
    assert {"formerr", "dropped", "notimp", "forwarded", "minimal"} <= set(results)
    assert sum(results.values()) >= 0.5 * (PACKETS + tcp_sent)
    # The fixture checks the log for tracebacks and the exit status once the test is done.
