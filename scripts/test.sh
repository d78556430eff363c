#!/usr/bin/env bash
# Sets up everything the tests need and runs them: system packages, the PostgreSQL check, uv, the Python
# environment, lint, type check, then pytest (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-packages.sh
bash scripts/start-services.sh
uv() { bash scripts/uv.sh "$@"; }  # the machine's uv, or one installed into .tools/ without the system pip
uv sync --frozen --quiet
uv run --frozen ruff check .
uv run --frozen ruff format --check .
uv run --frozen mypy
# The tests start many Python subprocesses (listeners, Prefect servers, workers, agents, `certfleet up`): let them
# reuse compiled modules even where the environment turned the bytecode cache off (__pycache__ is gitignored).
unset PYTHONDONTWRITEBYTECODE
uv run --frozen pytest "$@"
