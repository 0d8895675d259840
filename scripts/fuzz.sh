#!/usr/bin/env bash
# Coverage-guided fuzzing of every fuzz target (fuzz/targets.py) under atheris, one after the
# other, each for a fixed budget. Not run by CI (CI runs tests/unit/test_fuzz_targets.py).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 300 seconds, every target)
#   FUZZ_DIR   where corpora, crash files and logs go (default .fuzz/; kept between runs, so a
#              later run starts from what earlier ones found)
#   FUZZ_RSS_MB, FUZZ_TIMEOUT   libFuzzer's -rss_limit_mb (1024) and per-input -timeout (10 s)
#   FUZZ_MAX_RESTARTS  how often a target starts again after a crash within its budget (5)
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
MAX_RESTARTS="${FUZZ_MAX_RESTARTS:-5}"

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
    # PyYAML is instrumented too and slow: small documents keep the fuzzer at a useful pace.
    yaml | config) max_len=8192 ;;
    *) max_len=65536 ;;
  esac
  echo "== $target: ${SECONDS_PER_TARGET}s (logs: $work/log.N)"
  # libFuzzer stops at the first crash: start again (from the corpus so far) until the
  # budget is spent, at most MAX_RESTARTS times, so one bug does not hide the next.
  started=$(date +%s)
  runs=0
  attempt=0
  failed=""
  while :; do
    left=$((SECONDS_PER_TARGET - ($(date +%s) - started)))
    ((left > 0)) || break
    attempt=$((attempt + 1))
    log="$work/log.$attempt"
    set +e
    .venv/bin/python -m fuzz.run "$target" --seeds "$work/seeds" \
      -max_total_time="$left" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" \
      -max_len="$max_len" -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
      "$work/corpus" >"$log" 2>&1
    code=$?
    set -e
    these=$(grep -oP '^stat::number_of_executed_units:\s*\K\d+' "$log" || echo 0)
    runs=$((runs + these))
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)
    if [ "$code" -ne 0 ]; then
      failed="yes"
      echo "   attempt $attempt: exit $code after $these runs"
      grep -E '^(=== Uncaught|[A-Za-z.]+(Error|Exception)|==[0-9]+== ERROR)' "$log" | head -4 || true
      ((attempt <= MAX_RESTARTS)) || break
    else
      break
    fi
  done
  crashes=$(find "$work/artifacts" -type f | sort | tr '\n' ' ')
  if [ -n "$failed" ]; then
    status=1
    summary+=("$target: FAILED, $runs runs in $attempt attempts; $last; artifacts: $crashes")
  else
    summary+=("$target: ok, $runs runs in ${SECONDS_PER_TARGET}s; $last")
  fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$status"
