#!/usr/bin/env bash
# Checks that the tests can have a PostgreSQL server. By default the tests start their own throwaway cluster
# (tests/postgres_cluster.py: initdb + pg_ctl in a temp directory on a free port), which needs only the
# packaged binaries and, as root, the postgres system user; no running server and no pg_hba.conf change.
# With CERTFLEET_TEST_POSTGRES_URL (an SQLAlchemy URL of a user that may create databases) they use that
# server instead, and this script checks that it answers.
set -euo pipefail

if [ -n "${CERTFLEET_TEST_POSTGRES_URL:-}" ]; then
  libpq_url="${CERTFLEET_TEST_POSTGRES_URL/postgresql+psycopg:/postgresql:}"
  psql "$libpq_url" -qtAc "SELECT 1" >/dev/null || {
    echo "cannot connect to CERTFLEET_TEST_POSTGRES_URL; unset it to let the tests start their own PostgreSQL" >&2
    exit 1
  }
  exit 0
fi
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
for tool in initdb pg_ctl; do
  [ -x "$bin/$tool" ] || command -v "$tool" >/dev/null || {
    echo "$tool is missing: run bash scripts/install-system-packages.sh (Debian package postgresql)" >&2
    exit 1
  }
done
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "initdb cannot run as root and there is no postgres user: install the Debian package postgresql" >&2
  exit 1
fi
