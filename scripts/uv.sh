#!/usr/bin/env bash
# Runs uv with the given arguments, installing it first when the machine has none, without the system pip
# (Debian 12's Python has no pip, and PEP 668 forbids installing into it anyway): uv goes into a private
# virtual environment in .tools/uv of this checkout. Usage: bash scripts/uv.sh run certfleet up
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION="0.13.9"  # the version uv.lock was written with
TOOLS=".tools/uv"

if command -v uv >/dev/null 2>&1; then exec uv "$@"; fi
if python3 -m uv --version >/dev/null 2>&1; then exec python3 -m uv "$@"; fi
if [ ! -x "$TOOLS/bin/uv" ]; then
  if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
    # Debian splits venv's pip bootstrap into python3-venv.
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    if [ -z "$SUDO" ] || command -v sudo >/dev/null 2>&1; then
      echo "installing python3-venv (Debian's venv support) to install uv" >&2
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv
    else
      echo "uv is not installed and python3 cannot make a virtual environment: as root run" >&2
      echo "  apt-get install python3-venv   (or install uv: https://docs.astral.sh/uv/)" >&2
      exit 1
    fi
  fi
  rm -rf "$TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
exec "$TOOLS/bin/uv" "$@"
