# Sourced by login-cost.sh and loop-cost.sh: a free listening port, and a throwaway PostgreSQL 15
# cluster with the bench role and database, initialised by pgbench.

free_port() {   # first port from $1 on that nothing listens on
  local p=$1
  while ss -Hltn "sport = :$p" | grep -q .; do p=$((p + 1)); done
  echo "$p"
}

# Starts the cluster in DIR on the first free port from FIRST_PORT (set in pg_port), with role
# bench (password benchpw) owning database bench, loaded by pgbench -i -s 1. Listening ports
# below the ephemeral range: pgbench's own connections cannot hold them.
start_bench_cluster() {   # DIR FIRST_PORT
  pg_port=$(free_port "$2")
  scripts/pg-cluster.sh start "$1" "$pg_port"
  psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres \
    -c "CREATE ROLE bench LOGIN PASSWORD 'benchpw'" -c "CREATE DATABASE bench OWNER bench"
  PGPASSWORD=benchpw pgbench -q -i -s 1 -h 127.0.0.1 -p "$pg_port" -U bench bench >/dev/null 2>&1
}
