"""Run one fuzz target under atheris (libFuzzer): ``python -m fuzz.run TARGET [flags...]``.

dnsfilter (and PyYAML, for the yaml and config targets) is instrumented for coverage as it
is imported. The seed corpus is written into --seeds DIR (made if missing) and handed to
libFuzzer after any corpus directories among the flags, so the first directory given keeps
what the run finds. Every other flag goes to libFuzzer as it is (-max_total_time=600,
-timeout=10, -rss_limit_mb=1024, ...).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path


def _write_seeds(name: str, directory: Path) -> int:
    from fuzz.seeds import SEEDS

    directory.mkdir(parents=True, exist_ok=True)
    seeds = SEEDS[name]()
    for data in seeds:
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return len(seeds)


def main(argv: list[str]) -> int:
    import atheris

    if len(argv) < 2 or argv[1].startswith("-"):
        print("usage: python -m fuzz.run TARGET [--seeds DIR] [libFuzzer flags] [CORPUS...]")
        return 2
    name = argv[1]
    rest = argv[2:]
    seeds_dir: Path | None = None
    if "--seeds" in rest:
        at = rest.index("--seeds")
        seeds_dir = Path(rest[at + 1])
        del rest[at : at + 2]
    include = ["dnsfilter", "yaml"] if name in ("yaml", "config") else ["dnsfilter"]
    with atheris.instrument_imports(include=include):
        from fuzz.targets import TARGETS
    if name not in TARGETS:
        print(f"unknown target {name!r}; targets: {', '.join(TARGETS)}")
        return 2
    if seeds_dir is not None:
        count = _write_seeds(name, seeds_dir)
        print(f"fuzz.run: {count} seeds for {name} in {seeds_dir}", flush=True)
        rest.append(str(seeds_dir))
    atheris.Setup([argv[0], *rest], TARGETS[name])
    atheris.Fuzz()
    return 0  # not reached: libFuzzer exits the process


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
