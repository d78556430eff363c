"""The demo fleet looks like a healthy fleet: its local-agent servers pass the connectivity check and are Active."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from certfleet.demo.fleet import plan_fleet, register_fleet
from certfleet.models.bootstrap import initialize
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, Server, ServerConnection, ServerStatus
from certfleet.servers.service import check_connectivity

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # file-system checks, not SQL


def _local_server(app_path: str | None, keystore_folder: str | None = None) -> int:
    with session_scope() as s:
        server = Server(
            description="local web",
            host="127.0.0.1",
            ports=[8443],
            connection=ServerConnection.LOCAL,
            server_type="generic",
            app_path=app_path,
            keystore_folder=keystore_folder,
        )
        s.add(server)
        s.flush()
        return server.id


def test_a_new_demo_fleet_is_active(database: str, tmp_path: Path) -> None:
    boot = initialize()
    hosts = plan_fleet(tmp_path / "fleet", 2)
    register_fleet(hosts, ca_connector_id=boot.ca_connector_id, bot_id=boot.local_bot_id)
    with session_scope() as s:
        servers = s.scalars(select(Server).order_by(Server.id)).all()
        assert [(x.status, x.status_reason) for x in servers] == [(ServerStatus.ACTIVE, None)] * 2
        assert all(x.last_checked_at is not None for x in servers)
        audits = s.scalars(select(AuditEvent).where(AuditEvent.action == "check-server")).all()
        assert [(a.outcome, a.detail) for a in audits] == [
            ("success", f"{h.directory} exists and is writable") for h in hosts
        ]


def test_a_local_server_whose_directories_exist_is_active(database: str, tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    result = check_connectivity(_local_server(str(tmp_path), str(tmp_path / "keys")))
    assert (result.status, result.reason) == ("Active", None)
    assert result.checked == [f"{tmp_path} exists and is writable", f"{tmp_path / 'keys'} exists and is writable"]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        ("missing", "the installation path {p} does not exist on this host"),
        ("file", "the installation path {p} is not a directory on this host"),
    ],
)
def test_a_local_server_with_a_bad_path_is_unreachable_with_the_reason(
    database: str, tmp_path: Path, make: str, reason: str
) -> None:
    path = tmp_path / "web"
    if make == "file":
        path.write_text("not a directory")
    server_id = _local_server(str(path))
    result = check_connectivity(server_id)
    assert (result.status, result.reason) == ("Unreachable", reason.format(p=path))
    with session_scope() as s:
        assert s.get(Server, server_id).status is ServerStatus.UNREACHABLE  # type: ignore[union-attr]


def test_a_missing_key_store_folder_is_named(database: str, tmp_path: Path) -> None:
    result = check_connectivity(_local_server(str(tmp_path), str(tmp_path / "keys")))
    assert result.reason == f"the Key Store Folder Path {tmp_path / 'keys'} does not exist on this host"


def test_a_local_server_without_a_path_says_what_to_set(database: str) -> None:
    result = check_connectivity(_local_server(None))
    assert (result.status, result.reason) == (
        "Unreachable",
        "set the installation path: deployments write certificates there",
    )
