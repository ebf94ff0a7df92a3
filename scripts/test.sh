#!/usr/bin/env bash
# Runs every test (unit tests of the pure core, then integration tests against a real
# PostgreSQL 15 that the test harness starts itself) and ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
# psycopg's binary wheel (libpq 17+) for the direct TLS tests; without it they skip.
scripts/pyvenv.sh || echo "scripts/pyvenv.sh failed: DirectTLSTests will skip" >&2
swift build --build-tests 2>&1 | grep -E "error|warning: unre|Compiling|Build" | grep -v "^\[" || true
swift test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# XCTest's closing line: "Executed N tests, with M failures" or, with skips, "Executed N tests,
# with K tests skipped and M failures".
summary=$(grep -E "Executed [0-9]+ tests?, with ([0-9]+ tests? skipped and )?[0-9]+ failures?" "$log" | tail -n 1)
total=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
failed=$(echo "$summary" | sed -E 's/.* ([0-9]+) failures?.*/\1/')
skipped=$(grep -cE "Test Case .* skipped" "$log" || true)
rm -f "$log"
if [ -z "$summary" ]; then echo "0 passed, 1 failed"; exit 1; fi
passed=$((total - failed - skipped))
# A short coverage-guided fuzz run of the untrusted-input parsers counts as one more test.
if scripts/fuzz.sh "${FUZZ_SECONDS:-20}" --no-merge; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
# A short randomized torture run (about 90 s: three pool modes, chaos, the pgbench reproduction of
# the prepared-statement hang) against the pgmux just built counts as one more.
if scripts/torture.sh --quick; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
# The release build (what `make run`, `make bench` and users run: the optimizer may end lifetimes
# earlier than a debug build does) under the multi-worker and pool-mode tests counts as one more.
if swift build -c release 2>&1 | grep -E "error" ; then failed=$((failed + 1)); else
  if PGMUX_BINARY=$PWD/.build/release/pgmux swift test --skip-build --filter "WorkerTests|PoolModeTests" 2>&1 | grep -E "Executed [0-9]+ tests" \
      | tail -n 1 | grep -q "with 0 failures"; then passed=$((passed + 1)); echo "release build: WorkerTests and PoolModeTests passed"
  else failed=$((failed + 1)); echo "release build: WorkerTests or PoolModeTests failed"; fi
fi
# pgmux under ThreadSanitizer: the multi-worker integration tests and torture --quick with two
# event loops, no data race reported (scripts/tsan.sh --short) counts as one more.
if scripts/tsan.sh --short; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ] && [ "$status" = 0 ]
