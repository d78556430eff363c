"""Jetty 9.4 over SSH: a PKCS#12 keystore and the ssl module's settings in the Jetty base's start.d.

Jetty runs as the SSH login user from its own Jetty base (the Debian jetty9 package's jetty.home) and is
restarted by the operator's script. Its keystore password is Jetty-obfuscated (`OBF:`) in ssl.ini.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from certfleet.demo.listener import free_port
from certfleet.flows.deployment import DeploymentFailed, deploy_certificate
from certfleet.flows.issuance import issue_certificate
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.orm import DeploymentStatus
from certfleet.pki.bundle import to_pkcs12
from certfleet.pki.keys import load_private_key
from certfleet.pki.parse import load_material, serial_hex
from tests.integration.conftest import (
    deploy_with_a_key_that_does_not_match,
    deployments,
    files_of,
    register,
    self_signed,
    served_serial,
)
from tests.integration.sshd import PASSWORD_USER, Sshd, chown_tree, kill_pidfile, scratch_dir

pytestmark = pytest.mark.usefixtures("custom_commands")  # their restarts are free-form commands

SNI = "api.example.test"
JETTY_HOME = Path("/usr/share/jetty9")
HINT = "run `bash scripts/install-system-packages.sh` (Debian package jetty9)"
OBF_STOREPWD = "OBF:1vny1zlo1x8e1vnw1vn61x8g1zlu1vn4"  # Jetty's documented example: "storepwd"

SSL_INI = """# ---------------------------------------
# Module: ssl (certfleet integration test)
# ---------------------------------------
--module=ssl

## Connector host/address to bind to
jetty.ssl.host=127.0.0.1

## Connector port to listen on
jetty.ssl.port={port}

## Keystore file path (relative to $jetty.base)
jetty.sslContext.keyStorePath=etc/keystore.p12
jetty.sslContext.trustStorePath=etc/keystore.p12

## Keystore password
jetty.sslContext.keyStorePassword={obf}
jetty.sslContext.trustStorePassword={obf}

## Keystore type and provider
jetty.sslContext.keyStoreType=PKCS12
jetty.sslContext.trustStoreType=PKCS12

## KeyManager password
jetty.sslContext.keyManagerPassword={obf}
"""

RESTART = """#!/bin/sh
# The operator's restart script (no systemd here): stop, start, wait until Jetty has started.
BASE={base}
if [ -f "$BASE/jetty.pid" ] && kill -0 "$(cat "$BASE/jetty.pid")" 2>/dev/null; then
  pid=$(cat "$BASE/jetty.pid"); kill "$pid"; i=0
  while kill -0 "$pid" 2>/dev/null; do i=$((i+1)); [ $i -gt 300 ] && kill -9 "$pid"; sleep 0.1; done
fi
: > "$BASE/jetty.log"
cd "$BASE"
nohup java -Xms32m -Xmx128m -XX:TieredStopAtLevel=1 -jar {home}/start.jar jetty.home={home} jetty.base="$BASE" \\
  >> "$BASE/jetty.log" 2>&1 </dev/null &
echo $! > "$BASE/jetty.pid"
i=0
until grep -q "Started @" "$BASE/jetty.log"; do
  i=$((i+1)); [ $i -gt 1200 ] && {{ echo "Jetty did not start:" >&2; tail -5 "$BASE/jetty.log" >&2; exit 1; }}
  kill -0 "$(cat "$BASE/jetty.pid")" 2>/dev/null \\
    || {{ echo "Jetty exited:" >&2; tail -5 "$BASE/jetty.log" >&2; exit 1; }}
  sleep 0.1
