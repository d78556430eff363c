"""Holes closed in the server service: commands are a per-type choice (free-form only for Admins with the
setting on, audited old -> new), stored credentials never follow an edit to another host, server paths follow
the one path rule, and the check finds each command's program on the server and stores its full path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import select

from certfleet.connectors.servers import commands
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent
from certfleet.servers.service import (
    CommandNotAllowed,
    ServerInput,
    ServerNotValid,
    ServerUpdate,
    check_connectivity,
    create_server,
    get_server,
    update_server,
)
from tests.integration.sshd import KEY_USER, PASSWORD, PASSWORD_USER, Sshd, running_sshd, scratch_dir

PWNED = "touch /tmp/pwned"


def _form(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "description": "web 1",
        "ip_address": "10.0.0.10",
        "username": "deploy",
        "password": "deploy-password",
        "server_type": "nginx",
        "nginx_path": "/etc/nginx",
        "ports": "443",
        "service_name": "nginx",
    }
    values.update(overrides)
    return values


def _audits(action: str) -> list[str]:
    with session_scope() as s:
        return [e.detail or "" for e in s.scalars(select(AuditEvent).where(AuditEvent.action == action))]


@pytest.fixture
def custom_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(commands.ALLOW_CUSTOM_ENV, raising=False)


@pytest.fixture
def custom_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(commands.ALLOW_CUSTOM_ENV, "true")


# -- commands ------------------------------------------------------------------------------------------------


def test_an_operator_may_choose_known_commands_only(database: str, custom_on: None) -> None:
    view = create_server(
        ServerInput(**_form(config_test_command="/usr/sbin/nginx -t", reload_command="systemctl reload")),
        actor="operator",
    )
    assert (view.config_test_command, view.reload_command) == ("/usr/sbin/nginx -t", "systemctl reload")
    for field in ("config_test_command", "reload_command"):
        with pytest.raises(CommandNotAllowed) as caught:
            create_server(ServerInput(**_form(ip_address="10.0.0.11", **{field: PWNED})), actor="operator")
        assert (caught.value.field, caught.value.admin_only) == (field, True)
        assert "free-form commands may be set by an Admin only" in str(caught.value)
        with pytest.raises(CommandNotAllowed):
            update_server(view.id, ServerUpdate(**{field: PWNED}), actor="operator")
    assert get_server(view.id).reload_command == "systemctl reload"


def test_free_form_commands_need_the_setting_even_for_an_admin(database: str, custom_off: None) -> None:
    with pytest.raises(CommandNotAllowed) as caught:
        create_server(ServerInput(**_form(reload_command=PWNED)), actor="admin", custom_commands=True)
    assert (caught.value.field, caught.value.admin_only) == ("reload_command", False)
    assert "free-form commands are turned off (CERTFLEET_ALLOW_CUSTOM_COMMANDS)" in str(caught.value)
    assert "known: `nginx -s reload`, `systemctl reload`, `systemctl restart`" in str(caught.value)


def test_an_admin_with_the_setting_on_sets_one_and_the_audit_keeps_old_and_new(database: str, custom_on: None) -> None:
    view = create_server(ServerInput(**_form(reload_command="systemctl reload")), actor="admin", custom_commands=True)
    update_server(view.id, ServerUpdate(reload_command="nginx -s reload -g 'daemon off;'"), actor="admin",
                  custom_commands=True)  # fmt: skip
    assert get_server(view.id).reload_command == "nginx -s reload -g 'daemon off;'"
    assert "reload_command: 'systemctl reload' -> \"nginx -s reload -g 'daemon off;'\"" in _audits("update-server")
    # an unchanged free-form command does not stop an Operator from editing the rest
    update_server(view.id, ServerUpdate(description="web 1 (DMZ)"), actor="operator")
    assert get_server(view.id).description == "web 1 (DMZ)"


def test_a_reload_command_once_set_can_be_cleared_again(database: str) -> None:
    view = create_server(ServerInput(**_form(reload_command="systemctl restart")), actor="operator")
    update_server(view.id, ServerUpdate(description="kept"), actor="operator")  # omitted: kept
    assert get_server(view.id).reload_command == "systemctl restart"
    update_server(view.id, ServerUpdate.model_validate({"reload_command": None}), actor="operator")
    assert get_server(view.id).reload_command is None  # back to the type's own
    update_server(view.id, ServerUpdate.model_validate({"config_test_command": "nginx -t"}), actor="operator")
    update_server(view.id, ServerUpdate.model_validate({"config_test_command": ""}), actor="operator")
    assert get_server(view.id).config_test_command is None
    assert "reload_command: 'systemctl restart' -> None" in _audits("update-server")


# -- credentials never follow an edited address ----------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ip_address": "203.0.113.66"}, "the address changed"),
        (
            {"ip_address": "203.0.113.66", "clear_host_key": True},
            "the address changed and the pinned host key was cleared",
        ),
        ({"ssh_port": 2222}, "the SSH port changed"),
        ({"clear_host_key": True}, "the pinned host key was cleared"),
        ({"ssh_host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGF0dGFja2VyLWtleQ"}, "the pinned host key changed"),
    ],
)
def test_a_new_address_port_or_pin_needs_the_password_again(database: str, change: dict[str, Any], reason: str) -> None:
    pinned = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG5vdC1yZWFs"
    view = create_server(ServerInput(**_form(ssh_host_key=pinned)), actor="operator")
    with pytest.raises(ServerNotValid) as caught:
        update_server(view.id, ServerUpdate(**change), actor="operator")
    assert (caught.value.field, str(caught.value)) == ("password", f"give the password again: {reason}")
    after = get_server(view.id)
    assert (after.ip_address, after.ssh_port, after.ssh_host_key) == ("10.0.0.10", 22, pinned)  # nothing changed
    moved = update_server(view.id, ServerUpdate(**change, password=SecretStr("new-host-password")), actor="operator")
    assert (moved.has_password, moved.status) == (True, "Pending")


def test_a_key_login_needs_the_key_again(database: str, sshd: Sshd) -> None:
    key = sshd.client_key_pem
    view = create_server(ServerInput(**_form(username=KEY_USER, password=None, ssh_private_key=key)), actor="ops")
    with pytest.raises(ServerNotValid, match="give the SSH private key again: the address changed") as caught:
        update_server(view.id, ServerUpdate(ip_address="203.0.113.66"), actor="ops")
    assert caught.value.field == "ssh_private_key"
    assert update_server(
        view.id, ServerUpdate(ip_address="203.0.113.66", ssh_private_key=key), actor="ops"
    ).has_private_key


# -- paths ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nginx_path": "/etc/nginx/../../etc"}, "Nginx Path '/etc/nginx/../../etc' contains a `.` or `..` part"),
        ({"nginx_path": "/proc/self"}, "Nginx Path '/proc/self' is inside /proc, a system location"),
        ({"keystore_folder": "/etc/ssh"}, "Key Store Folder Path '/etc/ssh' is /etc/ssh, a system location"),
        ({"keystore_folder": "/dev"}, "(rule: system-location)"),
        ({"allowed_paths": ["/srv/tls", "/boot"]}, "allowed path 2 '/boot' is /boot, a system location"),
        ({"allowed_paths": "/srv/tls\n/etc/nginx/../../root/.ssh"}, "allowed path 2"),
    ],
)
def test_server_paths_follow_the_path_rule(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ServerInput(**_form(**overrides))
    assert message in str(caught.value)


def test_allowed_paths_are_stored_as_given(database: str) -> None:
    view = create_server(ServerInput(**_form(allowed_paths="/srv/tls/\n/etc/ssl/certfleet")), actor="operator")
    assert view.allowed_paths == ["/srv/tls/", "/etc/ssl/certfleet"]
    assert update_server(view.id, ServerUpdate(allowed_paths=[]), actor="operator").allowed_paths == []


# -- the check resolves programs to absolute paths ------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


def _on_this_machine(name: str) -> str:
    return next(f"{d}/{name}" for d in commands.SEARCH_DIRS if Path(f"{d}/{name}").exists())


def test_the_check_stores_each_commands_program_with_its_full_path(database: str, sshd: Sshd) -> None:
    nginx = scratch_dir(PASSWORD_USER, "certfleet-resolve-")
    (nginx / "nginx.conf").write_text("events {}\n")
    view = create_server(
        ServerInput(**_form(ip_address="127.0.0.1", username=PASSWORD_USER, password=PASSWORD, ssh_port=sshd.port,
                            nginx_path=str(nginx), service_name="nginx")),
        actor="operator",
    )  # fmt: skip
    assert (view.config_test_command, view.reload_command) == (None, None)  # the type's own
    result = check_connectivity(view.id, actor="operator")
    assert result.status == "Active", result.reason
    after = get_server(view.id)
    assert after.config_test_command == f"{_on_this_machine('nginx')} -t"
    assert after.reload_command == f"{_on_this_machine('systemctl')} reload"
    assert f"config test: {_on_this_machine('nginx')} -t" in result.checked
    assert any(
        f"config_test_command: None -> '{_on_this_machine('nginx')} -t'" in d for d in _audits("resolve-server-command")
    )
