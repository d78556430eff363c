"""Restarting a Windows service by its Service Name over MS-SCMR, and a deployment proven by a TLS handshake.

The peer is a real Samba smbd (NTLM, the share, the svcctl named pipe, the DCE/RPC bind and calls are
real) that forwards the svcctl pipe to the service manager emulator tests/emulators/scm.py: Samba itself can
no longer start or stop services. The emulated "Apache2.4" service is an init-style script that starts
`openssl s_server` on the certificate and key files on the share, so what the handshake serves is what
certfleet wrote over SMB.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers.probe import wait_for_serial
from certfleet.connectors.servers.scmr import RUNNING, STOPPED, ServiceControl
from certfleet.connectors.servers.smb import SmbSettings, SmbTransport
from certfleet.connectors.servers.transport import restore_file, snapshot_file
from certfleet.demo.listener import free_port
from tests.integration.pki_kit import issued_bundle
from tests.integration.smbd import OTHER_USER, SMB_PASSWORD, SMB_USER, Smbd, make_folder, put_file, running_smbd

SERVICE = """#!/bin/sh
# An init-style service: a TLS listener on the files of the share (stands for Apache on Windows).
PID={state}/{name}.pid
alive() {{  # the process exists and is no zombie (an exited child nobody has reaped yet)
  [ -f "$PID" ] || return 1
  s=$(ps -o stat= -p "$(cat "$PID")" 2>/dev/null) && [ -n "$s" ] && [ "${{s#Z}}" = "$s" ]
}}
case "$1" in
start)
  {start}
  ;;
stop)
  [ -f "$PID" ] || exit 0
  {stop}
  ;;
status)
  alive
  ;;
