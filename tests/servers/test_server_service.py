"""The Add Server service: every field validated with a message that says what to fix, secrets sealed,
and a connectivity check against a real sshd that sets Active or says why not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from certfleet.connectors.servers.ssh import fingerprint
from certfleet.demo.listener import free_port
from certfleet.models.db import session_scope
from certfleet.servers.service import (
    SERVER_TYPES,
    ServerInput,
    ServerNotValid,
    ServerUpdate,
    check_connectivity,
    create_server,
    field_errors,
    get_server,
    list_servers,
    update_server,
)
from tests.integration.sshd import PASSWORD, PASSWORD_USER, SUDO_USER, Sshd, running_sshd, scratch_dir


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


def _form(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "description": "Production web 1",
        "ip_address": "127.0.0.1",
        "username": PASSWORD_USER,
        "password": PASSWORD,
        "server_type": "nginx",
        "nginx_path": "/etc/nginx/",
        "ports": "443, 8443",
        "version": "Nginx 1.22",
        "service_name": "nginx",
    }
    values.update(overrides)
    return values


def _errors(**overrides: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        ServerInput(**_form(**overrides))
    return field_errors(info.value)


def test_the_form_as_the_manual_describes_it_is_accepted() -> None:
    data = ServerInput(**_form())
    assert data.app_path == "/etc/nginx/"  # stored exactly as given
    assert data.ports == [443, 8443]
    assert data.ssh_port == 22
    assert {info.path_label for info in SERVER_TYPES.values()} == {
        "Nginx Path",
        "Apache HTTP Path",
        "Tomcat Path",
        "Jetty Path",
        "JBoss Path",
        "WebLogic Path",
        "IIS Site Name",  # IIS (Windows over SMB only) names its site, not a path
    }
    assert ServerInput(**_form(server_type="Apache HTTP", nginx_path=None, apache_path="/etc/httpd")).app_path == (
        "/etc/httpd"
    )


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"ip_address": "999.1.1.1"}, "ip_address", "'999.1.1.1' is not a valid IP address"),
        ({"ip_address": "web 1"}, "ip_address", "not a valid IP address or host name"),
        ({"ports": "443, 70000"}, "ports.1", "less than or equal to 65535"),
        ({"ports": "443, https"}, "ports", "'https' is not a port number"),
        ({"ports": ""}, "ports", "at least 1 item"),
        ({"server_type": "lighttpd"}, "server_type", "unknown server type 'lighttpd'; choose one of: nginx, apache"),
        ({"server_type": "IIS"}, "__all__", "IIS is reached over SMB: choose the connection Windows (SMB)"),
        ({"nginx_path": "etc/nginx"}, "__all__", "Nginx Path 'etc/nginx' must be an absolute path"),
        ({"nginx_path": None}, "__all__", "give the Nginx Path (for example /etc/nginx/)"),
        ({"tomcat_path": "/opt/tomcat"}, "__all__", "tomcat_path does not apply to a Nginx server"),
        ({"password": ""}, "__all__", "give a password or an SSH private key"),
        ({"ssh_host_key": "not a key"}, "ssh_host_key", "OpenSSH public key line"),
        ({"ssh_private_key": "hunter2"}, "ssh_private_key", "OpenSSH or PEM private key"),
        ({"service_name": "nginx; rm -rf /"}, "service_name", "is not a service name"),
        ({"ssh_port": 0}, "ssh_port", "greater than or equal to 1"),
        ({"keystore_folder": "keys"}, "__all__", "Key Store Folder Path 'keys' must be an absolute path"),
    ],
)
def test_bad_input_says_what_to_fix(overrides: dict[str, Any], field: str, message: str) -> None:
    errors = _errors(**overrides)
    assert field in errors, errors
    assert message in errors[field]


def test_an_unreadable_private_key_is_refused(sshd: Sshd) -> None:
    broken = sshd.client_key_pem.replace("b3BlbnNzaC1rZXktdjE", "AAAAAAAAAAAAAAAAAAA")
    errors = _errors(password=None, ssh_private_key=broken)
    assert "not a valid OpenSSH or PEM private key" in errors["__all__"]


def test_create_seals_secrets_and_shows_none(database: str) -> None:
    view = create_server(
        ServerInput(**_form(ssh_host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG5vdC1yZWFs")), actor="ops"
    )
    assert view.status == "Pending"
    assert view.has_password
    assert "password" not in view.model_dump()
    assert PASSWORD not in json.dumps(view.model_dump(mode="json"))
    assert view.host_key_fingerprint == fingerprint("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG5vdC1yZWFs")
    with session_scope() as s:
        stored = s.execute(text("SELECT password FROM servers WHERE id = :id"), {"id": view.id}).scalar_one()
    assert PASSWORD not in stored  # encrypted at rest
    with pytest.raises(ServerNotValid, match="already registers this nginx"):
        create_server(ServerInput(**_form()), actor="ops")
    with pytest.raises(ServerNotValid, match="bot 999 does not exist"):
        create_server(ServerInput(**_form(nginx_path="/srv/nginx", bot_id=999)), actor="ops")
    assert [v.id for v in list_servers()] == [view.id]


def test_update_keeps_secrets_and_sends_the_server_back_to_pending(database: str) -> None:
    view = create_server(ServerInput(**_form()), actor="ops")
    updated = update_server(view.id, ServerUpdate(description="Production web 1 (DMZ)"), actor="ops")
    assert (updated.description, updated.has_password, updated.status) == ("Production web 1 (DMZ)", True, "Pending")
    moved = update_server(view.id, ServerUpdate(ip_address="192.0.2.10", ports="443", password=PASSWORD), actor="ops")
    assert (moved.ip_address, moved.ports, moved.status_reason) == (
        "192.0.2.10",
        [443],
        "changed: run the connectivity check",
    )
    with pytest.raises(ValidationError, match="give a password or an SSH private key"):
        update_server(view.id, ServerUpdate(clear_password=True), actor="ops")
    assert get_server(view.id).has_password


def _ssh_server(sshd: Sshd, app_path: Path | str, **overrides: Any) -> int:
    form = _form(nginx_path=str(app_path), ssh_port=sshd.port, **overrides)
    return create_server(ServerInput(**form), actor="ops").id


def _nginx_dir() -> Path:
    path = scratch_dir(PASSWORD_USER, "certfleet-check-")
    (path / "nginx.conf").write_text("events {}\n")
    return path


def test_connectivity_check_pins_the_host_key_and_sets_active(database: str, sshd: Sshd) -> None:
    server_id = _ssh_server(sshd, _nginx_dir())
    result = check_connectivity(server_id, actor="ops")
    assert (result.status, result.reason) == ("Active", None)
    assert result.host_key_fingerprint == fingerprint(sshd.host_key_line)
    assert result.checked[0] == f"login as {PASSWORD_USER}"
    assert any(line.endswith("is writable (a test file was written and removed)") for line in result.checked)
    view = get_server(server_id)
    assert (view.status, view.ssh_host_key) == ("Active", sshd.host_key_line)
    assert view.last_checked_at is not None


def test_connectivity_check_with_sudo(database: str, sshd: Sshd) -> None:
    server_id = _ssh_server(sshd, _nginx_dir(), username=SUDO_USER, use_sudo=True)
    result = check_connectivity(server_id)
    assert result.status == "Active"
    assert "sudo" in result.checked


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong password", "authentication failed: the server refused the password for user 'certfleet-pw'"),
        ("missing path", "the Nginx Path /srv/no-such-nginx does not exist on certfleet-pw@127.0.0.1"),
        ("missing config", "the configuration file {path}/nginx.conf does not exist"),
        ("unreachable", "connection refused: no SSH server listens there"),
        ("sudo refused", "sudo refused"),
        ("read-only path", "the Nginx Path {path} is not writable: "),
        ("read-only path", "give the user write access to {path} or turn sudo on"),
    ],
)
def test_connectivity_check_says_why_not(database: str, sshd: Sshd, case: str, expected: str) -> None:
    path: Path | str = _nginx_dir()
    overrides: dict[str, Any] = {}
    if case == "wrong password":
        overrides["password"] = "wrong"
    elif case == "missing path":
        path = "/srv/no-such-nginx"
    elif case == "missing config":
        (Path(path) / "nginx.conf").unlink()
    elif case == "sudo refused":
        overrides["use_sudo"] = True
    elif case == "read-only path":  # the login may read the configuration but not write certificates there
        Path(path).chmod(0o555)
    server_id = _ssh_server(sshd, path, **overrides)
    if case == "unreachable":
        with session_scope() as s:
            s.execute(text("UPDATE servers SET ssh_port = :p WHERE id = :id"), {"p": free_port(), "id": server_id})
    failed_logins = sshd.log().count("Failed password")

    result = check_connectivity(server_id)

    assert result.status == "Unreachable"
    assert expected.format(path=path) in (result.reason or "")
    assert get_server(server_id).status_reason == result.reason
    if case == "wrong password":
        assert sshd.log().count("Failed password") == failed_logins + 1  # tried once, never again
        assert "wrong" not in (result.reason or "")


def test_a_changed_host_key_is_reported_with_both_fingerprints(database: str, sshd: Sshd) -> None:
    server_id = _ssh_server(sshd, _nginx_dir())
    assert check_connectivity(server_id).status == "Active"
    old = sshd.host_key_line
    new = sshd.restart_with_new_host_key()
    result = check_connectivity(server_id)
    assert result.status == "Unreachable"
    assert fingerprint(old) in (result.reason or "")
    assert fingerprint(new) in (result.reason or "")
    assert get_server(server_id).ssh_host_key == old  # the pin is not silently replaced
    # the admin confirms the new key, and gives the password again for the host that now answers
    update_server(server_id, ServerUpdate(clear_host_key=True, password=PASSWORD), actor="ops")
    assert check_connectivity(server_id).status == "Active"
    assert get_server(server_id).ssh_host_key == new
