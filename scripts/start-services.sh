#!/usr/bin/env bash
# Starts the services the tests talk to, if they are not running yet: PostgreSQL on 127.0.0.1:5432.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }
# The tests connect as postgres over TCP without a password (trust), as on the development machines.
psql -h 127.0.0.1 -U postgres -d postgres -qtAc "SELECT 1" >/dev/null || {
  echo "cannot connect to PostgreSQL as postgres at 127.0.0.1:5432; set CERTFLEET_TEST_POSTGRES_URL" >&2
  exit 1
}