esac
"""
LISTEN = (
    "openssl s_server -quiet -www -accept 127.0.0.1:{port} -cert {ssl}/site.crt -key {ssl}/site.key "
    '</dev/null >>{state}/{name}.log 2>&1 & echo $! > "$PID"'
)
KILL = 'kill "$(cat "$PID")" 2>/dev/null; while alive; do sleep 0.02; done; rm -f "$PID"'


@dataclass
class Windows:
    smbd: Smbd
    port: int  # where the Apache2.4 service listens
    ssl: Path  # C:\Apache24\conf\ssl on the share
    state: Path  # the services' pid files and logs
    tomcat_port: int  # where the Tomcat9 service listens
    tomcat_ssl: Path  # C:\Tomcat9\conf\ssl on the share


@pytest.fixture(scope="module")
def windows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Windows]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed by this test (Debian package openssl)")
    state = tmp_path_factory.mktemp("services")
    port, tomcat_port = free_port(), free_port()
    # `fail-once` in the state folder: the next start fails (the process dies at once) and clears the flag
    fail_once = (
        f'if [ -f {state}/fail-once ]; then rm -f {state}/fail-once; sh -c "exit 3" & echo $! > "$PID"; '
        f"else {LISTEN}; fi"
    )
    services = {
        "Apache2.4": (fail_once, KILL),
        "Tomcat9": (LISTEN, KILL),
        "Crashes": ("sh -c 'exit 3' & echo $! > \"$PID\"", KILL),  # starts, then its process dies at once
        "Stuck": ('sleep 600 & echo $! > "$PID"', "true"),  # ignores STOP
    }
    scripts = {name: state / f"{name}.sh" for name in services}
    with running_smbd(services=scripts) as smbd:
        ssl = make_folder(smbd.share / "Apache24" / "conf" / "ssl")
        tomcat_ssl = make_folder(smbd.share / "Tomcat9" / "conf" / "ssl")
        for name, (start, stop) in services.items():
            where = (tomcat_port, tomcat_ssl) if name == "Tomcat9" else (port, ssl)
            start = start.format(port=where[0], ssl=where[1], state=state, name=name)
            scripts[name].write_text(SERVICE.format(state=state, name=name, start=start, stop=stop))
            scripts[name].chmod(0o755)
        try:
            yield Windows(smbd, port, ssl, state, tomcat_port, tomcat_ssl)
        finally:
            for name in ("Apache2.4", "Tomcat9"):
                subprocess.run([str(scripts[name]), "stop"], check=False, timeout=30)
            for name in ("Crashes", "Stuck"):
                pid = state / f"{name}.pid"
                if pid.exists():
                    subprocess.run(["kill", pid.read_text().strip()], check=False, capture_output=True)


def _transport(windows: Windows, **overrides: Any) -> SmbTransport:
    values: dict[str, Any] = {
        "host": "127.0.0.1", "username": SMB_USER, "password": SMB_PASSWORD, "port": windows.smbd.port,
    }  # fmt: skip
    values.update(overrides)
    return SmbTransport(SmbSettings(**values))


def _serial(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


def test_deploy_restart_prove_and_roll_back(windows: Windows) -> None:
    old, new = issued_bundle("old.example.test"), issued_bundle("new.example.test")
    put_file(windows.ssl / "site.crt", old.leaf_pem.replace(b"\n", b"\r\n"))
    put_file(windows.ssl / "site.key", old.key_pem)
    crt, key = "C:\\Apache24\\conf\\ssl\\site.crt", "C:\\Apache24\\conf\\ssl\\site.key"
    with _transport(windows) as transport:
        control = ServiceControl(transport, poll_interval=0.05)
        control.restart("Apache2.4", start_timeout=20)  # running on the old certificate
        wait_for_serial("127.0.0.1", windows.port, server_name=None, expected_serial=_serial(old.leaf_pem))
        backups = [snapshot_file(transport, path, path + ".certfleet-bak") for path in (crt, key)]
        transport.write_atomic(crt, new.leaf_pem, 0o644)
        transport.write_atomic(key, new.key_pem, 0o600)
        result = control.restart("Apache2.4", start_timeout=20)
        assert control.state("Apache2.4") == RUNNING
        assert result.start_ms > 0
        assert result.stop_ms > 0
        wait_for_serial("127.0.0.1", windows.port, server_name=None, expected_serial=_serial(new.leaf_pem))
        for backup in backups:  # roll back: the old files, restarted, the old serial served again
            restore_file(transport, backup)
        control.restart("Apache2.4", start_timeout=20)
        wait_for_serial("127.0.0.1", windows.port, server_name=None, expected_serial=_serial(old.leaf_pem))
    assert (windows.ssl / "site.crt").read_bytes() == old.leaf_pem.replace(b"\n", b"\r\n")  # CRLF kept


def test_a_stopped_service_is_started_and_a_second_start_is_harmless(windows: Windows) -> None:
    with _transport(windows) as transport:
        control = ServiceControl(transport, poll_interval=0.05)
        control.restart("Apache2.4", start_timeout=20)
        pid = windows.state / "Apache2.4.pid"
        subprocess.run([str(windows.state / "Apache2.4.sh"), "stop"], check=True, timeout=30)  # stopped behind its back
        assert not pid.exists()
        control.restart("Apache2.4", start_timeout=20)
        assert control.state("Apache2.4") == RUNNING


def test_unknown_service_access_denied_and_services_that_fail(windows: Windows) -> None:
    with _transport(windows) as transport:
        control = ServiceControl(transport, poll_interval=0.05)
        label = transport.label
        with pytest.raises(
            PermanentConnectorError,
            match=re.escape(f"{label}: service 'NoSuchSvc': opening the service refused: no such service"),
        ):
            control.restart("NoSuchSvc")
        with pytest.raises(PermanentConnectorError, match="service 'Crashes' did not come back"):
            control.restart("Crashes", start_timeout=10)
        assert control.state("Crashes") == STOPPED
        control.restart("Stuck", start_timeout=10)
        with pytest.raises(
            PermanentConnectorError, match=re.escape("service 'Stuck' did not stop within 1 s (still RUNNING)")
        ):
            control.restart("Stuck", stop_timeout=1)
    with _transport(windows, username=OTHER_USER) as viewer:
        control = ServiceControl(viewer)
        assert control.state("Apache2.4") in (RUNNING, STOPPED)  # anyone may query
        with pytest.raises(PermanentConnectorError, match="opening the service refused: access denied"):
            control.restart("Apache2.4")


HTTPD_CONF = '# Apache on Windows\r\nServerRoot "C:/Apache24"\r\nListen {port}\r\nInclude conf/extra/httpd-ssl.conf\r\n'
SSL_CONF = (
    "<VirtualHost _default_:{port}>\r\n"
    "  ServerName win.example.test\r\n"
    "  SSLEngine on\r\n"
    '  SSLCertificateFile "C:/Apache24/conf/ssl/site.crt"\r\n'
    '  SSLCertificateKeyFile "C:/Apache24/conf/ssl/site.key"\r\n'
    "</VirtualHost>\r\n"
)
SERVER_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\r\n<Server port="-1" shutdown="SHUTDOWN">\r\n'
    '  <Service name="Catalina">\r\n'
    '    <Connector port="{port}" protocol="org.apache.coyote.http11.Http11NioProtocol" SSLEnabled="true">\r\n'
    "      <SSLHostConfig>\r\n"
    '        <Certificate certificateFile="C:/Tomcat9/conf/ssl/site.crt" certificateKeyFile="conf/ssl/site.key"'
    ' type="EC"/>\r\n'
    "      </SSLHostConfig>\r\n    </Connector>\r\n  </Service>\r\n</Server>\r\n"
)


def _job(windows: Windows, kind: str, port: int, service: str) -> Any:
    from certfleet.jobs.models import ServerAccess, TargetJob

    app_path = "C:\\Apache24" if kind == "apache" else "C:\\Tomcat9"
    server = ServerAccess(
        server_id=1, description="win", host="127.0.0.1", connection="smb", username=SMB_USER,
        password=SMB_PASSWORD, server_type=kind, app_path=app_path, service_name=service, ports=[port],
        smb_port=windows.smbd.port, smb_share="C$",
    )  # fmt: skip
    return TargetJob(
        certificate_id=1, target_id=1, common_name="win.example.test", port=port,
        server_name="win.example.test", server=server,
    )  # fmt: skip


def _deploy(handler: Any, bundle: Any, deployment_id: int) -> list[Any]:
    """The steps of tasks/deployment.py's install_on_target: plan, back up each file, install, test, reload."""
    backups = []
    for write in handler.plan(bundle):
        backups.append(handler.snapshot(write.path, f"{write.path}.certfleet-backup-{deployment_id}"))
        handler.install(write)
    handler.verify()
    handler.activate()
    return backups


