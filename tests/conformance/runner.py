"""Runs the suite's queries against both resolvers: two rounds, the second from the caches.

Within a group (one question's variants) queries go one after the other in a fixed order,
each to unbound and then to dnsfilter, so both caches see the same sequence; groups run
side by side on a few threads. The second round starts once a whole second has passed
since the first ended (a wait on the clock, not a guess at timing: every cached TTL must
have counted down by then). nsd is asked each question once, over TCP with DO, for the
TTLs it serves: the ceiling of every TTL a resolver may return.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import dns.message
import dns.name
import dns.query

from tests.conformance.compare import Originals
from tests.conformance.observe import Case, Observation, exchange, next_id, observe
from tests.conformance.zones import QUESTIONS

#: Threads asking side by side: enough to overlap the resolvers' waits on nsd, few
#: enough not to crowd a 2-core CI machine.
WORKERS = 6
#: The pause between the rounds, beyond the whole second TTLs need to count down.
ROUND_GAP = 1.05


class Results(NamedTuple):
    cases: tuple[Case, ...]
    unbound: dict[str, tuple[Observation, Observation]]
    dnsfilter: dict[str, tuple[Observation, Observation]]
    originals: Originals
    elapsed: float  #: seconds from the first query to the last
    queries: int  #: queries sent to the two resolvers


def originals(nsd: tuple[str, int]) -> dict[tuple[dns.name.Name, int], int]:
    """(owner, rdtype) -> the largest TTL nsd serves for it in any answer to QUESTIONS."""
    found: dict[tuple[dns.name.Name, int], int] = {}
    for question in QUESTIONS:
        query = dns.message.make_query(
            question.qname, question.qtype, want_dnssec=True, payload=4096
        )
        reply = dns.query.tcp(query, nsd[0], port=nsd[1], timeout=5)
        for section in (reply.answer, reply.authority, reply.additional):
            for rrset in section:
                key = (rrset.name, rrset.rdtype)
                found[key] = max(found.get(key, 0), rrset.ttl)
    return found


def _ask(case: Case, address: tuple[str, int]) -> Observation:
    return observe(exchange(case.build(next_id()), case.transport, address))


def run(
    groups: Sequence[Sequence[Case]],
    unbound: tuple[str, int],
    dnsfilter: tuple[str, int],
    nsd: tuple[str, int],
) -> Results:
    ceilings = originals(nsd)
    first: dict[str, tuple[Observation, Observation]] = {}
    second: dict[str, tuple[Observation, Observation]] = {}

    def one_round(into: dict[str, tuple[Observation, Observation]]) -> None:
        def group(cases: Sequence[Case]) -> None:
            for case in cases:
                into[case.name] = (_ask(case, unbound), _ask(case, dnsfilter))

        with ThreadPoolExecutor(WORKERS) as pool:
            for done in [pool.submit(group, cases) for cases in groups]:
                done.result()

    started = time.monotonic()
    one_round(first)
    time.sleep(ROUND_GAP)
    one_round(second)
    elapsed = time.monotonic() - started
    cases = tuple(case for cases in groups for case in cases)
    return Results(
        cases,
        {c.name: (first[c.name][0], second[c.name][0]) for c in cases},
        {c.name: (first[c.name][1], second[c.name][1]) for c in cases},
        ceilings,
        elapsed,
        4 * len(cases),
    )
