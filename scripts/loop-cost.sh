#!/usr/bin/env bash
# The work pgmux does per transaction with workers = 1 and with more loops, counted:
# user-space instructions (callgrind) and system calls (strace). `make loop-cost` runs it.
#
#   scripts/loop-cost.sh [--workers 1,2] [--rate TPS] [--clients N] [--cpu-rate TPS] [--rounds N]
#                        [--pgmux PATH]
#
# CPU time per transaction on a small shared machine moves with everything else running there:
# two busy pooler threads on 2 vCPUs run each instruction slower than one does, whoever's threads
# they are. This separates what pgmux's design costs (more instructions or system calls for the
# same transactions: moving servers, sharing counts, waking other loops) from what the machine
# costs. pgbench -S -M simple with --clients (default 50) clients runs at a fixed --rate (default
# 300 tps, low enough that pgmux under valgrind is never the bottleneck, so every loop wakes up
# as it would on a machine with room) against pgmux in front of a throwaway PostgreSQL 15, in
# transaction pooling with a pool of 20. Each count is the difference of a 4-second and a
# 14-second run over the difference of their transactions, so logins and start-up cancel out.
# The counts are exact for a run, but how many events each wake-up of a loop finds varies between
# runs: read them with epoll_waits (each wake-up is one, and about a thousand instructions).
# Then CPU time per transaction at --cpu-rate (default 10,000 tps; 0 skips it), natively, over
# --rounds rounds (default 3): one workers = 1 process, two workers = 1 processes taking half the
# clients and half the rate each (PgBouncer's so_reuseport recipe: nothing shared), and one process
# with the second --workers value. Two processes against one shows what a second busy pooler thread
# costs on this machine; the several-loop process against two processes, what sharing costs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
WORKERS=1,2 RATE=300 CLIENTS=50 CPU_RATE=10000 ROUNDS=3 PGMUX=$root/.build/release/pgmux
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --cpu-rate) CPU_RATE=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --pgmux) case "$2" in /*) PGMUX=$2 ;; *) PGMUX=$OLDPWD/$2 ;; esac; shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "loop-cost.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[[ "$RATE" =~ ^[1-9][0-9]*$ && "$CLIENTS" =~ ^[1-9][0-9]*$ && "$WORKERS" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ &&
   "$CPU_RATE" =~ ^[0-9]+$ && "$ROUNDS" =~ ^[1-9][0-9]*$ && "$CLIENTS" -ge 2 ]] ||
  { echo "loop-cost.sh: --rate, --clients (2 or more), --rounds take positive integers, --cpu-rate 0 or more, --workers a list" >&2; exit 2; }
for tool in valgrind strace pgbench psql; do
  command -v $tool >/dev/null || { echo "loop-cost.sh: $tool is needed (make loop-cost installs it)" >&2; exit 1; }
done
[ -x "$PGMUX" ] || { echo "loop-cost.sh: $PGMUX missing: run make first" >&2; exit 1; }

is_root=0; [ "$(id -u)" = 0 ] && is_root=1
as_pg() { if [ $is_root = 1 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
tmp=$(mktemp -d /tmp/pgmux-loop-cost-XXXXXX)
chmod 755 "$tmp"
cleanup() {
  set +e
  pkill -INT -f "callgrind-out-file=$tmp/" 2>/dev/null
  pkill -f "^$PGMUX $tmp/" 2>/dev/null
  sleep 0.5
  scripts/pg-cluster.sh stop "$tmp/pg"
  rm -rf "$tmp"
}
trap cleanup EXIT

source scripts/bench-cluster.sh
start_bench_cluster "$tmp/pg" 15532
export PGPASSWORD=benchpw PGSSLMODE=disable
printf '"bench" "benchpw"\n' > "$tmp/userlist.txt"
[ $is_root = 1 ] && chown -R postgres: "$tmp"
port=$(free_port 16532)

ini() {   # dir workers
  cat > "$1/pgmux.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $1
auth_type = scram-sha-256
auth_file = $tmp/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
log_connections = 0
log_disconnections = 0
logfile = $1/pgmux.log
workers = $2
INI
  [ $is_root = 1 ] && chown -R postgres: "$1"
  return 0
}
wait_listening() { local i; for i in $(seq 300); do ss -Hltn "sport = :$port" | grep -q . && return 0; sleep 0.1; done; return 1; }
wait_closed() { local i; for i in $(seq 100); do ss -Hltn "sport = :$port" | grep -q . || return 0; sleep 0.1; done; }
# transactions of one pgbench run at the fixed rate
load() {   # seconds outfile
  pgbench -n -S -M simple -c "$CLIENTS" -j 2 -R "$RATE" -T "$1" -h 127.0.0.1 -p "$port" -U bench bench > "$2" 2>&1 ||
    { echo "loop-cost.sh: pgbench failed:" >&2; tail -n 5 "$2" >&2; exit 1; }
  awk '/number of transactions actually processed/ {split($NF, a, "/"); print a[1]; exit}' "$2"
}

# "instructions transactions" of a pgmux process (every thread) that served `seconds` of load
instructions() {   # workers seconds
  local dir="$tmp/cg-w$1-$2" launcher n
  mkdir -p "$dir"; ini "$dir" "$1"
  as_pg valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" "$PGMUX" "$dir/pgmux.ini" \
    > "$dir/valgrind.log" 2>&1 &
  launcher=$!
  wait_listening || { echo "loop-cost.sh: pgmux under valgrind did not start" >&2; tail -n 5 "$dir/valgrind.log" >&2; exit 1; }
  n=$(load "$2" "$dir/pgbench.out")
  pkill -INT -f "callgrind-out-file=$dir/callgrind.out" || true
  wait "$launcher" 2>/dev/null || true
  wait_closed
  # without --separate-threads, one file whose totals cover every thread
  echo "$(awk '/^(summary|totals):/ {print $2; exit}' "$dir/callgrind.out") $n"
}

# "syscalls transactions epoll_waits" of a pgmux process (every thread) under strace -f -c
syscalls() {   # workers seconds
  local dir="$tmp/st-w$1-$2" pid n
  mkdir -p "$dir"; ini "$dir" "$1"
  as_pg "$PGMUX" "$dir/pgmux.ini" > "$dir/out.log" 2>&1 &
  pid=$!
  wait_listening || { echo "loop-cost.sh: pgmux did not start" >&2; exit 1; }
  pid=$(pgrep -f "^$PGMUX $dir/pgmux.ini" | head -n 1)   # not runuser's own process
  strace -f -c -q -p "$pid" -o "$dir/strace.out" &
  local tracer=$!
  sleep 1
  n=$(load "$2" "$dir/pgbench.out")
  kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true
  wait_closed
  # strace -c: "% time, seconds, usecs/call, calls, errors (may be blank), syscall"
  echo "$(awk '$NF == "total" {print $4}' "$dir/strace.out") $n $(awk '$NF == "epoll_wait" {print $4}' "$dir/strace.out")"
}

echo "pgmux work per transaction (pgbench -S, $CLIENTS clients at $RATE tps, pool of 20; 14 s run minus 4 s run)"
printf '  %-8s %14s %12s %14s\n' workers instructions syscalls epoll_waits
declare -A ins=() sys=()
IFS=, read -r -a wl <<< "$WORKERS"
for w in "${wl[@]}"; do
  read -r i1 n1 <<< "$(instructions "$w" 4)"
  read -r i2 n2 <<< "$(instructions "$w" 14)"
  read -r s1 m1 e1 <<< "$(syscalls "$w" 4)"
  read -r s2 m2 e2 <<< "$(syscalls "$w" 14)"
  [ $((n2 - n1)) -gt 0 ] && [ $((m2 - m1)) -gt 0 ] || { echo "loop-cost.sh: no transactions measured" >&2; exit 1; }
  ins[$w]=$(( (i2 - i1) / (n2 - n1) ))
  sys[$w]=$(awk -v a="$s1" -v b="$s2" -v n=$((m2 - m1)) 'BEGIN {printf "%.2f", (b - a) / n}')
  printf '  %-8s %14s %12s %14s\n' "$w" "$(printf "%'d" "${ins[$w]}")" "${sys[$w]}" \
    "$(awk -v a="${e1:-0}" -v b="${e2:-0}" -v n=$((m2 - m1)) 'BEGIN {printf "%.2f", (b - a) / n}')"
done
first=${wl[0]}
for w in "${wl[@]:1}"; do
  awk -v a="${ins[$first]}" -v b="${ins[$w]}" -v c="${sys[$first]}" -v d="${sys[$w]}" -v w="$w" -v f="$first" \
    'BEGIN {printf "  workers %s / workers %s: instructions %.3f, syscalls %.3f\n", w, f, b / a, d / c}'
done

[ "$CPU_RATE" -gt 0 ] || exit 0
[ ${#wl[@]} -ge 2 ] || exit 0
# ---- CPU time at a fixed rate, natively: one w1, two w1 processes, one with more loops
many=${wl[1]}
declare -A cpu_port=() cpu_pid=()
for t in one two more; do
  cpu_port[$t]=$(free_port $((port + 1)))
  d="$tmp/cpu-$t"; mkdir -p "$d"
  ini "$d" "$([ $t = more ] && echo "$many" || echo 1)"
  sed -i "s/^listen_port = .*/listen_port = ${cpu_port[$t]}/" "$d/pgmux.ini"
  as_pg "$PGMUX" "$d/pgmux.ini" > "$d/out.log" 2>&1 &
  for i in $(seq 100); do ss -Hltn "sport = :${cpu_port[$t]}" | grep -q . && break; sleep 0.1; done
  cpu_pid[$t]=$(pgrep -f "^$PGMUX $d/pgmux.ini" | head -n 1)
  [ -n "${cpu_pid[$t]}" ] || { echo "loop-cost.sh: pgmux did not start" >&2; tail -n 5 "$d/out.log" >&2; exit 1; }
  port=${cpu_port[$t]}