@pytest.mark.parametrize("kind", ["apache", "tomcat"])
def test_apache_and_tomcat_on_windows_deploy_restart_prove_and_roll_back(windows: Windows, kind: str) -> None:
    from certfleet.connectors.servers.smb import close_cached_transports
    from certfleet.tasks.build import build_handler

    old, new = issued_bundle(f"old-{kind}.example.test"), issued_bundle(f"new-{kind}.example.test")
    if kind == "apache":
        port, ssl, service = windows.port, windows.ssl, "Apache2.4"
        conf = windows.smbd.share / "Apache24" / "conf"
        make_folder(conf / "extra")
        put_file(conf / "httpd.conf", HTTPD_CONF.format(port=port).encode())
        put_file(conf / "extra" / "httpd-ssl.conf", SSL_CONF.format(port=port).encode())
        configs = [conf / "httpd.conf", conf / "extra" / "httpd-ssl.conf"]
    else:
        port, ssl, service = windows.tomcat_port, windows.tomcat_ssl, "Tomcat9"
        conf = windows.smbd.share / "Tomcat9" / "conf"
        put_file(conf / "server.xml", SERVER_XML.format(port=port).encode())
        configs = [conf / "server.xml"]
    before = {path: path.read_bytes() for path in configs}
    put_file(ssl / "site.crt", old.fullchain_pem)
    put_file(ssl / "site.key", old.key_pem)
    job = _job(windows, kind, port, service)
    try:
        handler = build_handler(job)
        assert type(handler).__name__ == ("WindowsApacheHandler" if kind == "apache" else "WindowsTomcatHandler")
        handler.activate()  # running on the old certificate
        wait_for_serial("127.0.0.1", port, server_name=None, expected_serial=_serial(old.leaf_pem))
        backups = _deploy(handler, new, 7)
        assert sorted(b.path for b in backups) == sorted(
            [f"/C:/{'Apache24' if kind == 'apache' else 'Tomcat9'}/conf/ssl/site.crt",
             f"/C:/{'Apache24' if kind == 'apache' else 'Tomcat9'}/conf/ssl/site.key"]
        )  # fmt: skip
        wait_for_serial("127.0.0.1", port, server_name=None, expected_serial=_serial(new.leaf_pem))
        assert (ssl / "site.crt.certfleet-backup-7").read_bytes() == old.fullchain_pem  # backup beside the file
        assert {path: path.read_bytes() for path in configs} == before  # configuration (CRLF) untouched
        # roll back as rollback-deployment does: restore every file, test, restart, the old serial again
        for backup in backups:
            handler.restore(backup)
        handler.verify()
        handler.activate()
        wait_for_serial("127.0.0.1", port, server_name=None, expected_serial=_serial(old.leaf_pem))
        assert (ssl / "site.crt").read_bytes() == old.fullchain_pem
        # a key that is not the certificate's is refused before any file is touched
        mismatched = type(new)(new.leaf_pem, new.chain_pem, old.key_pem)
        with pytest.raises(PermanentConnectorError, match="does not match the certificate"):
            handler.plan(mismatched)
        assert (ssl / "site.crt").read_bytes() == old.fullchain_pem
    finally:
        close_cached_transports()


