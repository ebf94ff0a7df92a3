#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL 15 cluster for `make run` and `make bench`.
#   scripts/pg-cluster.sh start DIR PORT   -> initdb (if needed) and start, as the postgres user
#   scripts/pg-cluster.sh stop DIR
# With PG_SSL_CERT_FILE and PG_SSL_KEY_FILE set (a PEM certificate and its key, readable by the
# postgres user; the key mode 600), a new cluster gets ssl = on with them, every other ssl setting
# at PostgreSQL's default. PG_MAX_CONNECTIONS sets max_connections (default 200).
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
cmd=$1; dir=$2
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
start)
  port=$3
  mkdir -p "$dir"; chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
    cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = ${PG_MAX_CONNECTIONS:-200}
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
CONF
    if [ -n "${PG_SSL_CERT_FILE:-}" ] || [ -n "${PG_SSL_KEY_FILE:-}" ]; then
      [ -r "${PG_SSL_CERT_FILE:-}" ] && [ -r "${PG_SSL_KEY_FILE:-}" ] ||
        { echo "pg-cluster.sh: PG_SSL_CERT_FILE and PG_SSL_KEY_FILE must both name readable files" >&2; exit 1; }
      cat >> "$dir/data/postgresql.conf" <<CONF
ssl = on
ssl_cert_file = '$PG_SSL_CERT_FILE'
ssl_key_file = '$PG_SSL_KEY_FILE'
CONF
    fi
    cat > "$dir/data/pg_hba.conf" <<HBA
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
HBA
  fi
  as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w start >/dev/null
  ;;
stop)
  [ -d "$dir/data" ] && as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
esac
