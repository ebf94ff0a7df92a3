#!/usr/bin/env bash
# Makes .build/pyvenv: a Python venv with psycopg's binary wheel from PyPI, which bundles its own
# libpq (17 or newer), for the tests of what the system's libpq 15 cannot do (DirectTLSTests:
# sslnegotiation=direct), and asyncpg (DriverTests). Quiet and cheap when the venv is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.build/pyvenv
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import psycopg, asyncpg' 2>/dev/null && exit 0
scripts/deps.sh python3-venv
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "psycopg[binary]>=3.2" "asyncpg>=0.29"
