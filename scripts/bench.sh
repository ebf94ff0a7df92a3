#!/usr/bin/env bash
# `make bench`: pgmux against one or more PgBouncer binaries (each started here with its own ini,
# never the distribution's service) and against PostgreSQL directly, on a throwaway PostgreSQL 15
# cluster.
#
#   scripts/bench.sh [--quick] [--rounds N] [--duration S] [--only a,b,...] [--scale N]
#                    [--idle-counts 1000,5000,10000] [--floor] [--pgbouncer PATH[,PATH...]]
#                    [--tls-key rsa|ec] [--pgmux PATH] [--workers N[:even|load][,...]] [--connect-ms MS]
#
# --pgmux PATH: the pgmux binary to measure (default .build/release/pgmux), e.g. an older build
# to compare a change against.
# --workers 1,2 (N or auto): one pgmux target per value, pgmux-w1, pgmux-w2, ... (pgmux-auto),
# each started with "workers = N" in its ini (N:even or N:load adds "worker_placement = ...", the
# target then named pgmux-wN-even; e.g. --workers 1,2,2:even shows what two loops that both take
# clients carry when the default, load, keeps a light load on one); the report gives w2/w1 (each further one over the
# first) next to each pgmux over each PgBouncer. Without it: one target "pgmux", no workers line.
# --pgbouncer PATH[,PATH...] (repeatable): the PgBouncer binaries to compare against, each a target
# named after its --version (pgbouncer-1.18.0, pgbouncer-1.25.2, ...); default Debian's
# /usr/sbin/pgbouncer only. scripts/build-pgbouncer.sh builds a release into .pgbouncer/VERSION/.
# Workloads (--only picks; default all):
#   select      pgbench -S, simple protocol, 50 clients, -j 2
#   extended    pgbench -S -M extended, 50 clients
#   prepared    pgbench -S -M prepared, 50 clients (needs prepared-statement tracking in transaction
#               mode: PgBouncer has it on by default since 1.24, 1.18 lacks it: FAIL there is expected)
#   tpcb        pgbench TPC-B-like, 50 clients
#   many        pgbench -S, 1,000 clients over the pool of 20 (-T is 8 s longer: connecting counts)
#   latency-1k  many with pgbench's per-transaction log (-l): p50/p99/p99.9 latency per target
#   latency-10k the same with 10,000 clients (-T is 80 s longer; direct is skipped: PostgreSQL's
#               max_connections has room for the pools and 1,000 clients only)
#   scaling     SELECT 1 (pgbench -f, -M simple), 200 clients, pool of 20, poolers only, pgbench -j
#               half the CPUs (2 to 16): tps, the pooler's cores in use and tps per worker
#   churn       pgbench -S -C (a new connection, so a SCRAM login, per transaction), 20 clients
#   select-tls  select over TLS (sslmode=require), 50 clients
#   churn-tls   churn over TLS (sslmode=require): a TLS handshake and a SCRAM login per transaction
#   idle        RSS of the pooler with 1,000 / 5,000 / 10,000 idle authenticated clients (poolers
#               only), then pgbench -S with 1,000 more clients while all the idle ones stay connected
# TLS: a throwaway self-signed certificate is made for the run (--tls-key rsa: RSA 2048, the
# default; ec: ECDSA P-256); every pooler gets client_tls_sslmode = allow with it and no other
# client TLS setting (each pooler's defaults are measured), PostgreSQL gets ssl = on with it (so
# direct has TLS numbers), and server_tls_sslmode = disable keeps the pooler-to-server links plain
# in every workload. The *-tls workloads run with PGSSLMODE=require, all others with disable.
# Every pgbench workload runs against pgmux, each PgBouncer and direct, interleaved over --rounds
# rounds (default 3, target order rotated each round) of --duration seconds (default 10); medians
# are reported. --quick: 1 round of 3 s, idle 1,000 and 5,000 only (about 8 minutes, 3 of them
# latency-10k's logins). pgbench's -T counts connecting: workloads of more than 50 clients get
# --connect-ms (default 8) ms per client on top (2 s for 200 clients, 8 s for 1,000, 80 s for 10,000).
# Latency: pgbench 15 connects all its clients before the first transaction, so its log holds no
# login; each client's first transaction (all sent at the same instant) is left out. Debian's
# pgbench 15 waits with ppoll, not select, so one pgbench -j 2 takes 10,000 clients (ulimit -n is
# raised to the hard limit); the logs stay gzipped in results/<timestamp>/pgbench/txlog/.
# --floor adds one more target to the pgbench workloads: scripts/floor-relay.c, a 1:1 relay that
# does one recv and one send per message and nothing else. Its CPU per transaction is the least any
# pooler can pay on this machine, so the report shows how far each pooler is above that floor.
# A run with a pgbench error, failed or aborted clients, or a dead pooler is FAIL, never a number.
# Pooler CPU is utime+stime from /proc/PID/stat: every thread of the process (several workers too).
# For churn and churn-tls, a transaction is a connection (pgbench -C reconnects for every one),
# so their CPU figures are per connection.
# Results: Markdown tables on stdout, results/<timestamp>/results.md and results.json (raw runs in
# runs.jsonl under the target names, pgbench outputs and pooler log tails next to them).
# Everything started here is stopped and the cluster removed on exit, Ctrl-C included.
set -euo pipefail
caller=$(pwd)   # --pgbouncer and --pgmux paths are relative to where the script was started
cd "$(dirname "$0")/.."
root=$(pwd)

