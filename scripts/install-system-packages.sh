#!/usr/bin/env bash
# The Debian packages certfleet's tests need. The one place they are installed (CI calls this too).
set -euo pipefail

PACKAGES=(
  openjdk-17-jre-headless   # keytool: proves the Java keystores certfleet writes are readable by Java
  postgresql                # the scaled-out database; the tests start their own cluster with its initdb/pg_ctl
  python3-venv              # scripts/uv.sh installs uv into a virtual environment (Debian's Python has no pip)
  ca-certificates
  openssh-server            # the SSH deployment tests start their own sshd on 127.0.0.1
  nginx                     # SSH deployment integration tests (started as plain processes, no systemd)
  apache2                   # same, Apache httpd
  tomcat10                  # same, Tomcat (server.xml + PKCS#12 keystore)
  jetty9                    # same, Jetty (ssl ini + keystore)
  sudo                      # SSH deployments with sudo for the writes and commands that need it
  pebble                    # ACME test CA (pebble + pebble-challtestsrv) for the ACME connector tests
  bind9                     # named: the RFC 2136 dynamic-DNS server the ACME dns-01 tests update
  nmap                      # benchmarks/discovery.py compares certfleet's TLS scan with nmap --script ssl-cert
  chromium                  # the dashboard's browser tests (Playwright drives Debian's Chromium)
  fonts-dejavu-core         # PDF export: DejaVu Sans, embedded (Latin, Greek, Cyrillic, symbols, combining accents)
  fonts-wqy-microhei        # PDF export: the fallback font for Chinese, Japanese and Korean (5 MB)
  poppler-utils             # pdftotext: the export tests read the text back out of the PDFs
  prometheus                # promtool: the tests check docs/prometheus/alerts.yml with `promtool check rules`
  samba                     # smbd: the Windows (SMB) deployment tests start their own smbd on 127.0.0.1
                            # (with python3-samba: the service manager emulator behind its svcctl pipe)
  openssl                   # openssl s_server: the TLS listener of the emulated Windows services
)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  # Keep apt from starting the system daemons it installs (smbd, nmbd, samba-ad-dc...): the tests start
  # their own on 127.0.0.1; a policy-rc.d that exits 101 forbids every invoke-rc.d start during the install.
  policy=/usr/sbin/policy-rc.d
  created_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    created_policy=1
  fi
  status=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
  [ -z "$created_policy" ] || $SUDO rm -f "$policy"
  exit "$status"
fi
