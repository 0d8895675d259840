"""What every server is measured on: one seeded blocklist, one upstream zone, three query files.

All names come from one ``random.Random(seed)``, so two runs with the same options send the same
queries in the same order. Query files are in dnsperf's format, ``NAME TYPE`` per line.

- **generated list**: ``entries`` unique names such as ``k3x9qa.net`` or ``a7.z0pq4mtr.io``
  (two or three labels, public TLDs, never under the test zone), one per line.
- **blocked**: random names *under* generated entries (a quarter the entry itself), A and AAAA
  half each. No server sends them upstream; dnsperf loops over the file.
- **cached**: ``HOT_NAMES`` names under the test zone, type A, answered by the upstream's
  wildcard; warmed once before the measurement, so every measured query is a cache hit.
- **miss**: unique names under the test zone, type A, each forwarded once; dnsperf reads the
  file once only (``-n 1``), so no name is asked twice even by the fastest server.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

#: The zone the upstream (nsd) serves; every allowed query name is below it.
ZONE = "bench.test"
#: What the zone's wildcard answers for A and AAAA.
WILDCARD_A = "192.0.2.2"
WILDCARD_AAAA = "2001:db8::2"
#: Size of the cached set's hot set.
HOT_NAMES = 1000
#: The query sets, in the order each server runs them.
SET_NAMES = ("blocked", "cached", "miss")

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_TLDS = ("com", "net", "org", "io", "info", "biz", "cn", "ru", "de", "xyz", "top", "co")

ZONE_TEXT = f"""\
$ORIGIN {ZONE}.
$TTL 86400
@    IN SOA  ns1.{ZONE}. hostmaster.{ZONE}. 1 3600 900 604800 3600
@    IN NS   ns1.{ZONE}.
ns1  IN A    192.0.2.1
*    IN A    {WILDCARD_A}
*    IN AAAA {WILDCARD_AAAA}
"""


@dataclass(frozen=True, slots=True)
class QuerySet:
    name: str  #: one of SET_NAMES
    path: Path  #: dnsperf input
    lines: int
    once: bool  #: read the file once (unique names), instead of looping over it for the duration


@dataclass(frozen=True, slots=True)
class Workload:
    directory: Path
    generated_list: Path  #: the generated names, one per line (dnsfilter's plain format)
    entries: int
    sets: dict[str, QuerySet]
    blocked_probe: str  #: a name under a generated entry: every server answers 0.0.0.0
    allowed_probe: str  #: a name under the zone: every server answers WILDCARD_A
    seed: int


def generate(
    directory: Path, *, entries: int, blocked_lines: int, miss_lines: int, seed: int
) -> Workload:
    """Write the generated list and the three query files into directory."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = _unique_names(rng, entries)
    generated = directory / "generated.txt"
    generated.write_text("\n".join(names) + "\n", encoding="ascii")

    blocked = directory / "blocked.txt"
    with blocked.open("w", encoding="ascii") as out:
        for _ in range(blocked_lines):
            domain = rng.choice(names)
            name = domain if rng.random() < 0.25 else f"{_label(rng, 1, 10)}.{domain}"
            out.write(f"{name} {'A' if rng.random() < 0.5 else 'AAAA'}\n")

    hot = [f"h{i}-{_label(rng, 4, 8)}.{ZONE}" for i in range(HOT_NAMES)]
    rng.shuffle(hot)
    cached = directory / "cached.txt"
    cached.write_text("".join(f"{name} A\n" for name in hot), encoding="ascii")

    miss = directory / "miss.txt"
    with miss.open("w", encoding="ascii") as out:
        for i in range(miss_lines):
            out.write(f"m{i}-{_label(rng, 4, 8)}.{ZONE} A\n")

    return Workload(
        directory=directory,
        generated_list=generated,
        entries=len(names),
        sets={
            "blocked": QuerySet("blocked", blocked, blocked_lines, once=False),
            "cached": QuerySet("cached", cached, len(hot), once=False),
            "miss": QuerySet("miss", miss, miss_lines, once=True),
        },
        blocked_probe=f"probe.{names[0]}",
        allowed_probe=f"probe.{ZONE}",
        seed=seed,
    )


def write_yaml_list(names: Path, destination: Path) -> None:
    """The generated names as a dnsfilter YAML list (for builds without the plain format)."""
    header = (
        "name: generated\n"
        "title: Generated benchmark list\n"
        "vendor: Benchmark\n"
        "category: other\n"
        "description: Random names written by bench/workload.py\n"
        "references:\n"
        "  - {url: 'https://example.org/', title: benchmark}\n"
        "domains:\n"
    )
    with names.open(encoding="ascii") as source, destination.open("w", encoding="ascii") as out:
        out.write(header)
        for line in source:
            out.write(f"  - {line}")


def _label(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choices(_ALPHABET, k=rng.randint(low, high)))


def _unique_names(rng: random.Random, count: int) -> list[str]:
    seen: set[str] = set()
    names: list[str] = []
    while len(names) < count:
        name = f"{_label(rng, 5, 14)}.{rng.choice(_TLDS)}"
        if rng.random() < 0.3:
            name = f"{_label(rng, 1, 8)}.{name}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names
