#!/usr/bin/env bash
# Instructions per new client connection, pgmux against PgBouncer, counted by callgrind (exact
# and repeatable, unlike CPU time on a shared machine). `make login-cost` runs it.
#
#   scripts/login-cost.sh [--pgbouncer PATH[,PATH...]] [--tls] [--connections N] [--pgmux PATH]
#
# Each pooler runs under `valgrind --tool=callgrind` twice, in front of a throwaway PostgreSQL 15
# (scram-sha-256 logins with a plain auth_file password, transaction pooling, as `make bench`):
# once serving 20 connections of `pgbench -S -C -c 1`, once serving 20 + N. The difference of the
# two totals over N is the cost of one connection from accept to close (startup packet, SCRAM
# exchange with cached keys, welcome, one query, teardown), without the process's start-up.
# --tls: the clients use sslmode=require (a throwaway RSA-2048 certificate; TLS handshake per
# connection). Default PgBouncer: Debian's /usr/sbin/pgbouncer; scripts/build-pgbouncer.sh
# builds a release from source (e.g. 1.25.2) to compare with the current one.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PGBOUNCERS=/usr/sbin/pgbouncer N=200 TLS=0 PGMUX=$root/.build/release/pgmux
while [ $# -gt 0 ]; do
  case "$1" in
    --pgbouncer) PGBOUNCERS=$2; shift ;;
    --tls) TLS=1 ;;
    --connections) N=$2; shift ;;
    --pgmux) PGMUX=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "login-cost.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "login-cost.sh: --connections takes a positive integer" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "login-cost.sh: valgrind is needed (make login-cost installs it)" >&2; exit 1; }
[ -x "$PGMUX" ] || { echo "login-cost.sh: $PGMUX missing: run make first" >&2; exit 1; }

is_root=0; [ "$(id -u)" = 0 ] && is_root=1
as_pg() { if [ $is_root = 1 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
tmp=$(mktemp -d /tmp/pgmux-login-cost-XXXXXX)
chmod 755 "$tmp"
cleanup() {
  set +e
  pkill -INT -f "callgrind-out-file=$tmp/" 2>/dev/null
  sleep 0.5
  scripts/pg-cluster.sh stop "$tmp/pg"
  rm -rf "$tmp"
}
trap cleanup EXIT

source scripts/bench-cluster.sh
start_bench_cluster "$tmp/pg" 15432
export PGPASSWORD=benchpw
printf '"bench" "benchpw"\n' > "$tmp/userlist.txt"
if [ $TLS = 1 ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/server.key" -out "$tmp/server.crt" -days 1 \
    -subj "/CN=localhost" 2>/dev/null
  chmod 600 "$tmp/server.key"
fi
[ $is_root = 1 ] && chown -R postgres: "$tmp"

port=$(free_port 16432)
# Total instructions of one pooler process that served `count` connections, start to exit.
measure() {   # name binary count
  local name=$1 bin=$2 count=$3 dir="$tmp/$1-$3" i
  mkdir -p "$dir"
  cat > "$dir/pooler.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $dir
auth_type = scram-sha-256
auth_file = $tmp/userlist.txt
pool_mode = transaction
default_pool_size = 20
log_connections = 0
log_disconnections = 0
logfile = $dir/pooler.log
INI
  if [ $TLS = 1 ]; then
    printf 'client_tls_sslmode = allow\nclient_tls_key_file = %s\nclient_tls_cert_file = %s\n' \
      "$tmp/server.key" "$tmp/server.crt" >> "$dir/pooler.ini"
  fi
  [ $is_root = 1 ] && chown -R postgres: "$dir"
  as_pg valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" "$bin" "$dir/pooler.ini" \
    > "$dir/valgrind.log" 2>&1 &
  local launcher=$!
  for i in $(seq 300); do ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.1; done
  PGSSLMODE=$([ $TLS = 1 ] && echo require || echo disable) \
    pgbench -n -S -C -c 1 -j 1 -t "$count" -h 127.0.0.1 -p "$port" -U bench bench > "$dir/pgbench.out" 2>&1 ||
    { echo "login-cost.sh: pgbench against $name failed:" >&2; tail -n 5 "$dir/pgbench.out" >&2; exit 1; }
  pkill -INT -f "callgrind-out-file=$dir/callgrind.out" || true
  wait "$launcher" 2>/dev/null || true
  for i in $(seq 100); do ss -Hltn "sport = :$port" | grep -q . || break; sleep 0.1; done
  awk '/^(summary|totals):/ {print $2; exit}' "$dir/callgrind.out"
}
per_connection() {   # name binary
  local base total
  base=$(measure "$1" "$2" 20)
  total=$(measure "$1" "$2" $((20 + N)))
  echo $(( (total - base) / N ))
}

targets=("pgmux|$PGMUX")
IFS=, read -r -a pgbs <<< "$PGBOUNCERS"
for b in "${pgbs[@]}"; do
  [ -x "$b" ] || { echo "login-cost.sh: no PgBouncer at $b" >&2; exit 1; }
  v=$("$b" --version | awk 'NR == 1 {print $2}')
  targets+=("pgbouncer-$v|$b")
done
echo "instructions per connection (callgrind; pgbench -S -C, scram-sha-256$([ $TLS = 1 ] && echo ', sslmode=require'), $N connections)"
declare -A cost=()
for t in "${targets[@]}"; do
  name=${t%%|*}
  cost[$name]=$(per_connection "$name" "${t#*|}")
  printf '  %-20s %12s\n' "$name" "$(printf "%'d" "${cost[$name]}")"
done
for t in "${targets[@]:1}"; do
  name=${t%%|*}
  awk -v a="${cost[pgmux]}" -v b="${cost[$name]}" -v n="$name" 'BEGIN {printf "  pgmux / %s: %.2f\n", n, a / b}'
done
