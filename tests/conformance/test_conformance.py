"""The differential conformance suite: dnsfilter against unbound, the same queries, one nsd.

nsd serves the zones of zones.py (wildcards, CNAME chains within and across zones, a
CNAME to nothing and out of every zone, a CNAME loop, DNAME, NXDOMAIN, NODATA, an empty
non-terminal, a delegation, TXT above 1232 and 4096 bytes, many addresses, SRV, MX, CAA,
HTTPS, an unknown type, mixed case, escaped labels, TTLs of zero and of a week, three
SOA MINIMUM values). In front of it, side by side:

- unbound (Debian's), as a pure forwarder: forwarder.FORWARDER_SETTINGS says what is set
  and why; two blocked names are local zones (always_null, always_nxdomain);
- `dnsfilter serve`, forwarding to nsd, with a policy for 127.0.0.0/8 that blocks the same
  two names (modes null and nxdomain).

Each question is asked in every variant of observe.VARIANTS (UDP and TCP; no EDNS, EDNS at
512, 1232 and 4096; DO and CD on and off), then the raw cases of cases.py (RD=0, TSIG,
opcodes, EDNS version 1, QDCOUNT 0 and 2, two OPTs, EDNS options, CHAOS); everything twice,
the second time from the caches. Every reply is compared field by field (compare.py):
rcode, each header flag, the echoed question, the three sections as sets of records, EDNS
and TTL behaviour. A difference must be explained by exactly the rows of known.KNOWN that
say why; anything else fails, and so does a row that no longer explains anything (it was
fixed: delete the row).

One run per module: nsd, unbound and dnsfilter start once, about 8,200 queries go out on
six threads (25-45 s on the shared 2-core machine), and the tests read the results.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.cases import groups
from tests.conformance.compare import Difference, compare, ttl_behaviour
from tests.conformance.forwarder import UnboundForwarder
from tests.conformance.intolerant import EdnsIntolerantRelay
from tests.conformance.known import KNOWN, Known
from tests.conformance.runner import Results, run
from tests.conformance.zones import BLOCKED, BLOCKED_NX, OLD, ZONES
from tests.integration.harness import DnsFilter, demo_list
from tests.nsd import NsdServer

pytestmark = pytest.mark.integration

#: unbound's answers for the blocked names: what dnsfilter's policy modes answer.
UNBOUND_BLOCKED = ((BLOCKED, "always_null"), (BLOCKED_NX, "always_nxdomain"))


def dnsfilter_config(nsd: str, intolerant: str) -> dict[str, Any]:
    return {
        "server": {"listen": ["127.0.0.1:0"]},
        # No health probes: nothing but the suite's own queries reaches nsd.
        "upstream": {"servers": [nsd], "health_check_interval": 0},
        "forward_zones": {OLD: [intolerant]},
        "networks": {"loopback": ["127.0.0.0/8"]},
        "lists": {"blocked": {"file": "blocked.yaml"}},
        "policies": {"default": {"networks": ["loopback"], "lists": ["blocked"]}},
        "metrics": {"enabled": False},
        "audit": {"sqlite_path": "audit.sqlite3"},
    }


BLOCKED_LIST = demo_list(
    "blocked", [BLOCKED, {"domain": BLOCKED_NX, "evidence": "test", "mode": "nxdomain"}]
)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Results]:
    tmp: Path = tmp_path_factory.mktemp("conformance")
    with (
        NsdServer(zones=ZONES) as nsd,
        EdnsIntolerantRelay((nsd.host, nsd.port)) as relay,
        UnboundForwarder(
            f"127.0.0.1@{nsd.port}", UNBOUND_BLOCKED, {OLD: f"127.0.0.1@{relay.port}"}
        ) as unbound,
    ):
        config = dnsfilter_config(nsd.address, f"127.0.0.1:{relay.port}")
        dnsfilter = DnsFilter(tmp, config, {"blocked": BLOCKED_LIST})
        dnsfilter.start()
        try:
            yield run(
                groups(), (unbound.host, unbound.port), dnsfilter.address(), (nsd.host, nsd.port)
            )
        finally:
            code = dnsfilter.stop()
        assert code == 0, f"dnsfilter exited with {code}:\n{dnsfilter.log}"
        assert "Traceback" not in dnsfilter.log, dnsfilter.log


def differences(results: Results) -> list[Difference]:
    found: list[Difference] = []
    for case in results.cases:
        ub, df = results.unbound[case.name], results.dnsfilter[case.name]
        for round_ in (1, 2):
            found.extend(compare(case, round_, ub[round_ - 1], df[round_ - 1]))
        found.extend(ttl_behaviour(case, ub, df, results.originals, results.elapsed))
    return found


@pytest.fixture(scope="module")
def explained(results: Results) -> tuple[list[Difference], dict[str, int]]:
    """(differences no row explains, row -> how many it explains)."""
    unexplained = []
    uses = dict.fromkeys((row.rule for row in KNOWN), 0)
    for difference in differences(results):
        rows = [row for row in KNOWN if row.explains(difference)]
        for row in rows:
            uses[row.rule] += 1
        if not rows:
            unexplained.append(difference)
    return unexplained, uses


def _summary(found: list[Difference], limit: int = 60) -> str:
    """One line per distinct (field, question or raw case, values), worst first."""
    seen: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
    example: dict[tuple[str, str, str, str], Difference] = {}
    for d in found:
        q = d.case.question
        where = f"{q.qname} {q.qtype}" if q is not None else d.case.name
        key = (d.field, where, d.unbound, d.dnsfilter)
        seen[key] += 1
        example.setdefault(key, d)
    lines = [
        f"{count:4d}x {example[key].describe()[:500]}" for key, count in seen.most_common(limit)
    ]
    if len(seen) > limit:
        lines.append(f"... and {len(seen) - limit} more distinct differences")
    return "\n".join(lines)


def test_no_unexplained_difference(explained: tuple[list[Difference], dict[str, int]]) -> None:
    unexplained, _ = explained
    assert not unexplained, (
        f"{len(unexplained)} differences from unbound that tests/conformance/known.py does "
        f"not explain (fix them, or add a row saying why):\n{_summary(unexplained)}"
    )


@pytest.mark.parametrize("row", KNOWN, ids=[row.rule for row in KNOWN])
def test_known_difference_still_seen(
    row: Known, explained: tuple[list[Difference], dict[str, int]]
) -> None:
    _, uses = explained
    assert uses[row.rule] > 0, (
        f"known difference {row.rule!r} ({row.status.value}, issue {row.issue}) no longer "
        "happens: it was fixed or the case changed; delete the row from known.py"
    )


def test_both_resolvers_answered(results: Results) -> None:
    """The comparison means something: nearly every query got a parsed reply from both."""
    answered = {
        name: sum(obs.ok for obs in (*results.unbound[name], *results.dnsfilter[name]))
        for name in (case.name for case in results.cases)
    }
    assert len(answered) >= 1500
    unanswered = [name for name, count in answered.items() if count < 4]
    assert unanswered == [case.name for case in results.cases if "two-opt" in case.tags]
