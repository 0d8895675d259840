"""Run a fuzz target over saved inputs without atheris: ``python -m fuzz.replay TARGET PATH...``.

PATH is a file (a crash file, say) or a directory (a corpus). Every input is run; an input
that breaks an invariant is reported with its exception, and the exit status is 1 if any
did. Under coverage.py it measures what a corpus reaches, which atheris' edge count does not
say in lines:

    .venv/bin/coverage run --include='dnsfilter/*' -m fuzz.replay response .fuzz/response/corpus
    .venv/bin/coverage report
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path


def main(argv: list[str]) -> int:
    from fuzz.targets import TARGETS

    if len(argv) < 3 or argv[1] not in TARGETS:
        print(f"usage: python -m fuzz.replay TARGET PATH...   (targets: {', '.join(TARGETS)})")
        return 2
    target = TARGETS[argv[1]]
    files: list[Path] = []
    for name in argv[2:]:
        path = Path(name)
        files.extend(sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path])
    failed = 0
    for path in files:
        try:
            target(path.read_bytes())
        except Exception:
            failed += 1
            print(f"{path}: {traceback.format_exc()}", file=sys.stderr)
    print(f"{len(files)} inputs, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
