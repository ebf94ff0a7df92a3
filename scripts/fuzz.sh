#!/usr/bin/env bash
# Coverage-guided fuzzing of pgmux's untrusted-input parsers with libFuzzer + AddressSanitizer.
#   scripts/fuzz.sh [SECONDS]   (default 60). New interesting inputs are merged into
#   Tests/FuzzCorpus, which the unit tests replay on every run. A crash leaves crash-* files here.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
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
"$bin" -merge=1 Tests/FuzzCorpus "$work" >/dev/null 2>&1 || true
echo "fuzz: ${seconds}s without a crash"