done
ticks() { local s; s=$(cat "/proc/$1/stat"); s=${s##*) }; set -- $s; echo $(( ${12} + ${13} )); }
CLK_TCK=$(getconf CLK_TCK)
# µs of CPU per transaction of the given processes while pgbench runs against the given ports
cpu_run() {   # "pids" clients rate port...
  local pids=$1 c=$2 r=$3 i=0 pbs=() p t0=0 t1=0 w0 w1 tx=0; shift 3
  for p in "$@"; do
    pgbench -n -S -M simple -c "$c" -j 1 -R "$r" -T 9 -h 127.0.0.1 -p "$p" -U bench bench > "$tmp/cpu-pgbench-$i.out" 2>&1 &
    pbs+=($!); i=$((i + 1))
  done
  sleep 2
  for p in $pids; do t0=$((t0 + $(ticks "$p"))); done; w0=$(date +%s%N)
  sleep 6
  for p in $pids; do t1=$((t1 + $(ticks "$p"))); done; w1=$(date +%s%N)
  wait "${pbs[@]}" || { echo "loop-cost.sh: pgbench failed:" >&2; tail -n 5 "$tmp"/cpu-pgbench-*.out >&2; exit 1; }
  tx=$(cat "$tmp"/cpu-pgbench-*.out | awk '/^tps =/ {s += $3} END {print s}'); rm -f "$tmp"/cpu-pgbench-*.out
  awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v tps="$tx" -v ns=$((w1 - w0)) 'BEGIN {printf "%.2f", t / hz * 1e6 / (tps * ns / 1e9)}'
}
echo
echo "pooler CPU per transaction in µs, natively (pgbench -S, $CLIENTS clients at $CPU_RATE tps; $ROUNDS rounds)"
printf '  %-6s %14s %22s %14s\n' round "1 x workers=1" "2 x workers=1 (half)" "1 x workers=$many"
one=() two=() more=()
for r in $(seq "$ROUNDS"); do
  one+=("$(cpu_run "${cpu_pid[one]}" "$CLIENTS" "$CPU_RATE" "${cpu_port[one]}")")
  two+=("$(cpu_run "${cpu_pid[one]} ${cpu_pid[two]}" $((CLIENTS / 2)) $((CPU_RATE / 2)) "${cpu_port[one]}" "${cpu_port[two]}")")
  more+=("$(cpu_run "${cpu_pid[more]}" "$CLIENTS" "$CPU_RATE" "${cpu_port[more]}")")
  printf '  %-6s %14s %22s %14s\n' "$r" "${one[-1]}" "${two[-1]}" "${more[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
m1=$(median "${one[@]}") m2=$(median "${two[@]}") m3=$(median "${more[@]}")
printf '  %-6s %14s %22s %14s\n' median "$m1" "$m2" "$m3"
awk -v a="$m1" -v b="$m2" -v c="$m3" -v w="$many" 'BEGIN {
  printf "  a second busy pooler process (2 x workers=1 / 1 x workers=1): %.3f\n", b / a
  printf "  sharing between loops (1 x workers=%s / 2 x workers=1):       %.3f\n", w, c / b
  printf "  together (workers=%s / workers=1):                            %.3f\n", w, c / a }'
