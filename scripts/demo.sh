#!/usr/bin/env bash
# `make run`: a throwaway PostgreSQL on 127.0.0.1:15432, pgmux in front of it with etc/pgmux.ini,
# a query through port 6432 and the pool it used. Ctrl-C (or KEEP=0, the default when stdin is
# not a terminal) stops both and removes the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/pgmux-run-XXXXXX)
bin=.build/release/pgmux
pgmux_pid=
cleanup() {
  [ -n "$pgmux_pid" ] && kill -INT "$pgmux_pid" 2>/dev/null && sleep 0.3 && kill "$pgmux_pid" 2>/dev/null || true
  scripts/pg-cluster.sh stop "$dir"
}
trap cleanup EXIT
scripts/pg-cluster.sh start "$dir" 15432
P="psql -X -q -h 127.0.0.1 -p 15432 -U postgres"
$P -c "CREATE ROLE pgmux_demo LOGIN PASSWORD 'demo'"
$P -c "CREATE DATABASE pgmux_demo OWNER pgmux_demo"
runas=(); [ "$(id -u)" = 0 ] && runas=(-u postgres)
$bin "${runas[@]}" etc/pgmux.ini > "$dir/pgmux.log" 2>&1 &
pgmux_pid=$!
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/6432) 2>/dev/null && break; sleep 0.1; done
export PGPASSWORD=demo
echo "== a query through pgmux (port 6432):"
psql -X -h 127.0.0.1 -p 6432 -U pgmux_demo pgmux_demo -c \
  "SELECT current_user, current_database(), inet_server_port() AS postgres_port, pg_backend_pid() AS backend_pid"
echo "== pgbench through pgmux: 40 clients over a pool of 20 (transaction mode), 3 seconds:"
pgbench -q -i -h 127.0.0.1 -p 6432 -U pgmux_demo pgmux_demo >/dev/null 2>&1
pgbench -n -S -c 40 -j 2 -T 3 -h 127.0.0.1 -p 6432 -U pgmux_demo pgmux_demo 2>&1 | grep -E "clients|tps|failed"
echo "== the pool it used (admin console: psql -p 6432 -U pgbouncer pgbouncer -c 'SHOW POOLS'):"
PGPASSWORD=admin psql -X -h 127.0.0.1 -p 6432 -U pgbouncer pgbouncer -c "SHOW POOLS"
echo "== what PostgreSQL saw (backends of pgmux_demo; never more than default_pool_size):"
$P -c "SELECT usename, datname, state, count(*) FROM pg_stat_activity WHERE usename = 'pgmux_demo' GROUP BY 1,2,3"
echo "== pgmux log:"
tail -n 5 "$dir/pgmux.log"
if [ -t 0 ] && [ "${KEEP:-1}" = 1 ]; then
  echo "pgmux is running on 127.0.0.1:6432 (user pgmux_demo, password demo). Ctrl-C stops it."
  wait "$pgmux_pid" || true
fi
