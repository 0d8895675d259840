"""Coverage-guided fuzzing of the parsers that take bytes from outside.

fuzz/targets.py   one function ``(data: bytes) -> None`` per target, holding its invariants
fuzz/seeds.py     the seed corpus of each target, made from tests/vectors, tests/dnsfuzz.py,
                  the shipped lists and the list excerpts in fuzz/seeds/
fuzz/run.py       ``python -m fuzz.run TARGET [libFuzzer flags]``: one target under atheris
scripts/fuzz.sh   every target for a fixed budget (outside CI); it installs atheris if missing

CI runs the same target functions on the seeds and seeded mutations of them
(tests/unit/test_fuzz_targets.py), without atheris, so the harness cannot rot.
"""