done
"""


@dataclass
class Jetty:
    base: Path
    port: int

    @property
    def restart(self) -> str:
        return str(self.base / "restart.sh")

    def served(self) -> str:
        return served_serial(self.port, SNI)

    def files(self) -> dict[str, bytes]:
        return {k: v for k, v in files_of(self.base).items() if k.startswith(("etc/", "start.d/"))}


@pytest.fixture(scope="module")
def jetty() -> Iterator[Jetty]:
    if not (JETTY_HOME / "start.jar").exists():
        pytest.fail(f"Jetty is needed by this test and is not installed: {HINT}")
    base = scratch_dir(PASSWORD_USER, "certfleet-jetty-")
    port = free_port()
    (base / "start.d").mkdir()
    (base / "etc").mkdir()
    (base / "start.d" / "ssl.ini").write_text(SSL_INI.format(port=port, obf=OBF_STOREPWD))
    (base / "start.d" / "https.ini").write_text("--module=https\n")
    cert_pem, key_pem = self_signed(SNI)
    (base / "etc" / "keystore.p12").write_bytes(
        to_pkcs12(load_private_key(key_pem), load_material(cert_pem).certificates, b"storepwd", friendly_name="jetty")
    )
    script = base / "restart.sh"
    script.write_text(RESTART.format(home=JETTY_HOME, base=base))
    script.chmod(0o755)
    chown_tree(base, PASSWORD_USER)
    started = subprocess.run([str(script)], user=PASSWORD_USER, capture_output=True, text=True, check=False)
    if started.returncode != 0:
        pytest.fail(f"Jetty did not start: {started.stderr}")
    try:
        yield Jetty(base, port)
    finally:
        kill_pidfile(base / "jetty.pid")
        shutil.rmtree(base, ignore_errors=True)


def _register(boot: Bootstrapped, sshd: Sshd, jetty: Jetty, **extra: str) -> int:
    return register(
        boot,
        sshd,
        server_type="jetty",
        app_path=str(jetty.base),
        port=jetty.port,
        sni=SNI,
        reload_command=jetty.restart,
        **extra,
    ).certificate_id


def test_deploy_rewrites_the_keystore_keeps_the_ini_then_rotates(boot: Bootstrapped, sshd: Sshd, jetty: Jetty) -> None:
    placeholder = jetty.served()
    ini_before = (jetty.base / "start.d" / "ssl.ini").read_bytes()
    certificate_id = _register(boot, sshd, jetty)

    first = issue_certificate(certificate_id)
    deploy_certificate(certificate_id)
    assert jetty.served() == first != placeholder
    store = pkcs12.load_pkcs12((jetty.base / "etc" / "keystore.p12").read_bytes(), b"storepwd")
    assert store.cert is not None
    assert serial_hex(store.cert.certificate.serial_number) == first
    assert (jetty.base / "start.d" / "ssl.ini").read_bytes() == ini_before  # settings were right already

    second = issue_certificate(certificate_id)
    deploy_certificate(certificate_id)
    assert jetty.served() == second
    assert [d.status for d in deployments(certificate_id)] == [DeploymentStatus.DEPLOYED] * 2


def test_a_failing_config_test_rolls_back(boot: Bootstrapped, sshd: Sshd, jetty: Jetty) -> None:
    freeze = jetty.base / "CHANGE-FREEZE"
    certificate_id = _register(
        boot, sshd, jetty, config_test_command=f"test ! -e {freeze} || {{ echo 'change freeze in effect'; exit 1; }}"
    )
    issue_certificate(certificate_id)
    deploy_certificate(certificate_id)
    old = jetty.served()
    files_before = jetty.files()
    issue_certificate(certificate_id)
    freeze.touch()
    try:
        with pytest.raises(DeploymentFailed, match="Rolled Back"):
            deploy_certificate(certificate_id)
    finally:
        freeze.unlink()
    assert jetty.served() == old
    assert jetty.files() == files_before
    assert "change freeze in effect" in (deployments(certificate_id)[-1].reason or "")


def test_a_key_that_does_not_match_is_refused_before_anything_changes(
    boot: Bootstrapped, sshd: Sshd, jetty: Jetty
) -> None:
    deployment = deploy_with_a_key_that_does_not_match(_register(boot, sshd, jetty), jetty)
    assert deployment.status is DeploymentStatus.FAILED