def test_windows_paths_in_the_configuration_are_checked(windows: Windows) -> None:
    from certfleet.connectors.servers.smb import close_cached_transports
    from certfleet.tasks.build import build_handler

    conf = windows.smbd.share / "Apache24" / "conf"
    make_folder(conf / "extra")
    put_file(conf / "httpd.conf", HTTPD_CONF.format(port=windows.port).encode())
    bad = SSL_CONF.format(port=windows.port).replace("C:/Apache24/conf/ssl/site.crt", "C:/Windows/System32/x.crt")
    put_file(conf / "extra" / "httpd-ssl.conf", bad.encode())
    try:
        handler = build_handler(_job(windows, "apache", windows.port, "Apache2.4"))
        with pytest.raises(
            PermanentConnectorError, match=re.escape("C:\\Windows\\System32\\x.crt is inside C:\\Windows")
        ):
            _deploy(handler, issued_bundle("x.example.test"), 8)  # refused before the backup is made
        assert not (windows.smbd.share / "Windows").exists()
    finally:
        close_cached_transports()


def test_the_deployment_flow_deploys_to_windows_and_rolls_back_a_service_that_does_not_come_back(
    windows: Windows, boot: Any
) -> None:
    """deploy-certificate end to end: journal, backups, install over SMB, SCMR restart, the handshake proof;
    then a restart that fails: the files are restored, the service restarted, the old serial proven."""
    from certfleet.flows.deployment import DeploymentFailed, deploy_certificate
    from certfleet.flows.issuance import issue_certificate
    from certfleet.models.orm import DeploymentStatus, StepState
    from certfleet.servers.service import ServerInput, create_server
    from tests.integration.conftest import deployments, served_serial

    conf = windows.smbd.share / "Apache24" / "conf"
    make_folder(conf / "extra")
    put_file(conf / "httpd.conf", HTTPD_CONF.format(port=windows.port).encode())
    put_file(conf / "extra" / "httpd-ssl.conf", SSL_CONF.format(port=windows.port).encode())
    placeholder = issued_bundle("placeholder.example.test")
    put_file(windows.ssl / "site.crt", placeholder.fullchain_pem)
    put_file(windows.ssl / "site.key", placeholder.key_pem)
    server = create_server(
        ServerInput(
            connection="smb", description="Apache on Windows", ip_address="127.0.0.1", username=SMB_USER,
            password=SMB_PASSWORD, server_type="apache", apache_path="C:\\Apache24", ports=[windows.port],
            service_name="Apache2.4", smb_port=windows.smbd.port, smb_share="C$", bot_id=boot.local_bot_id,
        ),
        actor="test",
    )  # fmt: skip
    from certfleet.models.db import session_scope
    from certfleet.models.orm import Certificate, DeploymentTarget

    with session_scope() as s:
        cert = Certificate(
            common_name="win.example.test", sans=["win.example.test"], ca_connector_id=boot.ca_connector_id,
            provisioning_bot_id=boot.local_bot_id, key_spec="ec-p256", validity_days=30,
        )  # fmt: skip
        cert.targets.append(DeploymentTarget(server_id=server.id, port=windows.port, server_name="win.example.test"))
        s.add(cert)
        s.flush()
        certificate_id = cert.id
    first = issue_certificate(certificate_id)
    deploy_certificate(certificate_id)
    assert served_serial(windows.port, "win.example.test") == first
    second = issue_certificate(certificate_id)
    (windows.state / "fail-once").write_text("")
    files_before = {p.name: p.read_bytes() for p in windows.ssl.iterdir() if "backup" not in p.name}
    with pytest.raises(DeploymentFailed, match="Rolled Back"):
        deploy_certificate(certificate_id)
    assert served_serial(windows.port, "win.example.test") == first != second
    assert {p.name: p.read_bytes() for p in windows.ssl.iterdir() if "backup" not in p.name} == files_before
    last = deployments(certificate_id)[-1]
    assert last.status is DeploymentStatus.ROLLED_BACK
    assert "did not come back" in (last.reason or "")
    assert [st.state for st in last.steps if st.action == "replace-file"] == [StepState.RESTORED] * 2
