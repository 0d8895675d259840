"""Field-by-field comparison of two observations of the same query, and the TTL checks.

Each difference names one field (``rcode``, ``flag.ra``, ``answer``, ``ttl.authority``,
...) and what each resolver had there. TTLs are compared by behaviour, never by value
(the two resolvers fill their caches at different moments):

- ``ttl.above``: a TTL above the one nsd serves for that record (never right);
- ``ttl.countdown``: on the repeat, a cached TTL (≥ 1) that did not count down by at
  least the whole second waited between the two rounds;
- ``ttl.<section>``: a record both resolvers return whose TTL one kept (at most the run's
  elapsed seconds below nsd's) and the other cut below that (a clamp).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

import dns.name
import dns.rcode

from tests.conformance.observe import (
    FLAGS,
    SECTION_NAMES,
    Case,
    Observation,
    RecordKey,
    record_text,
)

#: (owner, rdtype) -> the TTL nsd serves (the largest seen, for a record nsd serves in
#: several answers).
Originals = Mapping[tuple[dns.name.Name, int], int]


class Difference(NamedTuple):
    case: Case
    round: int  #: 1: first ask; 2: the repeat, from the caches
    field: str
    unbound: str
    dnsfilter: str
    ub: Observation
    df: Observation

    def describe(self) -> str:
        return (
            f"{self.case.name} [round {self.round}] {self.field}: "
            f"unbound {self.unbound} | dnsfilter {self.dnsfilter}"
        )


def _rcode(obs: Observation) -> str:
    return dns.rcode.to_text(dns.rcode.Rcode.make(obs.rcode)) if obs.rcode >= 0 else "-"


def _records(records: frozenset[RecordKey]) -> str:
    return "{" + ", ".join(sorted(record_text(key) for key in records)) + "}"


def compare(case: Case, round_: int, ub: Observation, df: Observation) -> Iterator[Difference]:
    """Every field in which the two replies to case differ."""

    def diff(field: str, a: object, b: object) -> Iterator[Difference]:
        if a != b:
            yield Difference(case, round_, field, str(a), str(b), ub, df)

    yield from diff("reply", ub.error or "reply", df.error or "reply")
    if not (ub.ok and df.ok):
        return
    yield from diff("rcode", _rcode(ub), _rcode(df))
    yield from diff("opcode", ub.opcode, df.opcode)
    for name, _ in FLAGS:
        yield from diff(f"flag.{name}", int(name in ub.flags), int(name in df.flags))
    yield from diff("qdcount", ub.qdcount, df.qdcount)
    yield from diff("question", ub.question, df.question)
    for index, section in enumerate(SECTION_NAMES):
        a, b = ub.sections[index], df.sections[index]
        if a != b:
            yield Difference(
                case, round_, section, _records(a - b), _records(b - a), ub, df
            )  # the values: what only that resolver returned
    yield from diff("edns", ub.edns, df.edns)
    if ub.edns >= 0 and df.edns >= 0:
        yield from diff("edns.payload", ub.payload, df.payload)
        yield from diff("edns.do", int(ub.edns_do), int(df.edns_do))
        yield from diff("edns.options", list(ub.options), list(df.options))
    yield from diff("tsig", ub.tsig_error, df.tsig_error)


def ttl_behaviour(
    case: Case,
    ub: tuple[Observation, Observation],
    df: tuple[Observation, Observation],
    originals: Originals,
    elapsed: float,
) -> Iterator[Difference]:
    """The TTL checks of the module docstring, over both rounds of one case."""
    checks = {
        "unbound": [_above(obs, originals) for obs in ub] + [_countdown(ub[0], ub[1], originals)],
        "dnsfilter": [_above(obs, originals) for obs in df] + [_countdown(df[0], df[1], originals)],
    }
    names = ("ttl.above", "ttl.above", "ttl.countdown")
    for index, field in enumerate(names):
        a, b = checks["unbound"][index], checks["dnsfilter"][index]
        if a or b:
            round_ = 2 if index else 1
            yield Difference(
                case, round_, field, a or "ok", b or "ok", ub[round_ - 1], df[round_ - 1]
            )
    for round_, (u, d) in enumerate(zip(ub, df, strict=True), 1):
        if not (u.ok and d.ok):
            continue
        for index, section in enumerate(SECTION_NAMES):
            kept_u, kept_d = [], []
            for key in u.sections[index] & d.sections[index]:
                original = originals.get((key[0], key[1]))
                if original is None:
                    continue
                ttl_u, ttl_d = u.ttls[(index, key)], d.ttls[(index, key)]
                if _clamped(ttl_u, original, elapsed) != _clamped(ttl_d, original, elapsed):
                    kept_u.append(f"{record_text(key, ttl_u)} (nsd {original})")
                    kept_d.append(f"{record_text(key, ttl_d)} (nsd {original})")
            if kept_u:
                yield Difference(
                    case,
                    round_,
                    f"ttl.{section}",
                    "; ".join(sorted(kept_u)),
                    "; ".join(sorted(kept_d)),
                    u,
                    d,
                )


def _clamped(ttl: int, original: int, elapsed: float) -> bool:
    """Whether ttl is further below original than the run's age can explain."""
    return original - ttl > elapsed + 1


def _above(obs: Observation, originals: Originals) -> str:
    above = []
    for (index, key), ttl in obs.ttls.items():
        original = originals.get((key[0], key[1]))
        if original is not None and ttl > original:
            above.append(f"{SECTION_NAMES[index]} {record_text(key, ttl)} > nsd {original}")
    return "; ".join(sorted(above))


def _countdown(first: Observation, repeat: Observation, originals: Originals) -> str:
    """'' when every record of the repeat that came from nsd and was in the first reply
    (with a TTL of at least 1 there) counted down; else which did not. Records a resolver
    makes itself (blocked answers, HINFO for ANY) keep their TTL, rightly."""
    stuck = []
    for slot, ttl in repeat.ttls.items():
        before = first.ttls.get(slot)
        if slot[1][:2] not in originals:
            continue
        if before is not None and before >= 1 and ttl > before - 1:
            stuck.append(f"{record_text(slot[1])}: {before} then {ttl}")
    return "; ".join(sorted(stuck))
