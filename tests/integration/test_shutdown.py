"""Graceful stop: on SIGTERM dnsfilter stops taking queries, answers those in flight within
server.shutdown_timeout, flushes the audit log and exits 0; started again at once on the same
port, it serves the same config and lists."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import TIMEOUT, DnsFilter, make, wait_until

pytestmark = pytest.mark.integration

UPSTREAM_DELAY = 1.0


def _send_udp(server: DnsFilter, qname: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT + UPSTREAM_DELAY)
    sock.sendto(make(qname).to_wire(), ("127.0.0.1", server.port))
    return sock


def _send_tcp(server: DnsFilter, qnames: list[str]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT + UPSTREAM_DELAY)
    for qname in qnames:
        wire = make(qname).to_wire()
        sock.sendall(len(wire).to_bytes(2, "big") + wire)
    return sock


def _read_tcp(sock: socket.socket) -> dns.message.Message:
    length = int.from_bytes(_recv_exactly(sock, 2), "big")
    return dns.message.from_wire(_recv_exactly(sock, length))


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed early")
        data += chunk
    return data


def _audited(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT qname, result FROM events ORDER BY id").fetchall()
    return [(str(qname), str(result)) for qname, result in rows]


def test_sigterm_answers_the_queries_in_flight_then_exits(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    scripted_upstream.add("*.slow.example.test", "A", "192.0.2.80", ttl=60)
    scripted_upstream.delay(UPSTREAM_DELAY)
    config = base_config(
        [scripted_upstream.address],
        server={"shutdown_timeout": 30},  # far beyond the exit we expect at about 1 s
        upstream={"timeout": 3},
        audit={"log_allowed": True, "flush_interval": 60},
    )
    server = start_dnsfilter(config)
    assert server.udp("banned.example.test").rcode() == dns.rcode.NOERROR  # audited: blocked
    udp = [_send_udp(server, f"u{n}.slow.example.test") for n in range(20)]
    tcp = _send_tcp(server, ["t1.slow.example.test", "t2.slow.example.test"])
    scripted_upstream.wait_for_calls(22, timeout=10)
    assert server.process is not None
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)

    # Stopped taking queries: one sent now gets no answer, even one needing no upstream.
    assert wait_until(lambda: "queries in flight" in server.log, TIMEOUT)
    late = _send_udp(server, "banned.example.test")
    late.settimeout(0.3)
    with pytest.raises(TimeoutError):
        late.recv(512)

    # ...but every query already in flight is answered.
    for sock in udp:
        reply = dns.message.from_wire(sock.recv(512))
        assert reply.rcode() == dns.rcode.NOERROR
        assert [rrset[0].to_text() for rrset in reply.answer] == ["192.0.2.80"]
    assert [_read_tcp(tcp).answer[0][0].to_text() for _ in range(2)] == ["192.0.2.80"] * 2
    for sock in (*udp, tcp, late):
        sock.close()

    assert server.process.wait(15) == 0
    took = time.monotonic() - signalled
    assert took < 10 * UPSTREAM_DELAY, f"exit took {took:.1f}s: waited for shutdown_timeout?"
    assert "answered the 22 queries in flight" in server.log
    # The audit log was flushed last: the blocked query and all 22 forwarded ones are in it
    # (flush_interval 60 s, so nothing was written before the stop).
    events = _audited(tmp_path / "audit.sqlite3")
    assert ("banned.example.test", "blocked") in events
    forwarded = {qname for qname, result in events if result == "forwarded"}
    assert forwarded == {f"u{n}.slow.example.test" for n in range(20)} | {
        "t1.slow.example.test",
        "t2.slow.example.test",
    }


def test_queries_still_in_flight_at_the_deadline_are_cancelled(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.drop()
    config = base_config(
        [scripted_upstream.address], server={"shutdown_timeout": 0.5}, upstream={"timeout": 30}
    )
    server = start_dnsfilter(config)
    sockets = [_send_udp(server, f"n{n}.example.test") for n in range(5)]
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    scripted_upstream.wait_for_calls(5, timeout=10)
    assert server.process is not None
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
    took = time.monotonic() - signalled
    # 10x the shutdown timeout, well short of the upstream's 30 s the queries would wait.
    assert took < 5.0, f"exit took {took:.1f}s with shutdown_timeout 0.5"
    assert "stopped with 5 queries unanswered after 0.5s" in server.log
    # An idle TCP connection did not hold the stop up; it was closed.
    idle.settimeout(TIMEOUT)
    assert idle.recv(16) == b""
    for sock in (*sockets, idle):
        sock.close()


def test_a_fast_restart_on_the_same_port_keeps_config_and_lists(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    first = start_dnsfilter(base_config([scripted_upstream.address]))
    port, v6_port = first.port, first.address(socket.AF_INET6)[1]
    tcp = _send_tcp(first, [])  # a client connected across the restart
    assert first.stop() == 0
    tcp.close()
    listen = {"listen": [f"127.0.0.1:{port}", f"[::1]:{v6_port}"]}
    second = start_dnsfilter(base_config([scripted_upstream.address], server=listen))
    assert second.port == port
    assert second.udp("banned.example.test").answer[0][0].to_text() == "0.0.0.0"
    assert second.udp("canary.example.test").rcode() == dns.rcode.NXDOMAIN  # per-entry mode
    assert second.tcp("www.example.test").answer[0][0].to_text() == "192.0.2.10"
