"""Tomcat 10 over SSH: a PKCS#12 keystore and server.xml, restarted by the operator's script.

Tomcat runs as the SSH login user from its own CATALINA_BASE (the Debian tomcat10 package's
CATALINA_HOME); it starts with a JKS keystore, which certfleet replaces by a PKCS#12 one and points
server.xml at, keeping the file's comments and layout. Started once for the module.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jks
import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from lxml import etree

from certfleet.demo.listener import free_port
from certfleet.flows.deployment import DeploymentFailed, deploy_certificate
from certfleet.flows.issuance import issue_certificate
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.orm import DeploymentStatus, StepState
from certfleet.pki.bundle import to_java_keystore
from certfleet.pki.keys import load_private_key
from certfleet.pki.parse import load_material, serial_hex
from tests.integration.conftest import (
    Registered,
    deploy_with_a_key_that_does_not_match,
    deployments,
    files_of,
    register,
    self_signed,
    served_serial,
)
from tests.integration.sshd import PASSWORD_USER, Sshd, chown_tree, kill_pidfile, scratch_dir

pytestmark = pytest.mark.usefixtures("custom_commands")  # their restarts are free-form commands

SNI = "payments.example.test"
CATALINA_HOME = Path("/usr/share/tomcat10")
HINT = "run `bash scripts/install-system-packages.sh` (Debian package tomcat10)"

SERVER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- certfleet integration test: a Tomcat with one TLS connector -->
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <!-- HTTPS for the payments site -->
    <Connector port="{port}" address="127.0.0.1" protocol="org.apache.coyote.http11.Http11NioProtocol"
               SSLEnabled="true" maxThreads="8">
      <SSLHostConfig>
        <Certificate certificateKeystoreFile="conf/localhost.jks"
                     certificateKeystorePassword="changeit"
                     type="RSA" />
      </SSLHostConfig>
    </Connector>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"""

RESTART = """#!/bin/sh
# The operator's restart script (no systemd here): stop, start, wait until Tomcat has started.
export CATALINA_HOME={home} CATALINA_BASE={base} CATALINA_PID={base}/tomcat.pid CATALINA_OUT={base}/logs/catalina.out
export JAVA_OPTS="-Xms32m -Xmx192m -XX:TieredStopAtLevel=1 -Xss512k -Djava.security.egd=file:/dev/urandom"
if [ -f "$CATALINA_PID" ] && kill -0 "$(cat "$CATALINA_PID")" 2>/dev/null; then
  pid=$(cat "$CATALINA_PID"); kill "$pid"; i=0
  while kill -0 "$pid" 2>/dev/null; do i=$((i+1)); [ $i -gt 300 ] && kill -9 "$pid"; sleep 0.1; done
fi
rm -f "$CATALINA_PID"; : > "$CATALINA_OUT"
"$CATALINA_HOME/bin/catalina.sh" start >/dev/null 2>&1 </dev/null
i=0
until grep -q "Server startup in" "$CATALINA_OUT"; do
  i=$((i+1)); [ $i -gt 1200 ] && {{ echo "Tomcat did not start:" >&2; tail -5 "$CATALINA_OUT" >&2; exit 1; }}
  sleep 0.1
done
"""


@dataclass
class Tomcat:
    base: Path
    port: int

    @property
    def restart(self) -> str:
        return str(self.base / "restart.sh")

    def served(self) -> str:
        return served_serial(self.port, SNI)

    def files(self) -> dict[str, bytes]:
        return {k: v for k, v in files_of(self.base).items() if k.startswith("conf/")}


@pytest.fixture(scope="module")
def tomcat() -> Iterator[Tomcat]:
    if not (CATALINA_HOME / "bin" / "catalina.sh").exists():
        pytest.fail(f"Tomcat is needed by this test and is not installed: {HINT}")
    base = scratch_dir(PASSWORD_USER, "certfleet-tomcat-")
    port = free_port()
    for d in ("conf", "logs", "temp", "webapps", "work"):
        (base / d).mkdir()
    (base / "conf" / "server.xml").write_text(SERVER_XML.format(port=port))
    shutil.copy("/etc/tomcat10/web.xml", base / "conf" / "web.xml")
    cert_pem, key_pem = self_signed(SNI)
    key = load_private_key(key_pem)
    (base / "conf" / "localhost.jks").write_bytes(
        to_java_keystore(key, load_material(cert_pem).certificates, "changeit", alias="tomcat")
    )
    script = base / "restart.sh"
    script.write_text(RESTART.format(home=CATALINA_HOME, base=base))
    script.chmod(0o755)
    chown_tree(base, PASSWORD_USER)
    started = subprocess.run([str(script)], user=PASSWORD_USER, capture_output=True, text=True, check=False)
    if started.returncode != 0:
        pytest.fail(f"Tomcat did not start: {started.stderr}")
    try:
        yield Tomcat(base, port)
    finally:
        kill_pidfile(base / "tomcat.pid")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def _patient_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    # A JVM restart takes seconds on 2 shared cores: let the handshake proof wait for it.
    monkeypatch.setenv("CERTFLEET_VERIFY_TIMEOUT_S", "90")


