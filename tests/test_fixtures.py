"""The upstream fixtures answer, misbehave and clean up as documented."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests import nsd as nsd_module
from tests.fakes import Call, ScriptedUpstream
from tests.nsd import BIG_A_COUNT, BIG_TXT_COUNT, CORP_ZONE, NEGATIVE_TTL, NsdServer

pytestmark = pytest.mark.integration

TIMEOUT = 2.0


def _udp(
    host: str, port: int, name: str, rdtype: str, **make_query_args: object
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **make_query_args)  # type: ignore[arg-type]
    return dns.query.udp(query, host, port=port, timeout=TIMEOUT)


def _tcp(host: str, port: int, name: str, rdtype: str) -> dns.message.Message:
    return dns.query.tcp(dns.message.make_query(name, rdtype), host, port=port, timeout=TIMEOUT)


def _answers(reply: dns.message.Message, rdtype: str) -> list[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(rd.to_text() for rrset in reply.answer if rrset.rdtype == wanted for rd in rrset)


def _soa_minimum(reply: dns.message.Message) -> int:
    (soa,) = [rrset for rrset in reply.authority if rrset.rdtype == dns.rdatatype.SOA]
    return int(soa[0].minimum)


def _dig_short(host: str, port: int, name: str) -> list[str]:
    """``dig +short @host -p port name`` in a subprocess."""
    argv = ["dig", "+short", "+time=2", "+tries=1", f"@{host}", "-p", str(port), name]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
    return done.stdout.split()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def _raw_udp_exchange(host: str, port: int, wire: bytes, replies: int) -> list[bytes]:
    """Send ``wire`` and collect exactly ``replies`` datagrams (socket.timeout if fewer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(wire, (host, port))
        return [sock.recv(65535) for _ in range(replies)]


# -- ScriptedUpstream: answers ----------------------------------------------------------------


def test_scripted_answers_from_table(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10", ttl=60)
    reply = _udp(up.host, up.port, "www.example.test", "A")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert _answers(reply, "A") == ["192.0.2.10"]
    assert reply.answer[0].ttl == 60
    assert up.address == f"127.0.0.1:{up.port}"


def test_scripted_returns_every_record_of_a_set_and_chases_cname(
    scripted_upstream: ScriptedUpstream,
) -> None:
    up = (
        scripted_upstream.add("www.example.test", "A", "192.0.2.10")
        .add("www.example.test", "A", "192.0.2.20")
        .add("alias.example.test", "CNAME", "www.example.test")
        .add("example.test", "MX", "10 mail.example.test")
        .add("txt.example.test", "TXT", "hello world")
    )
    reply = _udp(up.host, up.port, "alias.example.test", "A")
    assert _answers(reply, "CNAME") == ["www.example.test."]
    assert _answers(reply, "A") == ["192.0.2.10", "192.0.2.20"]
    assert _answers(_udp(up.host, up.port, "example.test", "MX"), "MX") == ["10 mail.example.test."]
    assert _answers(_udp(up.host, up.port, "txt.example.test", "TXT"), "TXT") == ['"hello world"']


def test_scripted_nxdomain_carries_soa(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream
    reply = _udp(up.host, up.port, "missing.example.test", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.answer == []
    assert reply.authority[0].name.to_text() == "example.test."
    assert _soa_minimum(reply) == 60


def test_scripted_nodata_carries_soa(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    reply = _udp(up.host, up.port, "www.example.test", "AAAA")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer == []
    assert _soa_minimum(reply) == 60


def test_scripted_negative_ttl_is_configurable() -> None:
    with ScriptedUpstream(negative_ttl=7) as up:
        reply = _udp(up.host, up.port, "missing.example.test", "A")
        assert _soa_minimum(reply) == 7


def test_scripted_echoes_edns_and_do_bit(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    with_do = _udp(up.host, up.port, "www.example.test", "A", use_edns=0, want_dnssec=True)
    assert with_do.edns == 0
    assert with_do.ednsflags & dns.flags.DO
    plain = _udp(up.host, up.port, "www.example.test", "A")
    assert plain.edns == -1


# -- ScriptedUpstream: misbehaviour -----------------------------------------------------------


def test_scripted_delay(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10").delay(0.3)
    started = time.monotonic()
    reply = _udp(up.host, up.port, "www.example.test", "A")
    elapsed = time.monotonic() - started
    assert _answers(reply, "A") == ["192.0.2.10"]
    assert 0.3 <= elapsed < TIMEOUT


def test_scripted_drop_times_out_until_behave(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10").drop()
    query = dns.message.make_query("www.example.test", "A")
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(query, up.host, port=up.port, timeout=0.3)
    with pytest.raises(dns.exception.Timeout):
        dns.query.tcp(query, up.host, port=up.port, timeout=0.3)
    assert [(c.transport, c.qname) for c in up.calls] == [
        ("udp", "www.example.test"),
        ("tcp", "www.example.test"),
    ]
    up.behave()
    assert _answers(_udp(up.host, up.port, "www.example.test", "A"), "A") == ["192.0.2.10"]


def test_scripted_truncate_udp_but_full_tcp(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10").truncate()
    over_udp = _udp(up.host, up.port, "www.example.test", "A")
    assert over_udp.flags & dns.flags.TC
    assert over_udp.answer == []
    over_tcp = _tcp(up.host, up.port, "www.example.test", "A")
    assert not over_tcp.flags & dns.flags.TC
    assert _answers(over_tcp, "A") == ["192.0.2.10"]


def test_scripted_large_answer_truncates_like_a_real_server(
    scripted_upstream: ScriptedUpstream,
) -> None:
    up = scripted_upstream.large(40, name="big.example.test", qtype="A")
    classic = _udp(up.host, up.port, "big.example.test", "A")  # no EDNS: 512-byte limit
    assert classic.flags & dns.flags.TC
    assert classic.answer == []
    with_edns = _udp(up.host, up.port, "big.example.test", "A", use_edns=0, payload=1232)
    assert not with_edns.flags & dns.flags.TC
    assert len(_answers(with_edns, "A")) == 40
    over_tcp = _tcp(up.host, up.port, "big.example.test", "A")
    assert len(_answers(over_tcp, "A")) == 40
    assert len(over_tcp.to_wire()) > 512


def test_scripted_wrong_id(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10").wrong_id()
    query = dns.message.make_query("www.example.test", "A")
    (reply,) = _raw_udp_exchange(up.host, up.port, query.to_wire(), 1)
    assert struct.unpack("!H", reply[:2])[0] == (query.id + 1) & 0xFFFF
    with pytest.raises(dns.query.BadResponse):
        dns.query.udp(query, up.host, port=up.port, timeout=TIMEOUT)


def test_scripted_wrong_id_then_correct(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    up.wrong_id(then_correct=True)
    query = dns.message.make_query("www.example.test", "A")
    first, second = _raw_udp_exchange(up.host, up.port, query.to_wire(), 2)
    assert dns.message.from_wire(first).id != query.id
    assert dns.message.from_wire(second).id == query.id
    reply = dns.query.udp(query, up.host, port=up.port, timeout=TIMEOUT, ignore_errors=True)
    assert _answers(reply, "A") == ["192.0.2.10"]


def test_scripted_wrong_question(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10").wrong_question()
    query = dns.message.make_query("www.example.test", "A")
    (wire,) = _raw_udp_exchange(up.host, up.port, query.to_wire(), 1)
    reply = dns.message.from_wire(wire)
    assert reply.id == query.id
    assert reply.question[0].name.to_text() == "wrong.www.example.test."
    assert not query.is_response(reply)


@pytest.mark.parametrize(
    ("method", "rcode"),
    [
        pytest.param("servfail", dns.rcode.SERVFAIL, id="servfail"),
        pytest.param("refused", dns.rcode.REFUSED, id="refused"),
    ],
)
def test_scripted_error_rcodes(
    scripted_upstream: ScriptedUpstream, method: str, rcode: dns.rcode.Rcode
) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    getattr(up, method)()
    for reply in (
        _udp(up.host, up.port, "www.example.test", "A"),
        _tcp(up.host, up.port, "www.example.test", "A"),
    ):
        assert reply.rcode() == rcode
        assert reply.answer == []


def test_scripted_garbage(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10").garbage(keep_id=True)
    query = dns.message.make_query("www.example.test", "A")
    (wire,) = _raw_udp_exchange(up.host, up.port, query.to_wire(), 1)
    assert 12 <= len(wire) <= 64
    assert wire[:2] == query.id.to_bytes(2, "big")


def test_scripted_per_name_override(scripted_upstream: ScriptedUpstream) -> None:
    up = (
        scripted_upstream.add("www.example.test", "A", "192.0.2.10")
        .add("bad.example.test", "A", "192.0.2.66")
        .servfail(name="bad.example.test")
    )
    assert _udp(up.host, up.port, "bad.example.test", "A").rcode() == dns.rcode.SERVFAIL
    assert _answers(_udp(up.host, up.port, "www.example.test", "A"), "A") == ["192.0.2.10"]
    up.behave(name="bad.example.test")
    assert _answers(_udp(up.host, up.port, "bad.example.test", "A"), "A") == ["192.0.2.66"]


# -- ScriptedUpstream: calls, TCP framing, robustness, lifecycle ------------------------------


def test_scripted_records_calls(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    udp_query = dns.message.make_query("WWW.Example.TEST.", "A", use_edns=0, want_dnssec=True)
    dns.query.udp(udp_query, up.host, port=up.port, timeout=TIMEOUT)
    tcp_query = dns.message.make_query("other.example.test", "AAAA")
    dns.query.tcp(tcp_query, up.host, port=up.port, timeout=TIMEOUT)

    first, second = up.calls
    assert first == Call(
        transport="udp",
        qname="www.example.test",
        qtype="A",
        id=udp_query.id,
        src=first.src,
        has_edns=True,
        do=True,
        wire=udp_query.to_wire(),
    )
    assert first.src[0] == "127.0.0.1" and first.src[1] > 0
    assert (second.transport, second.qname, second.qtype) == ("tcp", "other.example.test", "AAAA")
    assert (second.id, second.has_edns, second.do) == (tcp_query.id, False, False)
    assert up.calls_for("www.example.test.") == [first]
    up.clear_calls()
    assert up.calls == []


def test_scripted_tcp_several_queries_per_connection(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    names = ["www.example.test", "missing.example.test", "www.example.test"]
    rcodes = []
    with socket.create_connection((up.host, up.port), timeout=TIMEOUT) as sock:
        for name in names:
            query = dns.message.make_query(name, "A")
            dns.query.send_tcp(sock, query, expiration=time.time() + TIMEOUT)
            reply, _ = dns.query.receive_tcp(sock, expiration=time.time() + TIMEOUT)
            assert reply.id == query.id
            rcodes.append(reply.rcode())
    assert rcodes == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.NOERROR]
    assert len({c.src for c in up.calls}) == 1  # one connection


def test_scripted_survives_malformed_queries(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    header_only = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # QDCOUNT=1, no question
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(b"\x00", (up.host, up.port))
        sock.sendto(header_only, (up.host, up.port))
        formerr = sock.recv(65535)
    assert formerr[:2] == b"\x12\x34"
    assert formerr[2] & 0x80  # QR
    assert formerr[3] & 0x0F == dns.rcode.FORMERR
    with socket.create_connection((up.host, up.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"\x00\x03abc" + len(header_only).to_bytes(2, "big") + header_only)
        framed = _recv_exactly(sock, 14)  # nothing for "abc", FORMERR for the header
    assert framed[:4] == b"\x00\x0c\x12\x34"
    assert framed[5] & 0x0F == dns.rcode.FORMERR
    assert _answers(_udp(up.host, up.port, "www.example.test", "A"), "A") == ["192.0.2.10"]
    assert [c.qname for c in up.calls] == ["", "", "", "", "www.example.test"]
    assert [c.transport for c in up.calls] == ["udp", "udp", "tcp", "tcp", "udp"]
    assert up.errors == []


def test_scripted_config_changes_are_thread_safe(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream

    def add_many(prefix: str) -> None:
        for i in range(200):
            up.add(f"{prefix}{i}.example.test", "A", f"192.0.2.{i % 250 + 1}")

    writers = [threading.Thread(target=add_many, args=(p,)) for p in ("a", "b")]
    for writer in writers:
        writer.start()
    replies = [_udp(up.host, up.port, f"a{i}.example.test", "A") for i in range(0, 200, 20)]
    for writer in writers:
        writer.join(TIMEOUT)
    assert all(r.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) for r in replies)
    assert _answers(_udp(up.host, up.port, "b199.example.test", "A"), "A") == ["192.0.2.200"]


def test_scripted_stop_closes_sockets_and_thread() -> None:
    up = ScriptedUpstream().start()
    port = up.port
    with socket.create_connection((up.host, port), timeout=TIMEOUT):
        pass
    up.stop()
    up.stop()  # idempotent
    assert not any(t.name == f"ScriptedUpstream-{port}" for t in threading.enumerate())
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))  # raises EADDRINUSE if still held


def test_scripted_on_ipv6_loopback() -> None:
    with ScriptedUpstream(host="::1") as up:
        up.add("www.example.test", "AAAA", "2001:db8::10")
        assert up.address == f"[::1]:{up.port}"
        assert _answers(_udp("::1", up.port, "www.example.test", "AAAA"), "AAAA") == [
            "2001:db8::10"
        ]
        assert _answers(_tcp("::1", up.port, "www.example.test", "AAAA"), "AAAA") == [
            "2001:db8::10"
        ]
        assert up.calls[0].src[0] == "::1"


@pytest.mark.asyncio
async def test_scripted_serves_async_clients(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10").delay(0.1)
    queries = [dns.message.make_query("www.example.test", "A") for _ in range(5)]
    replies = await asyncio.wait_for(
        asyncio.gather(
            *(dns.asyncquery.udp(q, up.host, port=up.port, timeout=TIMEOUT) for q in queries)
        ),
        timeout=TIMEOUT * 2,
    )
    assert [_answers(r, "A") for r in replies] == [["192.0.2.10"]] * 5
    assert len(up.calls) == 5


def test_scripted_serves_a_subprocess(scripted_upstream: ScriptedUpstream) -> None:
    up = scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    assert _dig_short(up.host, up.port, "www.example.test") == ["192.0.2.10"]


# -- NsdServer --------------------------------------------------------------------------------


def test_nsd_answers_default_zone(nsd_upstream: NsdServer) -> None:
    ns = nsd_upstream
    assert ns.address == f"127.0.0.1:{ns.port}"
    www = _udp(ns.host, ns.port, "www.example.test", "A")
    assert www.flags & dns.flags.AA
    assert _answers(www, "A") == ["192.0.2.10"]
    assert _answers(_udp(ns.host, ns.port, "www.example.test", "AAAA"), "AAAA") == ["2001:db8::10"]
    alias = _udp(ns.host, ns.port, "alias.example.test", "A")
    assert _answers(alias, "CNAME") == ["www.example.test."]
    assert _answers(alias, "A") == ["192.0.2.10"]
    assert _answers(_udp(ns.host, ns.port, "anything.wild.example.test", "A"), "A") == [
        "192.0.2.99"
    ]
    short = _udp(ns.host, ns.port, "short.example.test", "A")
    assert (_answers(short, "A"), short.answer[0].ttl) == (["192.0.2.11"], 5)
    assert _answers(_udp(ns.host, ns.port, "txt.example.test", "TXT"), "TXT") == [
        '"v=dnsfilter-test" "hello world"'
    ]
    assert _answers(_udp(ns.host, ns.port, "intranet.corp.test", "A"), "A") == ["10.1.2.3"]


def test_nsd_nxdomain_carries_soa(nsd_upstream: NsdServer) -> None:
    reply = _udp(nsd_upstream.host, nsd_upstream.port, "missing.example.test", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert _soa_minimum(reply) == NEGATIVE_TTL


def test_nsd_big_answer_truncated_over_udp_full_over_tcp(nsd_upstream: NsdServer) -> None:
    ns = nsd_upstream
    over_udp = _udp(ns.host, ns.port, "big.example.test", "TXT", use_edns=0, payload=1232)
    assert over_udp.flags & dns.flags.TC
    over_tcp = _tcp(ns.host, ns.port, "big.example.test", "TXT")
    assert not over_tcp.flags & dns.flags.TC
    assert len(_answers(over_tcp, "TXT")) == BIG_TXT_COUNT
    assert len(over_tcp.to_wire()) > 1232
    classic = _udp(ns.host, ns.port, "big.example.test", "A")  # no EDNS: 512 bytes
    assert classic.flags & dns.flags.TC
    assert len(_answers(_tcp(ns.host, ns.port, "big.example.test", "A"), "A")) == BIG_A_COUNT


def test_nsd_does_not_rate_limit(nsd_upstream: NsdServer) -> None:
    ns = nsd_upstream
    query = dns.message.make_query("www.example.test", "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(300):  # NSD's default RRL allows 200 identical answers per second
            reply = dns.query.udp(query, ns.host, port=ns.port, timeout=TIMEOUT, sock=sock)
            assert not reply.flags & dns.flags.TC
            assert _answers(reply, "A") == ["192.0.2.10"]


def test_nsd_dig_short(nsd_upstream: NsdServer) -> None:
    assert _dig_short("127.0.0.1", nsd_upstream.port, "www.example.test") == ["192.0.2.10"]


def test_nsd_serves_ipv4_and_ipv6_loopback() -> None:
    with NsdServer(zones={"corp.test": CORP_ZONE}, hosts=("127.0.0.1", "::1")) as ns:
        assert ns.addresses == [f"127.0.0.1:{ns.port}", f"[::1]:{ns.port}"]
        for host in ("127.0.0.1", "::1"):
            assert _answers(_udp(host, ns.port, "intranet.corp.test", "A"), "A") == ["10.1.2.3"]
            assert _answers(_tcp(host, ns.port, "intranet.corp.test", "A"), "A") == ["10.1.2.3"]
        workdir = ns.workdir
        assert workdir is not None and workdir.is_dir()
    assert not workdir.exists()


def test_nsd_rejects_bad_zone_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Path] = []
    real_mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(prefix: str) -> str:
        path = real_mkdtemp(prefix=prefix)
        made.append(Path(path))
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    bad = "$ORIGIN bad.test.\n@ IN SOA ns1 hostmaster 1 2 3 4 5\nwww IN A not-an-address\n"
    with pytest.raises(RuntimeError, match=r"zone bad\.test rejected"):
        NsdServer(zones={"bad.test": bad}).start()
    assert len(made) == 1 and not made[0].exists()


def test_nsd_missing_binary_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(nsd_module, "NSD_LOCATIONS", ())
    with pytest.raises(RuntimeError, match=r"nsd not installed: apt-get install nsd"):
        NsdServer()
