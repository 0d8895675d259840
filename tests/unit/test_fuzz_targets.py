"""The coverage-guided fuzz targets (fuzz/targets.py) run in CI without atheris, so they
cannot rot: each runs on its seed corpus and on DNSFILTER_FUZZ_TARGET_RUNS (300) seeded
mutations of it, a few seconds in all. scripts/fuzz.sh runs them for real, outside CI.

The targets also catch what they are meant to: each invariant is shown failing on an input
that breaks it.
"""

from __future__ import annotations

import os
import random

import pytest

from dnsfilter.datapath import cache, wire
from dnsfilter.lists import plainformat
from fuzz import targets
from fuzz.seeds import SEEDS, mutate
from fuzz.targets import TARGETS
from tests import vectors

RUNS = int(os.environ.get("DNSFILTER_FUZZ_TARGET_RUNS", "300"))
SMALL = 4096


def test_every_target_has_seeds() -> None:
    assert set(SEEDS) == set(TARGETS)
    for name, make in SEEDS.items():
        assert make(), name


@pytest.mark.parametrize("name", list(TARGETS))
def test_target_holds_on_its_seeds_and_mutations(name: str) -> None:
    target = TARGETS[name]
    seeds = SEEDS[name]()
    for data in seeds:
        target(data)
    # Mutations start from the small seeds: a shipped YAML list (28 KB) takes 60 ms a parse.
    small = [data for data in seeds if len(data) <= SMALL]
    rng = random.Random(f"fuzz-{name}")
    for _ in range(RUNS):
        target(mutate(rng, rng.choice(small), seeds))


def test_mutate_is_deterministic_and_changes_inputs() -> None:
    seeds = SEEDS["query"]()
    first = [mutate(random.Random(7), data, seeds) for data in seeds]
    again = [mutate(random.Random(7), data, seeds) for data in seeds]
    assert first == again
    assert sum(a != b for a, b in zip(first, seeds, strict=True)) > len(seeds) // 2


# The targets fail when an invariant breaks: undocumented exceptions escape, and wrong
# answers trip the checks.


def test_query_target_lets_an_undocumented_exception_escape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(data: bytes, *args: object) -> wire.Query:
        return data[999]  # type: ignore[return-value]  # IndexError, as a parser bug would

    monkeypatch.setattr(targets, "parse_query", broken)
    with pytest.raises(IndexError):
        targets.query(vectors.QUERY_A)


def test_response_target_catches_a_reply_that_loses_a_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = cache.make_passthrough

    def lossy(data: bytes, scan: wire.ResponseScan, now: float) -> object:
        return real(data, scan._replace(records=scan.records[:-1]), now)

    monkeypatch.setattr(targets, "make_passthrough", lossy)
    with pytest.raises(AssertionError):
        targets.response(vectors.RESPONSE_CNAME_CHAIN)


def test_plain_target_catches_a_fast_path_that_disagrees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = plainformat._read_line

    def wrong(line: str, number: int, report: object) -> list[str]:
        return [*real(line, number, report), "extra.example"]  # type: ignore[arg-type]

    monkeypatch.setitem(targets._LINE_READERS, "plain", (str.split, wrong))
    with pytest.raises(AssertionError):
        TARGETS["plain"](b"a.example\nB.example\n")


def test_list_target_catches_an_entry_that_is_not_normalized(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(targets, "normalize_domain", lambda name: name.upper())
    with pytest.raises(AssertionError):
        TARGETS["hosts"](b"0.0.0.0 ads.example.com\n")
