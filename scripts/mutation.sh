#!/usr/bin/env bash
# Mutation testing of the datapath and the list matcher/exporter (issue 18). NOT part of CI:
# scripts/test.sh and .ci/run never call it. It runs mutmut ([tool.mutmut] in pyproject.toml)
# with the unit tests, one module at a time within a time budget, and prints per module
# killed / tried / total and the surviving mutants.
#
# Usage: scripts/mutation.sh [MODULE...]
#   MODULE: datapath/wire datapath/cache datapath/policy datapath/blocking datapath/resolver
#           lists/model lists/export (default: all of them)
# Environment:
#   MUTATION_BUDGET   minutes per module (default 20); mutmut is stopped (SIGINT) when it runs out
#                     and only the mutants it finished count
#   MUTATION_SAMPLE   try at most this many mutants per module, spread evenly over the module
#                     (sorted by name, every k-th); unset or 0 tries them all
#   MUTATION_SAMPLE_OFFSET  start the sample this many names further on (default 0): another
#                     sample of the same size, to check that killing one sample's survivors
#                     carried over to the rest
#   MUTATION_WORKERS  mutmut worker processes (default 1; the CI machines have two cores)
#   MUTATION_KEEP=1   keep mutants/ from the last run (reuses the test-coverage stats); by default
#                     it is deleted so that new tests and changed sources are always picked up
# See `mutmut show NAME` for a mutant's diff and `mutmut apply NAME` to try it by hand.
#
# Leave tests/ alone while it runs: mutmut copies tests/ into mutants/ again at every
# module's run, and a test that fails there stops the run (run it from an exported copy,
# `git archive HEAD | tar -x -C DIR`, to go on working meanwhile). mutmut only sees code
# that runs during a test: objects built at import time (module-level policies, memo
# tables filled before its workers fork) hide their constructors' mutants.
# Runtime: about 3 minutes to generate the ~4,100 mutants and collect coverage, then the
# budget per module; MUTATION_SAMPLE=60 MUTATION_BUDGET=5 takes about 23 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET_MIN="${MUTATION_BUDGET:-20}"
SAMPLE="${MUTATION_SAMPLE:-0}"
OFFSET="${MUTATION_SAMPLE_OFFSET:-0}"
WORKERS="${MUTATION_WORKERS:-1}"
ALL_MODULES=(datapath/wire datapath/cache datapath/policy datapath/blocking datapath/resolver lists/model lists/export)
if (($#)); then MODULES=("$@"); else MODULES=("${ALL_MODULES[@]}"); fi

MUTMUT=.venv/bin/mutmut
if [ ! -x "$MUTMUT" ]; then
  echo "no $MUTMUT: run: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'" >&2
  exit 1
fi
for m in "${MODULES[@]}"; do
  [ -f "dnsfilter/$m.py" ] || { echo "no module dnsfilter/$m.py" >&2; exit 2; }
done

[ "${MUTATION_KEEP:-0}" = 1 ] || rm -rf mutants

# Generate the mutants of every configured module and collect which tests reach which function.
# A run over a name that matches nothing does exactly that and then stops (mutmut asserts the
# filter matched), so the per-module runs below start from cached stats.
if [ ! -f mutants/mutmut-stats.json ]; then
  echo "== generating mutants and collecting coverage stats (runs tests/unit once)"
  mkdir -p mutants
  "$MUTMUT" run --max-children "$WORKERS" "no.such.mutant" >mutants/generate.log 2>&1 || true
  if [ ! -f mutants/mutmut-stats.json ]; then
    cat mutants/generate.log >&2
    echo "mutmut could not collect stats" >&2
    exit 1
  fi
fi

# Prints the mutants to try for a module, and forgets any earlier result for them, so that a
# run cut short by the budget counts only what this run tried.
select_mutants() {
  .venv/bin/python - "$1" "$SAMPLE" "$OFFSET" <<'EOF'
import json, sys
meta_path, sample = f"mutants/dnsfilter/{sys.argv[1]}.py.meta", int(sys.argv[2])
offset = int(sys.argv[3])
with open(meta_path) as f:
    meta = json.load(f)
names = sorted(meta["exit_code_by_key"])
if sample and sample < len(names):
    step = len(names) / sample
    names = [names[(int(i * step) + offset) % len(names)] for i in range(sample)]
for name in names:
    meta["exit_code_by_key"][name] = None
with open(meta_path, "w") as f:
    json.dump(meta, f, indent=4)
print("\n".join(names))
EOF
}

# killed / tried / total for a module, then the survivors (timeouts count as killed, as in
# mutmut's own badge; "no tests" mutants count as tried and not killed). Survivors listed
# in scripts/mutation-equivalent.txt are counted apart, with the score without them.
tally() {
  .venv/bin/python - "$1" <<'EOF'
import json, sys
from collections import Counter
from mutmut.stats import status_by_exit_code
module = sys.argv[1]
with open(f"mutants/dnsfilter/{module}.py.meta") as f:
    codes = json.load(f)["exit_code_by_key"]
equivalent = {}
with open("scripts/mutation-equivalent.txt") as f:
    for line in f:
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.strip().partition("  ")
            equivalent[name] = reason
status = {name: status_by_exit_code[code] for name, code in codes.items()}
for name, s in status.items():
    if s == "survived" and name in equivalent:
        status[name] = "equivalent"
counts = Counter(status.values())
tried = len(codes) - counts["not checked"]
killed = counts["killed"] + counts["timeout"] + counts["caught by type check"]
score = f"{100 * killed / tried:.1f} %" if tried else "-"
real = tried - counts["equivalent"]
without = f"{100 * killed / real:.1f} %" if real else "-"
print(f"{module}: killed {killed} / tried {tried} ({score}; {without} without"
      f" {counts['equivalent']} equivalent); {len(codes)} mutants in all;"
      f" survived {counts['survived']}, no tests {counts['no tests']},"
      f" timeout {counts['timeout']}, suspicious {counts['suspicious']}")
shown = ("survived", "no tests", "suspicious", "equivalent")
for name in sorted(n for n, s in status.items() if s in shown):
    note = f"  ({equivalent[name]})" if status[name] == "equivalent" else ""
    print(f"    {status[name]}: {name}{note}")
EOF
}

start=$SECONDS
summary=()
for m in "${MODULES[@]}"; do
  mapfile -t names < <(select_mutants "$m")
  echo "== dnsfilter/$m.py: ${#names[@]} mutants, budget ${BUDGET_MIN} min"
  # SIGINT lets mutmut stop its workers and save; SIGKILL 30 s later if it does not.
  timeout --signal=INT --kill-after=30 "$((BUDGET_MIN * 60))" \
    "$MUTMUT" run --max-children "$WORKERS" "${names[@]}" >"mutants/$(echo "$m" | tr / _).log" 2>&1 || true
  summary+=("$(tally "$m")")
  printf '%s\n' "${summary[-1]}"
done

echo
echo "== mutation score per module (${SECONDS}s in all, $((SECONDS - start))s testing mutants)"
for s in "${summary[@]}"; do
  printf '%s\n' "$s" | head -1
done