ROUNDS=3 DURATION=10 SCALE=10 ONLY="" IDLE_COUNTS=1000,5000,10000 FLOOR=0 TLS_KEY=rsa PGMUX_BIN=.build/release/pgmux
WORKERS="" CONNECT_MS=8
PGB_PATHS=()
ALL_WORKLOADS=(select extended prepared tpcb many churn select-tls churn-tls idle latency-1k latency-10k scaling)
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) ROUNDS=1 DURATION=3 IDLE_COUNTS=1000,5000 ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --scale) SCALE=$2; shift ;;
    --idle-counts) IDLE_COUNTS=$2; shift ;;
    --floor) FLOOR=1 ;;
    --pgbouncer) IFS=, read -r -a more <<< "$2"; PGB_PATHS+=("${more[@]}"); shift ;;
    --tls-key) TLS_KEY=$2; shift ;;
    --pgmux) case "$2" in /*) PGMUX_BIN=$2 ;; *) PGMUX_BIN=$caller/$2 ;; esac; shift ;;
    --workers) WORKERS=$2; shift ;;
    --connect-ms) CONNECT_MS=$2; shift ;;
    -h|--help) usage 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
  shift
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ && "$DURATION" =~ ^[1-9][0-9]*$ && "$SCALE" =~ ^[1-9][0-9]*$ &&
   "$CONNECT_MS" =~ ^[1-9][0-9]*$ ]] ||
  { echo "bench.sh: --rounds, --duration, --scale and --connect-ms take positive integers" >&2; exit 2; }
# the pgmux targets: "pgmux" (no workers line: the binary's default), or one per --workers value,
# pgmux-w1, pgmux-w2, ... (pgmux-auto for auto), each started with "workers = N" in its ini
declare -A PGMUX_WORKERS=() PGMUX_PLACEMENT=()
PGMUXES=()
if [ -z "$WORKERS" ]; then
  PGMUXES=(pgmux)
else
  IFS=, read -r -a wl <<< "$WORKERS"
  for v in "${wl[@]}"; do
    placement=
    if [[ "$v" == *:* ]]; then placement=${v#*:} v=${v%%:*}; fi
    case "$placement" in ''|load|even) ;;
      *) echo "bench.sh: --workers N:PLACEMENT takes load or even" >&2; exit 2 ;;
    esac
    case "$v" in
      auto) n=pgmux-auto ;;
      *) [[ "$v" =~ ^[1-9][0-9]*$ ]] ||
           { echo "bench.sh: --workers takes a comma-separated list of positive integers or auto" >&2; exit 2; }
         v=$((10#$v)) n=pgmux-w$v ;;
    esac
    [ -n "$placement" ] && n=$n-$placement
    [ -n "${PGMUX_WORKERS[$n]:-}" ] && continue
    PGMUX_WORKERS[$n]=$v
    PGMUX_PLACEMENT[$n]=$placement
    PGMUXES+=("$n")
  done
  [ ${#PGMUXES[@]} -gt 0 ] || { echo "bench.sh: --workers needs at least one value" >&2; exit 2; }
fi
case "$TLS_KEY" in rsa|ec) ;; *) echo "bench.sh: --tls-key takes rsa or ec" >&2; exit 2 ;; esac
[ ${#PGB_PATHS[@]} -gt 0 ] || PGB_PATHS=(/usr/sbin/pgbouncer)
workloads=()
if [ -z "$ONLY" ]; then
  workloads=("${ALL_WORKLOADS[@]}")
else
  IFS=, read -r -a picked <<< "$ONLY"
  for w in "${picked[@]}"; do
    case "$w" in memory|mem) w=idle ;; esac
    [[ " ${ALL_WORKLOADS[*]} " == *" $w "* ]] ||
      { echo "bench.sh: unknown workload '$w' (known: ${ALL_WORKLOADS[*]})" >&2; exit 2; }
    workloads+=("$w")
  done
fi

PGBIN=/usr/lib/postgresql/15/bin
PY=${PYTHON:-python3}
for need in "$PGBIN/postgres" "$(command -v pgbench || true)" "$(command -v psql || true)" \
    "$(command -v openssl || true)"; do
  [ -n "$need" ] && [ -x "$need" ] || { echo "bench.sh: missing $need (make bench installs it)" >&2; exit 1; }
done
# each PgBouncer binary is a target named after its version: pgbouncer-1.18.0, pgbouncer-1.25.2
declare -A PGB_BIN=() PGB_VERSION=()
PGBOUNCERS=()
for p in "${PGB_PATHS[@]}"; do
  [ -n "$p" ] || continue
  case "$p" in
    /*) ;;
    */*) p="$caller/$p" ;;
    *) p=$(command -v "$p" || echo "$p") ;;   # a bare name: from PATH
  esac
  [ -f "$p" ] && [ -x "$p" ] ||
    { echo "bench.sh: --pgbouncer $p: no such executable (scripts/build-pgbouncer.sh builds one)" >&2; exit 1; }
  v=$("$p" --version 2>/dev/null | head -n 1) || true
  [[ "$v" =~ ^PgBouncer\ ([^ ]+) ]] ||
    { echo "bench.sh: --pgbouncer $p: its --version does not say 'PgBouncer X.Y.Z' ($v)" >&2; exit 1; }
  n="pgbouncer-${BASH_REMATCH[1]}"
  base=$n i=2
  while [ -n "${PGB_BIN[$n]:-}" ]; do
    [ "$(readlink -f "${PGB_BIN[$n]}")" = "$(readlink -f "$p")" ] && { n=; break; }   # given twice
    n="$base-$i"; i=$((i + 1))
  done
  [ -n "$n" ] || continue
  PGB_BIN[$n]=$p PGB_VERSION[$n]=$v
  PGBOUNCERS+=("$n")
