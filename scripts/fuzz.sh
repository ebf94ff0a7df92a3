#!/usr/bin/env bash
# Coverage-guided fuzzing of pgmux's untrusted-input parsers with libFuzzer + AddressSanitizer.
#   scripts/fuzz.sh [SECONDS] [--no-merge]   (default 60). New interesting inputs are merged into
#   Tests/FuzzCorpus (unless --no-merge, as `make test` runs it), which the unit tests replay on
#   every run. A crash leaves its input as .build/fuzz-crash-*.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
merge=1
[ "${2:-}" = "--no-merge" ] && merge=0
bin=.build/pgmux-fuzz
mkdir -p .build
swiftc -sanitize=fuzzer,address -parse-as-library -Onone -g -module-name PgmuxFuzz \
  -I Sources/COpenSSL $(find Sources/PgmuxCore -name '*.swift' | sort) Fuzz/main.swift \
  -lssl -lcrypto -o "$bin" 2>&1 | { grep -v "Cannot export local symbol" || true; }
work=$(mktemp -d)
trap 'rm -rf "$work" "$work.log"' EXIT
cp Tests/FuzzCorpus/* "$work"/ 2>/dev/null || true
status=0
"$bin" -max_total_time="$seconds" -max_len=1024 -artifact_prefix=.build/fuzz- "$work" > "$work.log" 2>&1 || status=$?
grep -E "^Done|ERROR|SUMMARY" "$work.log" || true
if [ "$status" != 0 ]; then
  echo "fuzz: crash found (input saved as .build/fuzz-crash-*); see the trace above"
  tail -n 40 "$work.log"
  exit 1
fi
if [ "$merge" = 1 ]; then "$bin" -merge=1 Tests/FuzzCorpus "$work" >/dev/null 2>&1 || true; fi
echo "fuzz: ${seconds}s without a crash"
