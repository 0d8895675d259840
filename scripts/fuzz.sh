#!/usr/bin/env bash
# Coverage-guided fuzzing of every fuzz target (fuzz/targets.py) under atheris, one after the
# other, each for a fixed budget. Not run by CI (CI runs tests/unit/test_fuzz_targets.py).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 300 seconds, every target)
#   FUZZ_DIR   where corpora, crash files and logs go (default .fuzz/; kept between runs, so a
#              later run starts from what earlier ones found)
#   FUZZ_RSS_MB, FUZZ_TIMEOUT   libFuzzer's -rss_limit_mb (1024) and per-input -timeout (10 s)
# Exit status: 0 when no target crashed, hung or ran out of memory; 1 otherwise. The summary
# names each target's crash files; replay one with
#   .venv/bin/python -m fuzz.run TARGET CRASH_FILE
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-300}"
shift || true
ALL_TARGETS=(query response hosts plain adblock rpz yaml config)
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=("${ALL_TARGETS[@]}")
FUZZ_DIR="${FUZZ_DIR:-.fuzz}"
RSS_MB="${FUZZ_RSS_MB:-1024}"
TIMEOUT="${FUZZ_TIMEOUT:-10}"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
fi
if ! .venv/bin/python -c "import atheris" 2>/dev/null; then
  echo "== installing atheris"
  # atheris ships manylinux wheels for CPython 3.8-3.11; elsewhere pip builds it from source,
  # which needs clang and libFuzzer (Debian: clang, libclang-rt-dev).
  .venv/bin/python -m pip install -q --disable-pip-version-check atheris
fi

status=0
summary=()
for target in "${TARGETS[@]}"; do
  work="$FUZZ_DIR/$target"
  mkdir -p "$work/corpus" "$work/artifacts"
  # Lists and configs are files: let inputs grow to 64 KiB; DNS messages stay small.
  case "$target" in
    query | response) max_len=4096 ;;
    *) max_len=65536 ;;
  esac
  echo "== $target: ${SECONDS_PER_TARGET}s (log: $work/log)"
  set +e
  .venv/bin/python -m fuzz.run "$target" --seeds "$work/seeds" \
    -max_total_time="$SECONDS_PER_TARGET" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" \
    -max_len="$max_len" -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
    "$work/corpus" >"$work/log" 2>&1
  code=$?
  set -e
  runs=$(grep -oP '^stat::number_of_executed_units:\s*\K\d+' "$work/log" || echo "?")
  last=$(grep -E '^#[0-9]+' "$work/log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)
  crashes=$(find "$work/artifacts" -type f | sort)
  if [ "$code" -ne 0 ] || [ -n "$crashes" ]; then
    status=1
    summary+=("$target: FAILED (exit $code) after $runs runs; $last; artifacts: ${crashes:-none}")
    grep -E '^(==[0-9]+== ERROR|=== Uncaught|Traceback|[A-Za-z]+Error)' "$work/log" | head -5 || true
  else
    summary+=("$target: ok, $runs runs in ${SECONDS_PER_TARGET}s; $last")
  fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$status"
