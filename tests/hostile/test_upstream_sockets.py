"""No descriptor left for an upstream socket: stale answers where there are some, else SERVFAIL
with EDE 23, one log line per interval and a counter -- never a traceback per query.

The shortage is made real: the running server's soft RLIMIT_NOFILE is lowered (prlimit) below
the descriptors it holds, so its next socket() fails with EMFILE; UDP queries still arrive on
the listening socket it already has.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.rcode
import pytest

from tests.integration.conftest import APPS_LIST, OTHER_LIST, base_config
from tests.integration.harness import DnsFilter, wait_until
from tests.nsd import NsdServer

pytestmark = pytest.mark.integration

_SHORTAGE_LINE = "no socket for upstream queries"


@pytest.fixture
def server(tmp_path: Path, nsd_upstream: NsdServer) -> Iterator[DnsFilter]:
    # Answers expire after a second, so one can be served stale.
    config = base_config([nsd_upstream.address], cache={"max_ttl": 1})
    dnsfilter = DnsFilter(tmp_path, config, {"apps": APPS_LIST, "other": OTHER_LIST})
    dnsfilter.start()
    yield dnsfilter
    code = dnsfilter.stop()
    assert code == 0, f"dnsfilter exited with {code}:\n{dnsfilter.log}"
    assert "Traceback" not in dnsfilter.log, dnsfilter.log


def _ede(reply: dns.message.Message) -> list[int]:
    return [o.code for o in reply.options if isinstance(o, dns.edns.EDEOption)]


def test_no_upstream_socket_answers_stale_or_servfail(server: DnsFilter) -> None:
    assert server.process is not None
    pid = server.process.pid
    assert server.udp("www.example.test", edns=True).rcode() == dns.rcode.NOERROR  # cached
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    # The limit bounds descriptor numbers, not their count: 3 leaves no free number, as 0-2
    # (stdin, stdout, stderr) are always open.
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, hard))
    try:
        # Once its second is up, the entry can only be answered stale (EDE 3).
        replies: list[dns.message.Message] = []

        def answered_differently() -> bool:
            replies.append(server.udp("www.example.test", edns=True))
            return replies[-1].rcode() != dns.rcode.NOERROR or bool(_ede(replies[-1]))

        assert wait_until(answered_differently, timeout=5)
        stale = replies[-1]
        assert stale.rcode() == dns.rcode.NOERROR and _ede(stale) == [3], stale
        # A name never seen has nothing stale: SERVFAIL, EDE 23 (network error).
        misses = [server.udp(f"miss-{n}.wild.example.test", edns=True) for n in range(50)]
        assert {(m.rcode(), tuple(_ede(m))) for m in misses} == {(dns.rcode.SERVFAIL, (23,))}
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (hard, hard))
    assert server.udp("new.wild.example.test").rcode() == dns.rcode.NOERROR
    assert wait_until(lambda: _SHORTAGE_LINE in server.log)
    assert server.log.count(_SHORTAGE_LINE) == 1, "logged once per interval, not per query"
    failed = server.metric("dnsfilter_upstream_socket_errors_total", errno="EMFILE")
    assert failed is not None and failed >= 51
