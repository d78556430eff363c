"""/api/v1/servers: the list and export, add (fields by server type), update, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from certfleet.dashboard.deps import DbSession, Operator, Viewer
from certfleet.dashboard.lists import add_list_api
from certfleet.dashboard.services import servers as svc
from certfleet.models import repo
from certfleet.models.orm import Server, ServerConnection

router = APIRouter(tags=["Servers"])
add_list_api(router, svc.SERVERS, tag="Servers")


class ServerIn(BaseModel):
    description: str
    ip_address: str
    server_type: str = Field(description="nginx, apache, tomcat, iis, jboss, jetty or weblogic")
    connection: str = Field(default=ServerConnection.SSH.value, description="ssh (Linux), smb (Windows) or local")
    username: str | None = None
    password: str | None = Field(default=None, description="write-only; never returned")
    keystore_folder: str | None = None
    app_path: str | None = Field(default=None, description="the type's path: Nginx Path, Tomcat Path, ...")
    version: str | None = None
    ports: list[int] = Field(default_factory=list)
    service_name: str | None = None
    bot_id: int | None = None
    ssh_port: int = 22
    ssh_host_key: str | None = None
    use_sudo: bool = False
    config_test_command: str | None = None
    reload_command: str | None = None


def server_json(s: Server) -> dict[str, Any]:
    return {
        "id": s.id,
        "description": s.description,
        "ip_address": s.host,
        "server_type": s.server_type,
        "connection": s.connection.value,
        "username": s.username,
        "has_password": bool(s.password),
        "keystore_folder": s.keystore_folder,
        "app_path": s.app_path,
        "version": s.version,
        "ports": s.ports,
        "service_name": s.service_name,
        "bot_id": s.bot_id,
        "ssh_port": s.ssh_port,
        "ssh_host_key": s.ssh_host_key,
        "use_sudo": s.use_sudo,
        "config_test_command": s.config_test_command,
        "reload_command": s.reload_command,
        "status": s.status.value,
        "status_reason": s.status_reason,
        "last_checked_at": s.last_checked_at.isoformat() if s.last_checked_at else None,
        "created_at": s.created_at.isoformat(),
        "created_by": s.created_by,
    }


@router.get("/server-types", summary="Server types and the path field each one asks for")
def server_types(who: Viewer) -> list[dict[str, Any]]:
    return [{"key": t.key, "label": t.label, "path_label": t.path_label} for t in svc.SERVER_TYPES.values()]


@router.get("/servers/{server_id}", summary="One server (never its password)")
def get_server(server_id: int, db: DbSession, who: Viewer) -> dict[str, Any]:
    return server_json(repo.get(db, Server, server_id))


@router.post("/servers", status_code=201, summary="Add Server")
def create_server(body: ServerIn, db: DbSession, who: Operator) -> dict[str, Any]:
    return server_json(svc.create_server(db, svc.ServerFields(**body.model_dump()), who.username))


@router.put("/servers/{server_id}", summary="Update a server (an empty password keeps the stored one)")
def update_server(server_id: int, body: ServerIn, db: DbSession, who: Operator) -> dict[str, Any]:
    return server_json(svc.update_server(db, server_id, svc.ServerFields(**body.model_dump()), who.username))


@router.delete("/servers/{server_id}", summary="Delete a server that is no certificate's target")
def delete_server(server_id: int, db: DbSession, who: Operator) -> dict[str, Any]:
    return {"deleted": server_id, "description": svc.delete_server(db, server_id, who.username)}
