#!/usr/bin/env bash
# The Debian packages certfleet's tests need. The one place they are installed (CI calls this too).
set -euo pipefail

PACKAGES=(
  openjdk-17-jre-headless   # keytool: proves the Java keystores certfleet writes are readable by Java
  postgresql                # the scaled-out database; the database tests run against it too
  ca-certificates
)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
