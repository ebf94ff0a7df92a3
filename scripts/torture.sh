#!/usr/bin/env bash
# `make torture` and the short run in `make test`: installs what the torture test needs when it is
# missing (Debian's PostgreSQL 15 through scripts/deps.sh, psycopg 3 from PyPI, which loads the
# system libpq), then runs scripts/torture.py with the arguments given. See that file for options:
#   scripts/torture.sh [--minutes N | --seconds N] [--seed S] [--phase I] [--quick] [--pgbench]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
scripts/deps.sh
if ! "$PY" -c 'import psycopg' 2>/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "torture: psycopg 3 missing (as root: $PY -m pip install 'psycopg>=3.1')" >&2; exit 1; }
  "$PY" -m pip --version >/dev/null 2>&1 || scripts/deps.sh python3-pip
  pip=("$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore "psycopg>=3.1")
  # Debian's own python3 refuses pip installs into it (PEP 668) unless told
  "${pip[@]}" 2>/dev/null || "${pip[@]}" --break-system-packages
fi
exec "$PY" scripts/torture.py "$@"
