#!/usr/bin/env bash
# Repeat one test file (optionally one test of it) N times in a row and count the passes, to
# hunt flaky tests. With --busy, two CPU burners keep both cores busy meanwhile (as the rest of
# the suite does in CI); they are stopped by PID when the runs end.
#
#   tests/repeat.sh [--busy] [-n N] TEST_FILE [FILTER]
#   tests/repeat.sh --busy -n 20 actions sync_now_moves
#
# Each failing run's output is kept in target/repeat/<file>-<run>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=20 busy=0
while (($#)); do
  case "$1" in
    --busy) busy=1; shift ;;
    -n) runs="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
file="${1:?usage: tests/repeat.sh [--busy] [-n N] TEST_FILE [FILTER]}"
filter="${2:-}"
mkdir -p target/repeat

cargo test --locked --features volsync-dr/test-hooks --test "$file" --no-run >/dev/null 2>&1 || cargo test --locked --features volsync-dr/test-hooks --test "$file" --no-run

burners=()
stop_burners() { for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop_burners EXIT
if ((busy)); then
  for _ in 1 2; do
    # Bounded: each burner ends by itself after an hour even if this script is killed.
    timeout 3600 sh -c 'while :; do :; done' &
    burners+=("$!")
  done
fi

passed=0 failed=0
for ((i = 1; i <= runs; i++)); do
  log="target/repeat/$file-$i.log"
  start=$(date +%s)
  if cargo test --locked --features volsync-dr/test-hooks --test "$file" -- ${filter:+"$filter"} >"$log" 2>&1; then
    passed=$((passed + 1)); rm -f "$log"; verdict=ok
  else
    failed=$((failed + 1)); verdict="FAILED (see $log)"
  fi
  echo "run $i/$runs: $verdict in $(( $(date +%s) - start ))s"
done
echo "$file${filter:+ $filter}: $passed passed, $failed failed"
((failed == 0))
