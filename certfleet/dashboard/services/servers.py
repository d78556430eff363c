"""Servers for agentless provisioning: the list, the Add Server form (fields by server type), edit, delete."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from certfleet.dashboard.errors import InputError
from certfleet.dashboard.listing import ColType, Column, ListSpec
from certfleet.dashboard.services import common
from certfleet.models import repo
from certfleet.models.orm import Bot, DeploymentTarget, Server, ServerConnection, ServerStatus, utcnow


@dataclass(frozen=True)
class ServerType:
    key: str
    label: str
    path_label: str | None  # the manual's server-specific path field; None for IIS (Key Store Folder Path only)
    path_example: str


SERVER_TYPES: dict[str, ServerType] = {
    t.key: t
    for t in (
        ServerType("nginx", "Nginx", "Nginx Path", "/etc/nginx/"),
        ServerType("apache", "Apache HTTP", "Apache HTTP Path", "/etc/httpd/ or C:\\Apache24"),
        ServerType("tomcat", "Tomcat", "Tomcat Path", "/opt/tomcat or C:\\Program Files\\Apache Tomcat"),
        ServerType("iis", "IIS", None, ""),
        ServerType("jboss", "JBoss", "JBoss Path", "/opt/jboss/"),
        ServerType("jetty", "Jetty", "Jetty Path", "/opt/jetty"),
        ServerType("weblogic", "WebLogic", "WebLogic Path", "/u01/oracle/user_projects/domains/base_domain"),
    )
}
CONNECTIONS = {
    ServerConnection.SSH.value: "Linux (SSH)",
    ServerConnection.SMB.value: "Windows (SMB)",
    ServerConnection.LOCAL.value: "Local agent (the bot's own file system)",
}

SERVERS = ListSpec(
    name="servers",
    title="Servers",
    base=lambda: select(Server.id).outerjoin(Bot, Bot.id == Server.bot_id),
    pk=Server.id,
    default_sort="description",
    columns=(
        Column("description", "Description", Server.description, default=True, width=26),
        Column("host", "IP Address", Server.host, default=True, width=18),
        Column("server_type", "Server Type", Server.server_type, ColType.ENUM, default=True,
               choices=tuple(SERVER_TYPES), render=lambda v: SERVER_TYPES[v].label if v in SERVER_TYPES else v or ""),
        Column("ports", "Ports", Server.ports, ColType.TAGS, default=True, width=12),
        Column("version", "Version", Server.version, default=True, width=10),
        Column("service_name", "Service Name", Server.service_name, default=True),
        Column("bot", "Mapped Bot", Bot.name, default=True, render=lambda v: v or "Not Mapped"),
        Column("status", "Status", Server.status, ColType.ENUM, default=True, choices=tuple(ServerStatus), width=12),
        Column("mapped", "Mapped", Server.bot_id.is_not(None), ColType.BOOL, render=lambda v: "Yes" if v else "No",
               width=8),
        Column("connection", "OS / Connection", Server.connection, ColType.ENUM,
               choices=tuple(ServerConnection), render=lambda v: CONNECTIONS.get(str(v), str(v) if v else "")),
        Column("keystore_folder", "Key Store Folder Path", Server.keystore_folder, width=26),
        Column("app_path", "Server Path", Server.app_path, width=26),
        Column("username", "Username", Server.username),
        Column("status_reason", "Status Reason", Server.status_reason, width=30),
        Column("last_checked_at", "Last Checked", Server.last_checked_at, ColType.DATE),
        Column("created_at", "Created Date", Server.created_at, ColType.DATE),
        Column("created_by", "Created By", Server.created_by),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class ServerFields:
    description: str
    ip_address: str
    server_type: str
    connection: str = ServerConnection.SSH.value
    username: str | None = None
    password: str | None = None  # empty on edit: keep the stored one
    keystore_folder: str | None = None
    app_path: str | None = None
    version: str | None = None
    ports: str | list[int] | None = None
    service_name: str | None = None
    bot_id: str | int | None = None
    ssh_port: str | int | None = 22
    ssh_host_key: str | None = None
    use_sudo: bool = False
    config_test_command: str | None = None
    reload_command: str | None = None


def _apply(session: Session, server: Server, f: ServerFields, *, creating: bool) -> None:
    server.description = common.text(f.description, "description", required=True) or ""
    server.host = common.host(f.ip_address, "ip_address") or ""
    kind = SERVER_TYPES.get((f.server_type or "").strip().lower())
    if kind is None:
        raise InputError(
            f"server type must be one of {', '.join(t.label for t in SERVER_TYPES.values())}, not {f.server_type!r}",
            field="server_type",
        )
    server.server_type = kind.key
    server.connection = common.label(ServerConnection, f.connection or "ssh", "connection")
    server.username = common.text(f.username, "username", max_len=120)
    if server.connection is not ServerConnection.LOCAL and not server.username:
        raise InputError("username is required to log in to the server over SSH or SMB", field="username")
    if f.password:
        server.password = f.password
    elif creating and server.connection is ServerConnection.SMB:
        raise InputError("password is required for Windows (SMB) servers", field="password")
    server.keystore_folder = common.text(f.keystore_folder, "keystore_folder", max_len=500)
    server.app_path = common.text(f.app_path, "app_path", max_len=500) if kind.path_label else None
    if kind.key == "iis" and not server.keystore_folder:
        raise InputError("Key Store Folder Path is required for IIS", field="keystore_folder")
    server.version = common.text(f.version, "version", max_len=40)
    server.ports = common.ports(f.ports, required=True)
    server.service_name = common.text(f.service_name, "service_name", max_len=120)
    if f.bot_id in (None, "", "none"):
        server.bot_id = None
    else:
        try:
            server.bot_id = repo.get(session, Bot, int(f.bot_id)).id
        except (ValueError, repo.NotFound):
            raise InputError(f"bot {f.bot_id} does not exist", field="bot_id") from None
    server.ssh_port = common.integer(f.ssh_port, "ssh_port", low=1, high=65535, default=22)
    server.ssh_host_key = common.text(f.ssh_host_key, "ssh_host_key", max_len=4000)
    server.use_sudo = bool(f.use_sudo)
    server.config_test_command = common.text(f.config_test_command, "config_test_command", max_len=1000)
    server.reload_command = common.text(f.reload_command, "reload_command", max_len=1000)


def create_server(session: Session, fields: ServerFields, actor: str) -> Server:
    server = Server(created_by=actor, created_at=utcnow(), status=ServerStatus.PENDING)
    _apply(session, server, fields, creating=True)
    session.add(server)
    session.flush()
    repo.audit(session, actor=actor, action="create-server", obj=server, detail=f"{server.description} {server.host}")
    return server


def update_server(session: Session, server_id: int, fields: ServerFields, actor: str) -> Server:
    server = repo.get(session, Server, server_id)
    _apply(session, server, fields, creating=False)
    repo.audit(session, actor=actor, action="update-server", obj=server, detail=server.description)
    return server


def delete_server(session: Session, server_id: int, actor: str) -> str:
    server = repo.get(session, Server, server_id)
    used = session.scalar(select(func.count(DeploymentTarget.id)).where(DeploymentTarget.server_id == server.id))
    if used:
        raise InputError(
            f"{server.description} is a deployment target of {used} certificate(s): remove those targets first"
        )
    repo.audit(session, actor=actor, action="delete-server", obj=server, detail=server.description)
    session.delete(server)
    return server.description


def counts(session: Session) -> dict[str, int]:
    total, mapped, active = session.execute(
        select(
            func.count(Server.id),
            func.sum(case((Server.bot_id.is_not(None), 1), else_=0)),
            func.sum(case((Server.status == ServerStatus.ACTIVE, 1), else_=0)),
        )
    ).one()
    return {"total": int(total or 0), "mapped": int(mapped or 0), "active": int(active or 0)}
