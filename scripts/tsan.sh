#!/usr/bin/env bash
# `make tsan`: pgmux built with ThreadSanitizer (in its own scratch path, .build/tsan) runs the
# multi-worker integration tests (WorkerTests; the test runner itself is the normal debug build,
# given the sanitized pgmux through PGMUX_BINARY) and a torture run with two event loops. Any
# data race report fails the run (the report is printed). Ends with "N passed, N failed".
#
#   scripts/tsan.sh [--short]     --short (what `make test` runs): WorkerTests and torture --quick;
#                                 without it: WorkerTests and 3 minutes of torture
set -uo pipefail
cd "$(dirname "$0")/.."
short=0; [ "${1:-}" = "--short" ] && short=1
scratch=.build/tsan
reports=$(mktemp -d /tmp/pgmux-tsan-XXXXXX)
chmod 777 "$reports"
passed=0 failed=0
echo "tsan: building pgmux with -sanitize=thread"
if ! swift build --sanitize=thread --product pgmux --scratch-path "$scratch" 2>&1 | grep -E "error|Compiling|Build" | grep -v "^\["; then :; fi
bin="$scratch/debug/pgmux"
[ -x "$bin" ] || { echo "tsan: build failed"; echo "0 passed, 1 failed"; exit 1; }
swift build --build-tests 2>&1 | grep -E "error" || true
# halt_on_error: a race stops pgmux at once, so the test that met it fails too.
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 log_path=$reports/race second_deadlock_stack=1"
export PGMUX_BINARY=$PWD/$bin
if swift test --skip-build --filter WorkerTests 2>&1 | grep -E "Executed [0-9]+ tests" | tail -n 1 | grep -q "with 0 failures"; then
  passed=$((passed + 1)); echo "tsan: WorkerTests passed"
else
  failed=$((failed + 1)); echo "tsan: WorkerTests failed"
fi
run=(--quick); [ $short = 1 ] || run=(--minutes 3)
if scripts/torture.sh "${run[@]}" --loops 2 --pgmux "$PWD/$bin" --deadline 60 > "$reports/torture.log" 2>&1; then
  passed=$((passed + 1)); echo "tsan: torture (${run[*]}, two loops) passed"
else
  failed=$((failed + 1)); echo "tsan: torture failed:"; tail -n 30 "$reports/torture.log"
fi
if ls "$reports"/race* >/dev/null 2>&1; then
  failed=$((failed + 1))
  echo "tsan: data race reports:"
  cat "$reports"/race*
else
  passed=$((passed + 1)); echo "tsan: no data race reported"
fi
rm -rf "$reports"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
