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


@pytest.fixture(scope="module")
def windows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Windows]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed by this test (Debian package openssl)")
    state = tmp_path_factory.mktemp("services")
    port = free_port()
    services = {
        "Apache2.4": (LISTEN, KILL),
        "Crashes": ("sh -c 'exit 3' & echo $! > \"$PID\"", KILL),  # starts, then its process dies at once
        "Stuck": ('sleep 600 & echo $! > "$PID"', "true"),  # ignores STOP
    }
    scripts = {name: state / f"{name}.sh" for name in services}
    with running_smbd(services=scripts) as smbd:
        ssl = make_folder(smbd.share / "Apache24" / "conf" / "ssl")
        for name, (start, stop) in services.items():
            start = start.format(port=port, ssl=ssl, state=state, name=name)
            scripts[name].write_text(SERVICE.format(state=state, name=name, start=start, stop=stop))
            scripts[name].chmod(0o755)
        try:
            yield Windows(smbd, port, ssl, state)
        finally:
            subprocess.run([str(scripts["Apache2.4"]), "stop"], check=False, timeout=30)
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
            match=re.escape(f"{label}: service 'Tomcat9': opening the service refused: no such service"),
        ):
            control.restart("Tomcat9")
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