def _register(boot: Bootstrapped, sshd: Sshd, tomcat: Tomcat, **extra: str) -> Registered:
    from certfleet.settings import get_settings

    get_settings.cache_clear()
    return register(
        boot,
        sshd,
        server_type="tomcat",
        app_path=str(tomcat.base),
        port=tomcat.port,
        sni=SNI,
        reload_command=tomcat.restart,
        **extra,
    )


def test_deploy_replaces_the_jks_with_pkcs12_then_rotates_in_place(
    boot: Bootstrapped, sshd: Sshd, tomcat: Tomcat
) -> None:
    placeholder = tomcat.served()
    server_xml = tomcat.base / "conf" / "server.xml"
    original = server_xml.read_text()
    certificate_id = _register(boot, sshd, tomcat).certificate_id

    first = issue_certificate(certificate_id)
    deploy_certificate(certificate_id)
    assert tomcat.served() == first != placeholder

    # server.xml: only the Certificate's attributes changed; comments and the rest are as they were.
    rewritten = server_xml.read_text()
    assert "<!-- HTTPS for the payments site -->" in rewritten
    certificate = etree.fromstring(rewritten.encode()).find("./Service/Connector/SSLHostConfig/Certificate")
    assert certificate is not None
    assert certificate.get("certificateKeystoreFile") == "conf/localhost.p12"
    assert certificate.get("certificateKeystoreType") == "PKCS12"
    assert certificate.get("certificateKeystorePassword") == "changeit"  # the password in use was kept
    assert rewritten.split("<Certificate")[0] == original.split("<Certificate")[0]
    assert rewritten.split("/>", 1)[1] == original.split("/>", 1)[1]

    store = tomcat.base / "conf" / "localhost.p12"
    loaded = pkcs12.load_pkcs12(store.read_bytes(), b"changeit")
    assert loaded.cert is not None
    assert serial_hex(loaded.cert.certificate.serial_number) == first
    assert len(loaded.additional_certs) == 1  # the intermediate
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert jks.KeyStore.loads((tomcat.base / "conf" / "localhost.jks").read_bytes(), "changeit")  # left alone

    xml_before = server_xml.read_bytes()
    second = issue_certificate(certificate_id)
    deploy_certificate(certificate_id)
    assert tomcat.served() == second
    assert server_xml.read_bytes() == xml_before  # the second time only the keystore changes
    last = deployments(certificate_id)[-1]
    assert [st.path for st in last.steps if st.action == "replace-file"] == [str(store)]
    assert (last.status, last.previous_serial) == (DeploymentStatus.DEPLOYED, first)


def test_a_failing_config_test_restores_keystore_and_server_xml(boot: Bootstrapped, sshd: Sshd, tomcat: Tomcat) -> None:
    freeze = tomcat.base / "CHANGE-FREEZE"
    # The operator's own check refuses changes during a freeze (e.g. a release weekend).
    certificate_id = _register(
        boot, sshd, tomcat, config_test_command=f"test ! -e {freeze} || {{ echo 'change freeze in effect'; exit 1; }}"
    ).certificate_id
    issue_certificate(certificate_id)
    deploy_certificate(certificate_id)
    old = tomcat.served()
    files_before = tomcat.files()
    issue_certificate(certificate_id)
    freeze.touch()
    try:
        with pytest.raises(DeploymentFailed, match="Rolled Back"):
            deploy_certificate(certificate_id)
    finally:
        freeze.unlink()
    assert tomcat.served() == old
    assert tomcat.files() == files_before
    deployment = deployments(certificate_id)[-1]
    assert "change freeze in effect" in (deployment.reason or "")
    assert [st.action for st in deployment.steps] == ["replace-file", "config-test"]  # never restarted
    assert deployment.steps[0].state is StepState.RESTORED


def test_a_restart_that_brings_back_the_old_certificate_is_rolled_back(
    boot: Bootstrapped, sshd: Sshd, tomcat: Tomcat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTFLEET_VERIFY_TIMEOUT_S", "5")  # nothing restarts here: no need to wait long
    site = _register(boot, sshd, tomcat)
    certificate_id = site.certificate_id
    issue_certificate(certificate_id)
    deploy_certificate(certificate_id)
    old = tomcat.served()
    files_before = tomcat.files()
    new = issue_certificate(certificate_id)
    # The restart command names the wrong service: it "succeeds", and Tomcat keeps the old keystore.
    from certfleet.models import repo
    from certfleet.models.db import session_scope
    from certfleet.models.orm import Server

    with session_scope() as s:
        repo.get(s, Server, site.server_id).reload_command = "true"

    state = deploy_certificate(certificate_id, return_state=True)

    assert state.is_failed()
    assert tomcat.served() == old
    assert tomcat.files() == files_before
    deployment = deployments(certificate_id)[-1]
    assert deployment.status is DeploymentStatus.ROLLED_BACK
    assert f"expected serial {new} was not served" in (deployment.reason or "")


def test_a_key_that_does_not_match_is_refused_before_anything_changes(
    boot: Bootstrapped, sshd: Sshd, tomcat: Tomcat
) -> None:
    deployment = deploy_with_a_key_that_does_not_match(_register(boot, sshd, tomcat).certificate_id, tomcat)
    assert deployment.status is DeploymentStatus.FAILED
    assert "private key to install does not match the certificate" in (deployment.reason or "")
    assert "nothing on the server was changed" in (deployment.reason or "")
    assert deployment.steps == []
