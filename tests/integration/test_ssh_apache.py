"""Apache httpd over SSH: deploy, rotate, roll back a failing config test and a key that does not match.

httpd runs as the SSH login user from its own ServerRoot (no systemd, no apache2ctl environment): the
handler follows Include/IncludeOptional to the <VirtualHost> for the port and SNI name, tests with
`apache2 -t`, reloads with `-k graceful`.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certfleet.demo.listener import free_port
from certfleet.flows.deployment import DeploymentFailed, deploy_certificate
from certfleet.flows.issuance import issue_certificate
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.orm import DeploymentStatus, StepState
from certfleet.pki.parse import load_material, serial_hex
from tests.integration.conftest import (
    deploy_with_a_key_that_does_not_match,
    deployments,
    files_of,
    register,
    self_signed,
    served_serial,
)
from tests.integration.sshd import PASSWORD_USER, Sshd, chown_tree, kill_pidfile, require, scratch_dir

SNI = "intranet.example.test"
OTHER_SNI = "wiki.example.test"
MODULES = "/usr/lib/apache2/modules"
HINT = "run `bash scripts/install-system-packages.sh` (Debian package apache2)"


@dataclass
class Apache:
    root: Path
    port: int

    def served(self, sni: str = SNI) -> str:
        return served_serial(self.port, sni)

    def files(self) -> dict[str, bytes]:
        return files_of(self.root)


def _write_config(root: Path, port: int) -> None:
    for d in ("conf.d", "sites-enabled", "certs", "run"):
        (root / d).mkdir()
    (root / "httpd.conf").write_text(
        f"""# certfleet integration test: httpd started by hand
ServerRoot {root}
PidFile run/httpd.pid
ErrorLog error.log
LogLevel warn
DefaultRuntimeDir run
Mutex file:run
LoadModule mpm_event_module {MODULES}/mod_mpm_event.so
LoadModule authz_core_module {MODULES}/mod_authz_core.so
LoadModule socache_shmcb_module {MODULES}/mod_socache_shmcb.so
LoadModule ssl_module {MODULES}/mod_ssl.so
ServerName localhost
StartServers 1
ServerLimit 1
ThreadsPerChild 8
MaxRequestWorkers 8
GracefulShutdownTimeout 5
Include conf.d/*.conf
IncludeOptional sites-enabled/*.conf
"""
    )
    (root / "conf.d" / "ssl.conf").write_text(
        f"""<IfModule ssl_module>
    Listen 127.0.0.1:{port}
    SSLSessionCache "shmcb:{root}/run/ssl_scache(512000)"
</IfModule>
"""
    )
    # The wiki's vhost comes first, so it is the port's default: the SNI name must pick the intranet's.
    (root / "sites-enabled" / "00-wiki.conf").write_text(
        f"""<VirtualHost 127.0.0.1:{port}>
    ServerName {OTHER_SNI}
    SSLEngine on
    SSLCertificateFile certs/wiki.pem
    SSLCertificateKeyFile certs/wiki.key
</VirtualHost>
"""
    )
    (root / "sites-enabled" / "intranet.conf").write_text(
        f"""# Intranet, managed by certfleet
<VirtualHost 127.0.0.1:{port}>
    ServerName {SNI}
    ServerAlias *.intranet.example.test
    SSLEngine on
    SSLCertificateFile      "certs/intranet.crt"
    SSLCertificateKeyFile   certs/intranet.key
    SSLCertificateChainFile certs/intranet-chain.pem
</VirtualHost>
"""
    )
    for stem, cn in (("intranet", SNI), ("wiki", OTHER_SNI)):
        cert, key = self_signed(cn)
        (root / "certs" / (f"{stem}.crt" if stem == "intranet" else f"{stem}.pem")).write_bytes(cert)
        (root / "certs" / f"{stem}.key").write_bytes(key)
        (root / "certs" / f"{stem}.key").chmod(0o600)
    (root / "certs" / "intranet-chain.pem").write_bytes((root / "certs" / "intranet.crt").read_bytes())


def _httpd(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = require("apache2", HINT)
    return subprocess.run(
        [binary, "-f", str(root / "httpd.conf"), *args], user=PASSWORD_USER, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def apache() -> Iterator[Apache]:
    root = scratch_dir(PASSWORD_USER, "certfleet-apache-")
    port = free_port()
    _write_config(root, port)
    chown_tree(root, PASSWORD_USER)
    started = _httpd(root, "-k", "start")
    if started.returncode != 0:
        pytest.fail(f"httpd did not start: {started.stderr}")
    site = Apache(root, port)
    try:
        yield site
    finally:
        kill_pidfile(root / "run" / "httpd.pid")
        shutil.rmtree(root, ignore_errors=True)


def _register(boot: Bootstrapped, sshd: Sshd, apache: Apache) -> int:
    return register(
        boot, sshd, server_type="apache", app_path=str(apache.root), port=apache.port, sni=SNI
    ).certificate_id


def test_deploy_writes_leaf_key_and_chain_of_the_vhost_then_rotates(
    boot: Bootstrapped, sshd: Sshd, apache: Apache
) -> None:
    placeholder = apache.served()
    wiki = apache.served(OTHER_SNI)
    certificate_id = _register(boot, sshd, apache)

    first = issue_certificate(certificate_id)
    deploy_certificate(certificate_id)
    assert apache.served() == first != placeholder
    assert apache.served(OTHER_SNI) == wiki

    certs = apache.root / "certs"
    (leaf,) = load_material((certs / "intranet.crt").read_bytes()).certificates  # the leaf alone...
    (intermediate,) = load_material((certs / "intranet-chain.pem").read_bytes()).certificates  # ...chain apart
    assert serial_hex(leaf.serial_number) == first
    assert intermediate.subject == leaf.issuer
    assert stat.S_IMODE((certs / "intranet.key").stat().st_mode) == 0o600

    second = issue_certificate(certificate_id)
    deploy_certificate(certificate_id)
    assert apache.served() == second
    assert [d.status for d in deployments(certificate_id)] == [DeploymentStatus.DEPLOYED] * 2


def test_a_failing_config_test_rolls_back(boot: Bootstrapped, sshd: Sshd, apache: Apache) -> None:
    certificate_id = _register(boot, sshd, apache)
    issue_certificate(certificate_id)
    deploy_certificate(certificate_id)
    old = apache.served()
    issue_certificate(certificate_id)
    broken = apache.root / "sites-enabled" / "zz-typo.conf"
    broken.write_text("ServerNam typo.example.test\n")
    try:
        files_before = apache.files()
        with pytest.raises(DeploymentFailed, match="Rolled Back"):
            deploy_certificate(certificate_id)
        assert apache.files() == files_before
    finally:
        broken.unlink()
    assert apache.served() == old
    deployment = deployments(certificate_id)[-1]
    assert deployment.status is DeploymentStatus.ROLLED_BACK
    assert "Invalid command 'ServerNam'" in (deployment.reason or "")
    assert [st.state for st in deployment.steps if st.action == "replace-file"] == [StepState.RESTORED] * 3
    assert _httpd(apache.root, "-t").returncode == 0


def test_a_key_that_does_not_match_never_reaches_httpd(boot: Bootstrapped, sshd: Sshd, apache: Apache) -> None:
    deployment = deploy_with_a_key_that_does_not_match(_register(boot, sshd, apache), apache)
    assert deployment.status is DeploymentStatus.FAILED
    assert "private key to install does not match the certificate" in (deployment.reason or "")
    assert "nothing on the server was changed" in (deployment.reason or "")
    assert deployment.steps == []  # refused while planning, as the Java handlers do: no file touched, no reload
