"""CPU time to parse a million-name list in each third-party format.

(docs/operators/configuration.md, "List formats".)

    .venv/bin/python bench/listload.py            # 1M names, median of 3 runs per format
    .venv/bin/python bench/listload.py --names 100000 --runs 1

Names are seeded random `label.label.tld` in each format's usual spelling; the time is
process CPU time of parse_list (wall time is printed too: on a busy machine it is larger).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/listload.py`: make dnsfilter importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dnsfilter.lists.formats import parse_list


def _names(count: int) -> list[str]:
    rng = random.Random(1)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

    def label() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(4, 12)))

    tlds = ["com", "net", "org", "io", "de"]
    return [f"{label()}.{label()}.{rng.choice(tlds)}" for _ in range(count)]


def texts(names: list[str]) -> dict[str, tuple[str, str]]:
    """Label -> (format, text) of every list measured."""
    soa = "$TTL 60\n@ SOA a. b. 1 1 1 1 1\n"
    return {
        "plain": ("plain", "# header\n" + "\n".join(names) + "\n"),
        "hosts": ("hosts", "# header\n" + "".join(f"0.0.0.0 {n}\n" for n in names)),
        "adblock": ("adblock", "! header\n" + "".join(f"||{n}^\n" for n in names)),
        "rpz, name only": ("rpz", soa + "".join(f"{n} CNAME .\n" for n in names)),
        "rpz, name and *.name": (
            "rpz",
            soa + "".join(f"{n} CNAME .\n*.{n} CNAME .\n" for n in names),
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--names", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    names = _names(args.names)
    print(f"| list ({args.names:,} names) | lines | CPU s (median) | wall s |")
    print("|---|---|---|---|")
    for label, (fmt, text) in texts(names).items():
        cpu, wall = [], []
        for _ in range(args.runs):
            gc.collect()
            started, clock = time.process_time(), time.perf_counter()
            parse_list(text, "bench", "bench", fmt)
            cpu.append(time.process_time() - started)
            wall.append(time.perf_counter() - clock)
        lines = text.count("\n")
        print(
            f"| {label} | {lines:,} | {statistics.median(cpu):.2f} | "
            f"{statistics.median(wall):.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
