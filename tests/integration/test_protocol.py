"""Bad input over real sockets, and RFC 7766 TCP behaviour."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time

import dns.message
import dns.rcode
import pytest

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import DnsFilter, make, rdata_texts, wait_until

pytestmark = pytest.mark.integration

_QUERY = make("banned.example.test").to_wire()


def _header(msg_id: int, flags: int, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", msg_id, flags, qd, an, ns, ar)


def _rcode(reply: bytes) -> int:
    flags = struct.unpack_from("!H", reply, 2)[0]
    return int(flags & 0xF)


_QUESTION = _QUERY[12:]
_OPT_V1 = b"\x00\x00\x29\x04\xd0\x00\x01\x00\x00\x00\x00"  # EDNS version 1


@pytest.mark.parametrize(
    ("packet", "rcode"),
    [
        pytest.param(b"", None, id="empty"),
        pytest.param(b"\x12\x34\x01\x00\x00", None, id="shorter-than-header"),
        pytest.param(_header(7, 0x8000) + _QUESTION, None, id="a-response"),
        pytest.param(_header(7, 0x0100, qd=0), dns.rcode.FORMERR, id="no-question"),
        pytest.param(_header(7, 0x0100, qd=2) + _QUESTION * 2, dns.rcode.FORMERR, id="two-q"),
        pytest.param(_header(7, 0x0100) + _QUESTION[:5], dns.rcode.FORMERR, id="cut-name"),
        pytest.param(
            _header(7, 0x0100) + b"\xc0\x0c\x00\x01\x00\x01",
            dns.rcode.FORMERR,
            id="pointer-loop-in-question",
        ),
        pytest.param(
            _header(7, 0x0100) + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
            dns.rcode.FORMERR,
            id="label-too-long",
        ),
        pytest.param(
            _header(7, 0x0100, ar=1) + _QUESTION + b"\x00\x00\x29", dns.rcode.FORMERR, id="cut-opt"
        ),
        pytest.param(_header(7, 0x2100) + _QUESTION, dns.rcode.NOTIMP, id="opcode-notify"),
        pytest.param(_header(7, 0x1100) + _QUESTION, dns.rcode.NOTIMP, id="opcode-status"),
    ],
)
def test_malformed_packets(
    start_dnsfilter: StartDnsFilter,
    scripted_upstream: ScriptedUpstream,
    packet: bytes,
    rcode: int | None,
) -> None:
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    reply = server.raw_udp(packet, wait=0.5 if rcode is None else 2.0)
    if rcode is None:
        assert reply is None, "dropped packets get no answer"
    else:
        assert reply is not None and reply[:2] == b"\x00\x07"
        assert _rcode(reply) == rcode
    assert rdata_texts(server.udp("banned.example.test")) == ["0.0.0.0"], "still serving"
    assert scripted_upstream.calls == []


def test_bad_edns_version_gets_badvers(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    reply = server.raw_udp(_header(9, 0x0100, ar=1) + _QUESTION + _OPT_V1)
    assert reply is not None
    message = dns.message.from_wire(reply)
    assert message.rcode() == dns.rcode.BADVERS


def test_random_garbage_never_kills_the_server(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    server = start_dnsfilter(base_config([scripted_upstream.address]))
    rng = random.Random(2026)
    valid = make("x.banned.example.test", edns=True).to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(3000):
            data = bytearray(valid)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                del data[rng.randrange(len(data)) :]
            sock.sendto(bytes(data), ("127.0.0.1", server.port))
    # Alive once it has read its way through the garbage (queued ahead of this query).
    assert wait_until(lambda: rdata_texts(server.udp("banned.example.test")) == ["0.0.0.0"])


def _tcp_send(sock: socket.socket, wire: bytes) -> None:
    sock.sendall(len(wire).to_bytes(2, "big") + wire)


def _tcp_recv(sock: socket.socket) -> dns.message.Message:
    length = int.from_bytes(_recv_exact(sock, 2), "big")
    return dns.message.from_wire(_recv_exact(sock, length))


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def test_tcp_pipelined_queries_on_one_connection(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    # 1.5 s late: the other two are answered long before, however loaded the machine.
    scripted_upstream.add("slow.example.test", "A", "192.0.2.1").delay(
        1.5, name="slow.example.test"
    )
    scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    server = start_dnsfilter(base_config([scripted_upstream.address], upstream={"timeout": 5}))
    queries = {
        "slow.example.test": make("slow.example.test"),
        "www.example.test": make("www.example.test"),
        "banned.example.test": make("banned.example.test"),
    }
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        for query in queries.values():
            _tcp_send(sock, query.to_wire())
        replies = [_tcp_recv(sock) for _ in queries]
    by_name = {r.question[0].name.to_text(omit_final_dot=True): r for r in replies}
    assert rdata_texts(by_name["slow.example.test"]) == ["192.0.2.1"]
    assert rdata_texts(by_name["www.example.test"]) == ["192.0.2.10"]
    assert rdata_texts(by_name["banned.example.test"]) == ["0.0.0.0"]
    # The slow one finished last: answers go out as they are ready, not in order.
    assert replies[-1].question[0].name.to_text() == "slow.example.test."
    for name, query in queries.items():
        assert by_name[name].id == query.id


def test_tcp_idle_timeout_closes_connection(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    config = base_config([scripted_upstream.address], server={"tcp_idle_timeout": 0.5})
    server = start_dnsfilter(config)
    started = time.monotonic()  # whenever the server's idle timer starts, it is after this
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        _tcp_send(sock, _QUERY)
        assert rdata_texts(_tcp_recv(sock)) == ["0.0.0.0"]
        assert sock.recv(1) == b"", "the server closes an idle connection"
        # Not before the timeout; the upper bound, 10x it, only catches a hang.
        assert 0.5 <= time.monotonic() - started < 5.0


def test_tcp_connection_cap(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    config = base_config([scripted_upstream.address], server={"max_tcp_connections": 2})
    server = start_dnsfilter(config)
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=3) for _ in range(2)]
    try:
        for sock in held:  # make sure both are accepted and counted
            _tcp_send(sock, _QUERY)
            _tcp_recv(sock)
        # Closed as it is accepted: the query may then meet a closed socket (a reset).
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=3) as extra,
            contextlib.suppress(ConnectionResetError, BrokenPipeError),
        ):
            _tcp_send(extra, _QUERY)
            assert extra.recv(2) == b"", "a connection over the cap is closed unanswered"
    finally:
        for sock in held:
            sock.close()
    # Once the others are gone, new connections are served again.
    assert _wait_for_tcp_answer(server)


def _wait_for_tcp_answer(server: DnsFilter) -> bool:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
            _tcp_send(sock, _QUERY)
            try:
                return bool(_tcp_recv(sock).answer)
            except ConnectionError:
                time.sleep(0.05)
    return False
