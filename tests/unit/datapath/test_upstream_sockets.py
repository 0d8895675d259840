"""Upstream sockets that cannot be made: SocketUnavailable, on the callback and async paths.

socket.socket is replaced by one that fails with an errno, as the kernel does when the
process (EMFILE) or the host (ENFILE) has no descriptor left or buffers run out (ENOBUFS).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import dns.message
import pytest

from dnsfilter.config import HostPort, UpstreamServer
from dnsfilter.datapath.upstream import FirstTry, UpstreamAnswer, UpstreamGroup, _ShortageLog
from dnsfilter.datapath.wire import Query, Transport, parse_query
from dnsfilter.errors import SocketUnavailable, UpstreamError
from dnsfilter.observe.metrics import UpstreamStats

SERVERS = [UpstreamServer(HostPort("192.0.2.1", 53)), UpstreamServer(HostPort("192.0.2.2", 53))]


def _query() -> Query:
    wire = dns.message.make_query("www.example.test", "A").to_wire()
    return parse_query(wire, ("127.0.0.1", 5353), Transport.UDP)


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """socket.socket fails with the errno in the returned list (EMFILE until changed)."""
    code = [errno.EMFILE]
    real = socket.socket

    def failing(*args: Any, **kwargs: Any) -> socket.socket:
        if args and args[0] in (socket.AF_INET, socket.AF_INET6):
            raise OSError(code[0], "fake shortage")
        return real(*args, **kwargs)

    monkeypatch.setattr("dnsfilter.datapath.upstream.socket.socket", failing)
    return code


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM])
@pytest.mark.asyncio
async def test_first_try_without_a_socket_is_ours_not_the_servers(
    no_sockets: list[int], code: int
) -> None:
    no_sockets[0] = code
    stats = UpstreamStats()
    group = UpstreamGroup(SERVERS, timeout=1.0, dead_time=30, stats=stats)
    outcome: list[tuple[UpstreamAnswer | None, FirstTry | None]] = []
    assert group.start(_query(), lambda answer, first: outcome.append((answer, first)))
    [(answer, first)] = outcome  # settled at once, by the callback
    assert answer is None and first is not None
    assert isinstance(first.error, SocketUnavailable)
    assert group.is_up(SERVERS[0]), "a shortage here does not make the server dead"
    assert stats.requests == {}, "nothing was sent, so no try is counted"
    assert stats.socket_errors == {errno.errorcode[code]: 1}
    # forward() goes on from there: no socket for the second server either, so it stops.
    with pytest.raises(SocketUnavailable):
        await asyncio.wait_for(group.forward(_query(), first), 1)
    assert stats.socket_errors == {errno.errorcode[code]: 1}, "the others were not tried"


@pytest.mark.asyncio
async def test_async_path_raises_socket_unavailable(no_sockets: list[int]) -> None:
    stats = UpstreamStats()
    group = UpstreamGroup(SERVERS, timeout=1.0, dead_time=30, stats=stats)
    with pytest.raises(SocketUnavailable) as raised:
        await asyncio.wait_for(group.forward(_query()), 1)
    assert isinstance(raised.value, UpstreamError), "the resolver serves stale on these"
    assert raised.value.reason == "EMFILE"
    assert stats.socket_errors == {"EMFILE": 1}
    assert all(group.is_up(server) for server in SERVERS)


@pytest.mark.asyncio
async def test_other_errors_stay_upstream_errors(no_sockets: list[int]) -> None:
    no_sockets[0] = errno.EAFNOSUPPORT
    group = UpstreamGroup(SERVERS, timeout=1.0, dead_time=30)
    with pytest.raises(UpstreamError) as raised:
        await asyncio.wait_for(group.forward(_query()), 1)
    assert not isinstance(raised.value, SocketUnavailable)
    assert not group.is_up(SERVERS[0]), "a server unreachable from here is failed over"


def test_shortage_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    shortage = _ShortageLog(interval=10.0, clock=lambda: now[0])
    error = SocketUnavailable("192.0.2.1:53: fake", "EMFILE")
    logged = [shortage(error) for _ in range(500)]
    now[0] += 10.0
    logged.append(shortage(error))
    assert logged.count(True) == 2 and logged[0] and logged[-1]
    lines = [r.getMessage() for r in caplog.records if "no socket" in r.getMessage()]
    assert len(lines) == 2 and ": 500 since the last report" in lines[1]
