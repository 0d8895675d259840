"""Coverage-guided fuzzing of the parsers that take bytes from outside.

fuzz/targets.py   one function ``(data: bytes) -> None`` per target, holding its invariants
fuzz/seeds.py     the seed corpus of each target, made from tests/vectors, tests/dnsfuzz.py,
                  the shipped lists and the list excerpts in fuzz/seeds/
fuzz/run.py       ``python -m fuzz.run TARGET [libFuzzer flags]``: one target under atheris
fuzz/replay.py    ``python -m fuzz.replay TARGET PATH...``: saved inputs without atheris (crash
                  files, or a corpus under coverage.py to see which lines it reaches)
fuzz/live.py      ``python -m fuzz.live --packets 1000000``: hostile datagrams at a running
                  server with nsd upstream; crashes, hangs, RSS, time
scripts/fuzz.sh   every target for a fixed budget (outside CI); it installs atheris if missing

CI runs the same target functions on the seeds and seeded mutations of them
(tests/unit/test_fuzz_targets.py), without atheris, so the harness cannot rot.
"""
