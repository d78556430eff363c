#!/usr/bin/env bash
# Sets up everything the tests need and runs them: system packages, services, the Python environment,
# lint, type check, then pytest (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-packages.sh
bash scripts/start-services.sh
python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
python3 -m uv sync --frozen --quiet
python3 -m uv run --frozen ruff check .
python3 -m uv run --frozen ruff format --check .
python3 -m uv run --frozen mypy
python3 -m uv run --frozen pytest "$@"