done
[ -x "$PGMUX_BIN" ] || { echo "bench.sh: $PGMUX_BIN missing: run make first" >&2; exit 1; }
command -v "$PY" >/dev/null || { echo "bench.sh: python3 is needed" >&2; exit 1; }

is_root=0; [ "$(id -u)" = 0 ] && is_root=1
as_pg() { if [ $is_root = 1 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# 10,000 idle clients (or latency-10k's pgbench clients) need 10,000 descriptors in the pooler and
# in the client
hard=$(ulimit -Hn); [ "$hard" = unlimited ] && hard=65536
[ "$hard" -gt 65536 ] && hard=65536
ulimit -n "$hard" || true
max_idle=$(tr , '\n' <<< "$IDLE_COUNTS" | sort -n | tail -n 1)
max_clients=$max_idle
[[ " ${workloads[*]} " == *" latency-10k "* ]] && [ "$max_clients" -lt 10000 ] && max_clients=10000
if [ "$(ulimit -n)" -lt $((max_clients + 200)) ]; then
  echo "bench.sh: warning: ulimit -n is $(ulimit -n), too low for $max_clients clients" >&2
fi

stamp=$(date +%Y%m%d-%H%M%S)
out="$root/results/$stamp"
mkdir -p "$out/pgbench"
runs="$out/runs.jsonl"; : > "$runs"
tmp=$(mktemp -d /tmp/pgmux-bench-XXXXXX)
chmod 755 "$tmp"

declare -A PID=() LAUNCHER=() PORT=() LOGPOS=()
POOLERS=("${PGMUXES[@]}" "${PGBOUNCERS[@]}")   # every pgmux and every PgBouncer; the floor relay is not one
child=
# fd 9 is the script's stderr: a signal arriving while run_child waits runs the traps with that
# call's redirections (the pgbench output file) still in place
exec 9>&2
cleanup() {
  local rc=$?
  set +e
  exec 2>&9
  trap - INT TERM
  [ -n "$child" ] && kill "$child" 2>/dev/null && wait "$child" 2>/dev/null
  for n in "${POOLERS[@]}" relay; do stop_pooler "$n"; done
  scripts/pg-cluster.sh stop "$tmp/pg"
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "bench.sh: interrupted, cleaning up" >&9; exit 130' INT TERM

free_port() {
  local p=$1
  while ss -Hltn "sport = :$p" | grep -q . || [[ " ${PORT[*]:-} " == *" $p "* ]]; do p=$((p + 1)); done
  echo "$p"
}
PORT[direct]=$(free_port 25432)
last=26431
for n in "${POOLERS[@]}"; do PORT[$n]=$(free_port $((last + 1))); last=${PORT[$n]}; done
PORT[relay]=$(free_port $((last + 1)))

t_start=$(date +%s)
log() { printf '[%4ss] %s\n' $(($(date +%s) - t_start)) "$*"; }

# ---- a throwaway self-signed server certificate, for every pooler and for PostgreSQL
mkdir -p "$tmp/tls"
if [ "$TLS_KEY" = ec ]; then keyopts=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1); tls_desc="ECDSA P-256"
else keyopts=(-newkey rsa:2048); tls_desc="RSA 2048"; fi
openssl req -x509 -nodes "${keyopts[@]}" -sha256 -days 2 -subj "/CN=127.0.0.1" \
  -addext "subjectAltName=IP:127.0.0.1" -keyout "$tmp/tls/server.key" -out "$tmp/tls/server.crt" \
  >"$tmp/tls/openssl.log" 2>&1 || { cat "$tmp/tls/openssl.log" >&2; exit 1; }
chmod 600 "$tmp/tls/server.key"
if [ $is_root = 1 ]; then chown -R postgres: "$tmp/tls"; fi
# libpq's default sslmode=prefer would use TLS wherever it is offered: only the *-tls workloads may
export PGSSLMODE=disable

# ---- PostgreSQL
# room for every pool (20 connections each) and for 1,000 direct clients (many, latency-1k), not
# for 10,000: latency-10k skips direct
DIRECT_MAX=1000
PG_MAX_CONNECTIONS=$((DIRECT_MAX + 20 * ${#POOLERS[@]} + 50))
log "PostgreSQL 15 cluster on 127.0.0.1:${PORT[direct]}, ssl on with a $tls_desc key (temp dir $tmp)"
PG_MAX_CONNECTIONS=$PG_MAX_CONNECTIONS PG_SSL_CERT_FILE="$tmp/tls/server.crt" PG_SSL_KEY_FILE="$tmp/tls/server.key" \
  scripts/pg-cluster.sh start "$tmp/pg" "${PORT[direct]}"
SU=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PORT[direct]}" -U postgres)
"${SU[@]}" -d postgres -c "CREATE ROLE bench LOGIN PASSWORD 'benchpw'" -c "CREATE DATABASE bench OWNER bench"
export PGPASSWORD=benchpw PGUSER=bench PGDATABASE=bench PGHOST=127.0.0.1
log "pgbench -i -s $SCALE"
pgbench -q -i -s "$SCALE" -p "${PORT[direct]}" >"$out/pgbench/init.out" 2>&1 ||
  { cat "$out/pgbench/init.out" >&2; exit 1; }

# ---- poolers: the same ini for all, apart from port and paths
printf '"bench" "benchpw"\n' > "$tmp/userlist.txt"
# scaling: a query PostgreSQL answers without touching a table, so that the pooler is the bottleneck
echo 'SELECT 1;' > "$tmp/select1.sql"
chmod 600 "$tmp/userlist.txt"
mkdir -p "$tmp/bin"
for n in "${POOLERS[@]}"; do mkdir -p "$tmp/$n"; done
# copies: a concurrent rebuild must not change a binary mid-run, and postgres must be able to run it
cp "$PGMUX_BIN" "$tmp/bin/pgmux"   # one copy for every pgmux target
for n in "${PGBOUNCERS[@]}"; do cp "${PGB_BIN[$n]}" "$tmp/bin/$n"; done
if [ $FLOOR = 1 ]; then
  mkdir -p "$tmp/relay"
  cc=$(command -v cc || command -v clang) || { echo "bench.sh: --floor needs a C compiler" >&2; exit 1; }
  "$cc" -O2 -o "$tmp/bin/floor-relay" scripts/floor-relay.c
fi
if [ $is_root = 1 ]; then
  chown postgres: "$tmp/userlist.txt"
  for n in "${POOLERS[@]}"; do chown postgres: "$tmp/$n"; done
fi
# client TLS: only the key, the certificate and allow (so plain clients still get in); every other
# client_tls_* setting is left at the pooler's default. server_tls_sslmode is pinned to disable
# because PostgreSQL here has ssl = on and PgBouncer >= 1.20 (and pgmux) default to prefer, while
# PgBouncer 1.18 defaults to disable: the links to the server stay plain for every pooler.
for n in "${POOLERS[@]}"; do
  cat > "$tmp/$n/$n.ini" <<INI
[databases]
bench = host=127.0.0.1 port=${PORT[direct]} dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${PORT[$n]}
unix_socket_dir = $tmp/$n
auth_type = scram-sha-256
auth_file = $tmp/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 11000
log_connections = 0
log_disconnections = 0
so_reuseport = 0
pidfile = $tmp/$n/$n.pid
logfile = $tmp/$n/$n.log
client_tls_sslmode = allow
client_tls_key_file = $tmp/tls/server.key
client_tls_cert_file = $tmp/tls/server.crt
server_tls_sslmode = disable
INI
  if [ -n "${PGMUX_WORKERS[$n]:-}" ]; then echo "workers = ${PGMUX_WORKERS[$n]}" >> "$tmp/$n/$n.ini"; fi
  if [ -n "${PGMUX_PLACEMENT[$n]:-}" ]; then echo "worker_placement = ${PGMUX_PLACEMENT[$n]}" >> "$tmp/$n/$n.ini"; fi
done

start_pooler() {
  local n=$1 i pid=
  rm -f "$tmp/$n/$n.pid"
  LOGPOS[$n]="$(cat "$tmp/$n/$n.log" 2>/dev/null | wc -l) $(cat "$tmp/$n/stdout.log" 2>/dev/null | wc -l)"
  if is_pgmux "$n"; then
    local runas=(); [ $is_root = 1 ] && runas=(-u postgres)
    "$tmp/bin/pgmux" "${runas[@]}" "$tmp/$n/$n.ini" >>"$tmp/$n/stdout.log" 2>&1 &
  elif [ "$n" = relay ]; then
    "$tmp/bin/floor-relay" "${PORT[relay]}" "${PORT[direct]}" >>"$tmp/relay/stdout.log" 2>&1 &
  else
    # runuser's PAM session (pam_limits) resets the soft open-files limit: raise it again inside
    as_pg sh -c 'ulimit -n "$1" && exec "$2" "$3"' sh "$(ulimit -n)" "$tmp/bin/$n" \
      "$tmp/$n/$n.ini" >>"$tmp/$n/stdout.log" 2>&1 &
  fi
  LAUNCHER[$n]=$!
  for i in $(seq 100); do
    if ss -Hltn "sport = :${PORT[$n]}" | grep -q .; then
      pid=$(cat "$tmp/$n/$n.pid" 2>/dev/null || true)
      [ -z "$pid" ] && ! is_pgbouncer "$n" && pid=${LAUNCHER[$n]}
      [ -n "$pid" ] && break
    fi
    kill -0 "${LAUNCHER[$n]}" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "bench.sh: $n did not start:" >&2
    tail -n 20 "$tmp/$n/stdout.log" "$tmp/$n/$n.log" >&2 2>/dev/null || true
    PID[$n]=
    return 1
  fi
  PID[$n]=$pid
  local nofile
  nofile=$(awk '/Max open files/ {print $4}' "/proc/$pid/limits")
  [ "$nofile" -ge $((max_clients + 200)) ] ||
    echo "bench.sh: warning: $n may open only $nofile files" >&2
}
is_pgbouncer() { [[ " ${PGBOUNCERS[*]} " == *" $1 "* ]]; }
is_pgmux() { [[ " ${PGMUXES[*]} " == *" $1 "* ]]; }
stop_pooler() {
  local n=$1 pid=${PID[$1]:-} i
  # interrupted while starting: a PgBouncer's launcher (runuser) is not the pooler, its pidfile says
  [ -z "$pid" ] && is_pgbouncer "$n" && [ -n "${LAUNCHER[$n]:-}" ] && pid=$(cat "$tmp/$n/$n.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [ -n "${LAUNCHER[$n]:-}" ]; then wait "${LAUNCHER[$n]}" 2>/dev/null || true; fi
  PID[$n]= LAUNCHER[$n]=
  return 0
}
# why a pooler is gone: its exit status (pgmux and the relay are our children) and what it logged since it started;
# "got SIGTERM" there means something outside this script killed it
death_reason() {
  local n=$1 st= last l s
  read -r l s <<< "${LOGPOS[$n]:-0 0}"
  if ! is_pgbouncer "$n" && [ -n "${LAUNCHER[$n]:-}" ]; then
    wait "${LAUNCHER[$n]}" 2>/dev/null && st=0 || st=$?
    LAUNCHER[$n]=
  fi
  last=$({ tail -n "+$((l + 1))" "$tmp/$n/$n.log"; tail -n "+$((s + 1))" "$tmp/$n/stdout.log"; } 2>/dev/null |
    grep -iE "got sig|fatal|error|panic|signal|crash" | tail -n 1 | cut -c1-160 || true)
  echo "$n died${st:+ (exit status $st)}${last:+; its log: $last}"
}
alive() { [ -n "${PID[$1]:-}" ] && kill -0 "${PID[$1]}" 2>/dev/null; }
restarts=()
ensure_pooler() {   # a pooler that died in an earlier run is restarted (and its log kept)
  local n=$1
  alive "$n" && return 0
  restarts+=("$n")
  tail -n 100 "$tmp/$n/$n.log" > "$out/$n-died-${#restarts[@]}.log" 2>/dev/null || true
  stop_pooler "$n"
  start_pooler "$n"
}
# /proc/PID/stat's utime and stime are the whole process's (every thread, living or exited), so
# this stays right for a pgmux with several workers and its crypto and auth threads
cpu_ticks() {   # "utime stime" of a process, in clock ticks
  local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo "0 0"; return; }
  s=${s##*) }
  set -- $s
  echo "${12} ${13}"
}
CLK_TCK=$(getconf CLK_TCK)
machine_ticks() {   # busy time of all CPUs (user, nice, system, irq, softirq), in clock ticks
  awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat
}

# wait until the backends of the last run (1,000 direct clients, churn) have gone; each pooler
# keeps its pool of 20 server connections
settle() {
  local i c
  for i in $(seq 60); do
    c=$("${SU[@]}" -d postgres -Atc "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench'" 2>/dev/null || echo 0)
    [ "$c" -le $((20 * ${#POOLERS[@]})) ] && break
    sleep 0.25
  done
  sleep 0.5
}

# runs a command in the background (so that Ctrl-C is handled at once) and returns its status
run_child() {
  local rc=0
  "$@" &
  child=$!
  wait "$child" || rc=$?
  child=
  return $rc
}

pgbench_args() {
  case "$1" in
    select)   echo "-S -M simple -c 50 -j 2" ;;
    extended) echo "-S -M extended -c 50 -j 2" ;;
    prepared) echo "-S -M prepared -c 50 -j 2" ;;
    tpcb)     echo "-M simple -c 50 -j 2" ;;
    many)     echo "-S -M simple -c 1000 -j 2" ;;
    churn)    echo "-S -M simple -C -c 20 -j 2" ;;
    select-tls) echo "-S -M simple -c 50 -j 2" ;;
    churn-tls)  echo "-S -M simple -C -c 20 -j 2" ;;
    latency-1k)  echo "-S -M simple -c 1000 -j 2" ;;
    latency-10k) echo "-S -M simple -c 10000 -j 2" ;;
    scaling)  echo "-M simple -f $tmp/select1.sql -c 200 -j $SCALING_JOBS" ;;
  esac
}
# scaling's pgbench threads: half the CPUs (the rest for the pooler and PostgreSQL), 2 to 16
SCALING_JOBS=$(( $(nproc) / 2 )); [ $SCALING_JOBS -lt 2 ] && SCALING_JOBS=2; [ $SCALING_JOBS -gt 16 ] && SCALING_JOBS=16
sslmode() { case "$1" in *-tls) echo require ;; *) echo disable ;; esac; }
clients() { local a; a=$(pgbench_args "$1"); a=${a#*-c }; echo "${a%% *}"; }

# pgbench's -T clock includes connecting (pgbench 15 connects every client before the first
# transaction; its tps leaves the connection time out), and 1,000 SCRAM logins take up to ~6 s
# here: workloads of more than 50 clients get --connect-ms (default 8) ms per client on top
run_seconds() {
  local c; c=$(clients "$1")
  if [ "$c" -gt 50 ]; then echo $((DURATION + (c * CONNECT_MS + 999) / 1000)); else echo "$DURATION"; fi
}
# which targets a workload runs against: scaling is about the poolers only; direct (and the 1:1
# floor relay) take at most DIRECT_MAX clients, so latency-10k skips them
runs_on() {   # workload target
  [ "$2" = direct ] || [ "$2" = relay ] || return 0
  [ "$1" = scaling ] && return 1
  [ "$(clients "$1")" -le $DIRECT_MAX ]
}

run_pgbench() {   # workload target round
  local w=$1 t=$2 r=$3 rc=0 u0=0 s0=0 u1=0 s1=0 live=1 f="$out/pgbench/$1-$2-$3.out"
  local cpu=() m0 m1 w0 w1 txlog=() prefix=
  if [ "$t" != direct ]; then
    ensure_pooler "$t" || { echo "pgbench: error: $t could not be started" > "$f"; }
    read -r u0 s0 <<< "$(cpu_ticks "${PID[$t]:-0}")"
  fi
  # the latency workloads keep pgbench's per-transaction log (one file per pgbench thread)
  case "$w" in latency-*)
    mkdir -p "$out/pgbench/txlog"
    prefix="$out/pgbench/txlog/$w-$t-$r"
    txlog=(-l --log-prefix "$prefix") ;;
  esac
  m0=$(machine_ticks) w0=$(date +%s%N)
  # shellcheck disable=SC2046
  run_child env PGSSLMODE="$(sslmode "$w")" timeout -k 5 $(($(run_seconds "$w") + 120)) \
    pgbench -n $(pgbench_args "$w") "${txlog[@]}" -T "$(run_seconds "$w")" -p "${PORT[$t]}" >>"$f" 2>&1 || rc=$?
  m1=$(machine_ticks) w1=$(date +%s%N)
  cpu=(--machine-ticks $((m1 - m0)) --clk-tck "$CLK_TCK" --wall-ms $(((w1 - w0) / 1000000)))
  [ -n "$prefix" ] && cpu+=(--txlog-prefix "$prefix")
  [ -n "${PGMUX_WORKERS[$t]:-}" ] && cpu+=(--workers "${PGMUX_WORKERS[$t]}")
  if [ "$t" != direct ]; then
    if alive "$t"; then
      read -r u1 s1 <<< "$(cpu_ticks "${PID[$t]}")"
      cpu+=(--cpu-ticks $((u1 - u0 + s1 - s0)) --sys-ticks $((s1 - s0)))
    else
      live=0
      cpu+=(--died-reason "$(death_reason "$t")")
    fi
  fi
  "$PY" scripts/bench_report.py record --runs "$runs" --workload "$w" --target "$t" --round "$r" \
    --rc "$rc" --out "$f" --alive "$live" "${cpu[@]}" || echo "bench.sh: could not record $f" >&2
  if [ -n "$prefix" ]; then gzip -1 -f "$prefix".* 2>/dev/null || true; fi
  settle
}

run_idle() {   # target round
  local t=$1 r=$2
  # a fresh process, so that the baseline is not memory left from the previous workloads
  stop_pooler "$t"
  if ! start_pooler "$t"; then
    echo "{\"workload\": \"idle${IDLE_COUNTS%%,*}\", \"target\": \"$t\", \"round\": $r, \"ok\": false, \"reason\": \"pooler did not start\"}" >> "$runs"
    return 0
  fi
  run_child timeout -k 5 900 "$PY" scripts/bench_report.py idle --runs "$runs" --target "$t" --round "$r" \
    --pid "${PID[$t]}" --port "${PORT[$t]}" --user bench --password benchpw --db bench \
    --counts "$IDLE_COUNTS" --settle "$([ "$DURATION" -lt 5 ] && echo 1 || echo 2)" \
    --active 1000 --active-seconds $((DURATION + (1000 * CONNECT_MS + 999) / 1000)) --pgbench-out "$out/pgbench/busy-$t-$r.out" ||
    echo "bench.sh: idle clients against $t ended with status $?" >&2
  ensure_pooler "$t" || true
}

# ---- meta
pgmux_v=$("$tmp/bin/pgmux" -V 2>&1 | head -n 1 || true)
pgb_v=$(for n in "${PGBOUNCERS[@]}"; do printf '%s, ' "${PGB_VERSION[$n]}"; done)
pgb_v=${pgb_v%, }
targets=("${PGMUXES[@]}" "${PGBOUNCERS[@]}" direct)
if [ $FLOOR = 1 ]; then targets+=(relay); fi
skipped=$(for w in "${workloads[@]}"; do
  [ "$w" = idle ] && continue
  for t in "${targets[@]}"; do runs_on "$w" "$t" || printf '%s=%s\n' "$w" "$t"; done
done)
pgmux_workers=$(for n in "${PGMUXES[@]}"; do printf '%s=%s\n' "$n" "${PGMUX_WORKERS[$n]:-}"; done)
pgmux_placements=$(for n in "${PGMUXES[@]}"; do printf '%s=%s\n' "$n" "${PGMUX_PLACEMENT[$n]:-}"; done)
pg_v=$("${SU[@]}" -d postgres -Atc "SHOW server_version" | awk '{print $1}')
cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
pgb_files=$(for n in "${PGBOUNCERS[@]}"; do printf '%s=%s\n' "$n" "$(readlink -f "${PGB_BIN[$n]}")"; done)
STARTED=$(date -Iseconds) HOST="$(nproc) CPUs ($cpu_model), $(uname -sr)" \
VERSIONS="$pgmux_v, $pgb_v, PostgreSQL $pg_v" ROUNDS=$ROUNDS DURATION=$DURATION SCALE=$SCALE \
WORKLOADS="${workloads[*]}" IDLE_COUNTS=$IDLE_COUNTS TARGETS="${targets[*]}" \
PGB_NAMES="${PGBOUNCERS[*]}" PGB_FILES="$pgb_files" PGMUX_WORKERS="$pgmux_workers" PGMUX_PLACEMENTS="$pgmux_placements" SKIPPED="$skipped" \
PG_MAX_CONNECTIONS=$PG_MAX_CONNECTIONS DIRECT_MAX=$DIRECT_MAX CONNECT_MS=$CONNECT_MS NPROC=$(nproc) \
SCALING_ARGS="$(pgbench_args scaling | sed "s|$tmp/||")" TLS_KEY="$tls_desc" "$PY" - > "$out/meta.json" <<'EOF'
import json, os
e = os.environ
pairs = lambda v: [l.split("=", 1) for l in v.splitlines() if l]
skipped = {}
for w, t in pairs(e["SKIPPED"]):
    skipped.setdefault(w, []).append(t)
print(json.dumps({"started": e["STARTED"], "host": e["HOST"], "versions": e["VERSIONS"],
                  "rounds": int(e["ROUNDS"]), "duration": int(e["DURATION"]), "scale": int(e["SCALE"]),
                  "workloads": e["WORKLOADS"].split(), "idle_counts": e["IDLE_COUNTS"],
                  "targets": e["TARGETS"].split(), "pgbouncers": e["PGB_NAMES"].split(),
                  "pgmuxes": [n for n, _ in pairs(e["PGMUX_WORKERS"])],
                  "workers": {n: (int(v) if v.isdigit() else v or None) for n, v in pairs(e["PGMUX_WORKERS"])},
                  "placements": {n: v for n, v in pairs(e["PGMUX_PLACEMENTS"]) if v},
                  "pgbouncer_paths": dict(pairs(e["PGB_FILES"])),
                  "skipped": skipped, "pg_max_connections": int(e["PG_MAX_CONNECTIONS"]),
                  "direct_max": int(e["DIRECT_MAX"]), "connect_ms": int(e["CONNECT_MS"]),
                  "cpus": int(e["NPROC"]), "scaling_args": e["SCALING_ARGS"],
                  "tls_key": e["TLS_KEY"]}))
EOF

log "$(for n in "${POOLERS[@]}"; do printf '%s on :%s, ' "$n" "${PORT[$n]}"; done)($pgmux_v; $pgb_v)"
for n in "${POOLERS[@]}"; do start_pooler "$n" || true; done
if [ $FLOOR = 1 ]; then
  log "floor relay on :${PORT[relay]}"
  start_pooler relay || true
fi
log "warm-up"
for t in "${targets[@]}"; do
  run_child pgbench -n -S -c 20 -j 2 -T 1 -p "${PORT[$t]}" >"$out/pgbench/warmup-$t.out" 2>&1 ||
    echo "bench.sh: warm-up against $t failed (see $out/pgbench/warmup-$t.out)" >&2
done

for r in $(seq "$ROUNDS"); do
  k=$(( (r - 1) % ${#targets[@]} ))
  order=("${targets[@]:$k}" "${targets[@]:0:$k}")
  for w in "${workloads[@]}"; do
    if [ "$w" = idle ]; then
      log "round $r/$ROUNDS: idle clients ($IDLE_COUNTS)"
      for t in "${order[@]}"; do
        if [[ " ${POOLERS[*]} " == *" $t "* ]]; then run_idle "$t" "$r"; fi
      done
    else
      log "round $r/$ROUNDS: $w ($(pgbench_args "$w" | sed "s|$tmp/||") -T $(run_seconds "$w"), sslmode=$(sslmode "$w"))"
      for t in "${order[@]}"; do
        if runs_on "$w" "$t"; then run_pgbench "$w" "$t" "$r"; fi
      done
    fi
  done
done

for n in "${POOLERS[@]}"; do
  alive "$n" || restarts+=("$n (at the end)")
  cp "$tmp/$n/$n.ini" "$out/" 2>/dev/null || true
  tail -n 200 "$tmp/$n/$n.log" > "$out/$n.log" 2>/dev/null || true
done
log "done in $(( ($(date +%s) - t_start) / 60 )) min $(( ($(date +%s) - t_start) % 60 )) s"
[ ${#restarts[@]} -gt 0 ] && echo "pooler restarts after a death: ${restarts[*]}" >&2
echo
"$PY" scripts/bench_report.py report "$out"
echo
echo "results: $out/results.md, $out/results.json"
