"""A full disk under the audit store: DNS answers and /readyz stays ready, the store says it
is unhealthy, every event it misses is counted (stored + dropped == generated, per store),
and it recovers once there is space again. On a real tmpfs, with one process and with
server.workers 2 (every worker writes the shared store)."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import dns.message
import pytest

from tests.fakes import ScriptedUpstream
from tests.hostile.conftest import start_dnsfilter  # noqa: F401 - the fixture
from tests.hostile.tmpfs import fill, tmpfs
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import DnsFilter, make, wait_until

pytestmark = pytest.mark.integration

STORES = ("sqlite", "jsonl")
#: Room for the write-ahead log once the filler is gone: each commit appends the pages it
#: touched (about 16 KiB), and only a checkpoint at 4 MiB starts the log over.
TMPFS_KIB = 16 * 1024
#: Polls of the outcome: generous, since a worker's snapshot, a flush and a retry all wait.
DEADLINE = 30.0


def _config(upstream: ScriptedUpstream, state: Path, workers: int) -> dict[str, Any]:
    return base_config(
        [upstream.address],
        server={"workers": workers},
        # Probes: every worker finds its upstream up, so /readyz can say ready.
        upstream={"health_check_interval": 0.2},
        audit={
            "sqlite_path": str(state / "audit.sqlite3"),
            "jsonl_path": str(state / "audit.jsonl"),
            "flush_interval": 0.05,
            "retry_interval": 0.2,
        },
    )


def _block(server: DnsFilter, first: int, count: int) -> int:
    """Send count blocked queries (distinct names) one after the other, from a new source
    port every 10 (so that every worker gets some); return how many were answered."""
    answered = 0
    for start in range(first, first + count, 10):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3.0)
            for n in range(start, min(start + 10, first + count)):
                query = make(f"q{n}.banned.example.test")
                sock.sendto(query.to_wire(), ("127.0.0.1", server.port))
                try:
                    reply = dns.message.from_wire(sock.recv(65535))
                except TimeoutError:
                    continue
                assert reply.id == query.id and reply.answer[0][0].to_text() == "0.0.0.0"
                answered += 1
    return answered


def _stored(state: Path) -> dict[str, int]:
    """Events in each store, read back from the files."""
    rows = 0
    if (state / "audit.sqlite3").exists():
        uri = f"{(state / 'audit.sqlite3').as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            # The file a full disk left empty has no table yet.
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone():
                rows = db.execute("SELECT count(*) FROM events").fetchone()[0]
    lines = 0
    if (state / "audit.jsonl").exists():
        for line in (state / "audit.jsonl").read_bytes().split(b"\n"):
            try:
                json.loads(line)
            except ValueError:
                continue  # empty, or the one line a full disk cut short
            lines += 1
    return {"sqlite": rows, "jsonl": lines}


def _metric(server: DnsFilter, name: str, **labels: str) -> float:
    value = server.metric(name, **labels)
    assert value is not None, f"{name} {labels} is not exported"
    return value


def _dropped(server: DnsFilter) -> dict[str, int]:
    return {
        store: int(
            sum(
                _metric(server, "dnsfilter_audit_events_dropped_total", store=store, reason=reason)
                for reason in ("buffer_full", "store_failed")
            )
        )
        for store in STORES
    }


def _healthy(server: DnsFilter) -> dict[str, float]:
    return {s: _metric(server, "dnsfilter_audit_store_healthy", store=s) for s in STORES}


def _accounted(server: DnsFilter, state: Path, generated: int) -> bool:
    """Whether every store has stored or counted as dropped each of generated events."""
    stored, dropped = _stored(state), _dropped(server)
    return all(stored[s] + dropped[s] == generated for s in STORES)


def _recover(server: DnsFilter, first: int) -> int:
    """Send blocked queries until every store is healthy again (it is once it has stored
    events); return how many were answered."""
    sent = 0

    def healthy() -> bool:
        nonlocal sent
        sent += _block(server, first + sent, 20)
        return set(_healthy(server).values()) == {1}

    assert wait_until(healthy, DEADLINE), (_healthy(server), server.log[-3000:])
    return sent


def _assert_dns_serves(server: DnsFilter) -> None:
    assert server.udp("www.example.test").answer[0][0].to_text() == "192.0.2.10"
    assert server.tcp("q.banned.example.test").answer[0][0].to_text() == "0.0.0.0"
    assert wait_until(lambda: server.http_get("/readyz")[0] == 200, DEADLINE)


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_a_store_full_at_start_serves_dns_counts_every_event_and_recovers(
    start_dnsfilter: StartDnsFilter,  # noqa: F811
    scripted_upstream: ScriptedUpstream,
    tmp_path: Path,
    workers: int,
) -> None:
    scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    with tmpfs(tmp_path / "state", TMPFS_KIB) as state:
        filler = fill(state)
        server = start_dnsfilter(_config(scripted_upstream, state, workers))
        try:
            assert "cannot open sqlite" in server.log
            _assert_dns_serves(server)
            sent = _block(server, 0, 200)
            assert sent == 200
            generated = sent + 1  # and the TCP one
            assert wait_until(lambda: _accounted(server, state, generated), DEADLINE), (
                _stored(state),
                _dropped(server),
            )
            assert _stored(state) == {"sqlite": 0, "jsonl": 0}
            assert _healthy(server) == {"sqlite": 0, "jsonl": 0}
            assert _metric(server, "dnsfilter_blocked_queries_total", network="loopback",
                           list="apps", category="other") == generated  # fmt: skip

            filler.unlink()
            generated += _recover(server, 1000)
            dropped = _dropped(server)
            more = _block(server, 10_000, 100)
            assert more == 100
            generated += more
            assert wait_until(lambda: _accounted(server, state, generated), DEADLINE), (
                _stored(state),
                _dropped(server),
            )
            # Healthy again: nothing more was lost.
            assert _dropped(server) == dropped, server.log
            assert "is writing again" in server.log
        finally:
            assert server.stop() == 0, server.log


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_a_disk_that_fills_while_serving_loses_no_event_uncounted(
    start_dnsfilter: StartDnsFilter,  # noqa: F811
    scripted_upstream: ScriptedUpstream,
    tmp_path: Path,
    workers: int,
) -> None:
    scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    with tmpfs(tmp_path / "state", TMPFS_KIB) as state:
        filler = fill(state, leave_kib=256)  # room for a few hundred events, not thousands
        server = start_dnsfilter(_config(scripted_upstream, state, workers))
        try:
            assert "cannot open" not in server.log
            assert _healthy(server) == {"sqlite": 1, "jsonl": 1}
            generated = 0
            # Until both stores have failed: a batch of 200 (a few KiB each store) at a time.
            while set(_healthy(server).values()) != {0}:
                assert generated < 20_000, (_stored(state), _dropped(server))
                generated += _block(server, generated, 200)
            generated += _block(server, generated, 500)  # and more, onto the full disk
            _assert_dns_serves(server)
            generated += 1
            assert wait_until(lambda: _accounted(server, state, generated), DEADLINE), (
                generated,
                _stored(state),
                _dropped(server),
            )
            stored, dropped = _stored(state), _dropped(server)
            assert all(stored[s] > 0 and dropped[s] > 0 for s in STORES), (stored, dropped)
            assert _healthy(server) == {"sqlite": 0, "jsonl": 0}

            filler.unlink()
            generated += _recover(server, 50_000)
            dropped = _dropped(server)
            more = _block(server, 100_000, 100)
            generated += more
            assert wait_until(lambda: _accounted(server, state, generated), DEADLINE), (
                generated,
                _stored(state),
                _dropped(server),
            )
            assert _dropped(server) == dropped
        finally:
            assert server.stop() == 0, server.log


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_a_hash_key_that_cannot_be_created_drops_events_never_stores_addresses(
    start_dnsfilter: StartDnsFilter,  # noqa: F811
    scripted_upstream: ScriptedUpstream,
    tmp_path: Path,
    workers: int,
) -> None:
    """pseudonymize: hash with its key file on the full disk: no key, so no event may be
    stored (it would hold the address); once there is room, one key is made (with workers
    too: each process that creates it links it into place, and the one that loses reads it),
    and every stored event carries its pseudonym."""
    scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    with tmpfs(tmp_path / "state", TMPFS_KIB) as state:
        config = _config(scripted_upstream, state, workers)
        config["audit"].update(pseudonymize="hash", hash_key_file=str(state / "audit.key"))
        filler = fill(state)
        server = start_dnsfilter(config)
        try:
            assert "cannot load the hash key" in server.log
            _assert_dns_serves(server)
            generated = 1 + _block(server, 0, 100)
            assert wait_until(lambda: _accounted(server, state, generated), DEADLINE)
            assert _stored(state) == {"sqlite": 0, "jsonl": 0}

            filler.unlink()
            generated += _recover(server, 1000)
            assert wait_until(lambda: _accounted(server, state, generated), DEADLINE)
            key = (state / "audit.key").read_text().strip()
            assert len(key) == 64
            assert sorted(p.name for p in state.iterdir()) == [
                "audit.jsonl", "audit.key", "audit.sqlite3", "audit.sqlite3-shm",
                "audit.sqlite3-wal",
            ]  # fmt: skip
            uri = f"{(state / 'audit.sqlite3').as_uri()}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
                clients = {row[0] for row in db.execute("SELECT client FROM events")}
            jsonl = (state / "audit.jsonl").read_text().splitlines()
            clients |= {json.loads(line)["client"] for line in jsonl if line}
            # One pseudonym: one key for every worker, and never the address itself.
            assert len(clients) == 1 and "127.0.0.1" not in clients, clients
            assert len(clients.pop()) == 16
        finally:
            assert server.stop() == 0, server.log
