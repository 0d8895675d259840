"""DNS over TLS to a real TLS-speaking upstream: unbound on loopback with a test certificate.

unbound answers www.example.test itself and forwards slow.test to a ScriptedUpstream that
answers after a delay (to hold queries in flight). A TcpProxy between dnsfilter and unbound
counts the TCP connections. The upstream group is driven in-process (async tests) where the
test needs to look inside the pool, and through `dnsfilter serve` end to end otherwise.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.rcode
import pytest

from dnsfilter.config import HostPort, UpstreamServer
from dnsfilter.datapath.upstream import UpstreamGroup
from dnsfilter.datapath.wire import Query, Transport, make_query, parse_query
from dnsfilter.errors import UpstreamError
from dnsfilter.lists.sources import DownloadError, HostResolver
from dnsfilter.observe.metrics import UpstreamStats
from tests.certs import CertAuthority, ServerCert
from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import rdata_texts
from tests.proxy import TcpProxy
from tests.unbound import DOT_NAME, UnboundDot

pytestmark = pytest.mark.integration

SLOW_DELAY = 0.3
#: How long slow.test names take in the pipelining test: ten in a row would take 6 s.
PIPELINE_DELAY = 0.6
_names = itertools.count()


def unique(zone: str = "slow.test") -> str:
    """A name unbound has not cached yet."""
    return f"n{next(_names)}-{time.monotonic_ns()}.{zone}"


@pytest.fixture(scope="module")
def certs(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[CertAuthority, CertAuthority, ServerCert]:
    """(the CA that signed unbound's certificate, another CA, unbound's certificate)."""
    base = tmp_path_factory.mktemp("dot-certs")
    ca = CertAuthority.create(base / "ca")
    other = CertAuthority.create(base / "other-ca", name="some other CA")
    return ca, other, ca.issue(base / "server", dns_names=[DOT_NAME], ips=["127.0.0.1"])


@pytest.fixture(scope="module")
def slow_upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream(zone="slow.test") as upstream:
        upstream.add("*.slow.test", "A", "192.0.2.77", ttl=300).delay(SLOW_DELAY)
        yield upstream


@pytest.fixture(scope="module")
def dot(
    certs: tuple[CertAuthority, CertAuthority, ServerCert], slow_upstream: ScriptedUpstream
) -> Iterator[UnboundDot]:
    records = ["www.example.test. 300 IN A 192.0.2.10", "other.example.test. 300 IN A 192.0.2.11"]
    forward = {"slow.test": f"127.0.0.1@{slow_upstream.port}"}
    with UnboundDot(certs[2], local_data=records, forward=forward) as server:
        yield server


@pytest.fixture
def proxy(dot: UnboundDot) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", dot.port) as relay:
        yield relay


def dot_server(port: int, ca_file: Path | None, tls_name: str | None = DOT_NAME) -> UpstreamServer:
    return UpstreamServer(
        HostPort("127.0.0.1", port),
        tls=True,
        tls_name=tls_name,
        ca_file=str(ca_file) if ca_file else None,
    )


def client_query(qname: str) -> Query:
    return parse_query(make_query(qname, 1, 0x4242), ("127.0.0.1", 5353), Transport.UDP)


def config_with(servers: list[Any]) -> dict[str, Any]:
    """base_config with upstream servers in any config form (strings or mappings)."""
    config = base_config([])
    config["upstream"]["servers"] = servers
    return config


def dot_entry(port: int, ca_file: Path, **extra: Any) -> dict[str, Any]:
    return {"address": f"tls://127.0.0.1:{port}#{DOT_NAME}", "ca_file": str(ca_file), **extra}


# ---------------------------------------------------------------------------------------
# End to end: dnsfilter serve forwarding over TLS


def test_answers_over_dot(
    start_dnsfilter: StartDnsFilter,
    dot: UnboundDot,
    proxy: TcpProxy,
    certs: tuple[CertAuthority, CertAuthority, ServerCert],
) -> None:
    before = dot.stats().get("num.query.tls", 0.0)
    server = start_dnsfilter(config_with([dot_entry(proxy.port, certs[0].pem)]))
    reply = server.udp("www.example.test", edns=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert rdata_texts(reply) == ["192.0.2.10"]
    for name in ("other.example.test", "missing.example.test", unique()):
        server.udp(name)
    assert dot.stats()["num.query.tls"] - before == 4, "every query went over TLS"
    label = f"tls://127.0.0.1:{proxy.port}"
    # www, other and the unique name answered NOERROR; missing NXDOMAIN: four tries in all.
    assert server.metric("dnsfilter_upstream_requests_total", upstream=label, rcode="NOERROR") == 3
    assert server.metric("dnsfilter_upstream_requests_total", upstream=label, rcode="NXDOMAIN") == 1
    assert server.metric("dnsfilter_upstream_up", upstream=label) == 1.0
    assert proxy.accepted == 1, "four queries, one TLS connection"


@pytest.mark.parametrize(
    "case",
    ["wrong-name", "untrusted-ca", "system-cas"],
)
def test_unverified_server_is_never_used(
    start_dnsfilter: StartDnsFilter,
    dot: UnboundDot,
    scripted_upstream: ScriptedUpstream,
    certs: tuple[CertAuthority, CertAuthority, ServerCert],
    case: str,
) -> None:
    ca, other, _ = certs
    entry: dict[str, Any] = {
        "wrong-name": {"address": f"tls://127.0.0.1:{dot.port}#wrong.dnsfilter.test",
                       "ca_file": str(ca.pem)},
        "untrusted-ca": dot_entry(dot.port, other.pem),
        "system-cas": {"address": f"tls://127.0.0.1:{dot.port}#{DOT_NAME}"},
    }[case]  # fmt: skip
    scripted_upstream.add("www.example.test", "A", "198.51.100.1")
    before = dot.stats().get("num.query.tls", 0.0)
    server = start_dnsfilter(config_with([entry, scripted_upstream.address]))
    reply = server.udp("www.example.test")
    assert rdata_texts(reply) == ["198.51.100.1"], "failover to the plain upstream"
    assert dot.stats().get("num.query.tls", 0.0) == before, "no query sent unverified"
    label = f"tls://127.0.0.1:{dot.port}"
    assert server.metric("dnsfilter_upstream_requests_total", upstream=label, rcode="error") == 1
    assert server.metric("dnsfilter_upstream_up", upstream=label) == 0.0


def test_unverified_only_upstream_gives_servfail(
    start_dnsfilter: StartDnsFilter,
    dot: UnboundDot,
    certs: tuple[CertAuthority, CertAuthority, ServerCert],
) -> None:
    server = start_dnsfilter(config_with([dot_entry(dot.port, certs[1].pem)]))
    assert server.udp("www.example.test").rcode() == dns.rcode.SERVFAIL


def test_verified_against_the_address_without_a_name(
    start_dnsfilter: StartDnsFilter,
    dot: UnboundDot,
    certs: tuple[CertAuthority, CertAuthority, ServerCert],
) -> None:
    """Without tls_name the certificate must hold the address (IP SAN 127.0.0.1 here)."""
    entry = {"address": "127.0.0.1", "port": dot.port, "tls": True, "ca_file": str(certs[0].pem)}
    server = start_dnsfilter(config_with([entry]))
    assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.10"]


def test_misses_reuse_one_connection_and_survive_its_loss(
    start_dnsfilter: StartDnsFilter,
    proxy: TcpProxy,
    certs: tuple[CertAuthority, CertAuthority, ServerCert],
) -> None:
    server = start_dnsfilter(config_with([dot_entry(proxy.port, certs[0].pem)]))
    for _ in range(5):
        assert rdata_texts(server.udp(unique("example.test"))) == []  # NXDOMAIN, not cached
    assert proxy.accepted == 1
    proxy.drop_all()  # the connection dies between queries: the next one reconnects
    time.sleep(0.1)
    assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.10"]
    assert proxy.accepted == 2


# ---------------------------------------------------------------------------------------
# In-process: the pool itself


@pytest.mark.asyncio
async def test_concurrent_queries_are_pipelined_on_one_connection(
    proxy: TcpProxy,
    slow_upstream: ScriptedUpstream,
    certs: tuple[CertAuthority, CertAuthority, ServerCert],
) -> None:
    server = dot_server(proxy.port, certs[0].pem)
    stats = UpstreamStats()
    group = UpstreamGroup([server], timeout=3.0, dead_time=30, stats=stats)
    pool = group.tls_pools[server]
    names = [unique() for _ in range(10)]
    slow_upstream.delay(PIPELINE_DELAY)
    started = time.monotonic()
    tasks = [asyncio.create_task(group.forward(client_query(n))) for n in names]
    gathered = asyncio.gather(*tasks)
    loads: list[int] = []  # the most queries in flight on the pool's connections, one each
    while not gathered.done():
        current = [c.load for c in pool.connections]
        if sum(current) > sum(loads):
            loads = current
        await asyncio.wait([gathered], timeout=0.01)
    answers = await asyncio.wait_for(gathered, 8 * PIPELINE_DELAY)
    elapsed = time.monotonic() - started
    slow_upstream.delay(SLOW_DELAY)
    await group.close()
    assert loads == [10], "all ten in flight on one connection at once"
    assert all(a.scan.rcode == 0 and a.server == server.name for a in answers)
    assert elapsed < PIPELINE_DELAY * 5, f"together, not one after another ({elapsed:.2f}s)"
    assert (proxy.accepted, pool.opened) == (1, 1)
    assert stats.requests[(server.name, "NOERROR")] == 10
    assert {c.qname for c in slow_upstream.calls} >= set(names)


@pytest.mark.asyncio
async def test_sequential_queries_reuse_the_connection(
    proxy: TcpProxy, certs: tuple[CertAuthority, CertAuthority, ServerCert]
) -> None:
    server = dot_server(proxy.port, certs[0].pem)
    group = UpstreamGroup([server], timeout=3.0, dead_time=30)
    for _ in range(20):
        answer = await group.forward(client_query("www.example.test"))
        assert answer.scan.rcode == 0
    await group.close()
    assert proxy.accepted == 1
    assert group.tls_pools[server].opened == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("tls_name", "which_ca", "message"),
    [
        pytest.param("wrong.dnsfilter.test", 0, "Hostname mismatch", id="wrong-name"),
        pytest.param(
            DOT_NAME, 1, "self-signed certificate in certificate chain", id="untrusted-ca"
        ),
    ],
)
async def test_verification_failure_is_an_upstream_error(
    dot: UnboundDot,
    certs: tuple[CertAuthority, CertAuthority, ServerCert],
    tls_name: str,
    which_ca: int,
    message: str,
) -> None:
    server = dot_server(dot.port, certs[which_ca].pem, tls_name)
    group = UpstreamGroup([server], timeout=3.0, dead_time=30)
    with pytest.raises(UpstreamError, match=message):
        await group.forward(client_query("www.example.test"))
    assert group.tls_pools[server].opened == 0
    await group.close()


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_unreadable_ca_file_is_a_config_error(tmp_path: Path, command: str) -> None:
    (tmp_path / "bad-ca.pem").write_text("not a certificate\n")
    config = tmp_path / "dnsfilter.yaml"
    config.write_text(
        "server: {listen: ['127.0.0.1:0']}\n"
        "metrics: {enabled: false}\n"
        "audit: {enabled: false}\n"
        "upstream:\n"
        "  servers:\n"
        "    - {address: 'tls://127.0.0.1#dns.example', ca_file: bad-ca.pem}\n"
    )
    args = [str(config)] if command == "check-config" else ["--config", str(config)]
    done = subprocess.run(
        [sys.executable, "-m", "dnsfilter", command, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"{tmp_path / 'bad-ca.pem'}: cannot load CA certificates for tls://127.0.0.1:853" in (
        done.stderr
    )


def test_url_list_host_names_are_looked_up_over_tls(
    dot: UnboundDot, certs: tuple[CertAuthority, CertAuthority, ServerCert]
) -> None:
    """The lookups URL lists make for their hosts go to a DoT upstream over TLS, verified."""
    good = dot_server(dot.port, certs[0].pem)
    before = dot.stats().get("num.query.tls", 0.0)
    assert HostResolver([good], timeout=3.0).resolve("www.example.test") == ["192.0.2.10"]
    assert dot.stats()["num.query.tls"] - before == 1
    untrusted = dot_server(dot.port, certs[1].pem)
    with pytest.raises(DownloadError, match=r"tls://127\.0\.0\.1:\d+: .*certificate verify failed"):
        HostResolver([untrusted], timeout=3.0).resolve("www.example.test")
