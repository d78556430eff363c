"""Servers for agentless provisioning: the list, and the Add/Edit Server form over `certfleet.servers.service`.

Validation, storage and secrets belong to `certfleet.servers.service` (the one way servers are created and
changed); this module only turns form/API input into its models and its errors into `InputError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from certfleet.bots.routing import NoRoute, route_of_server
from certfleet.dashboard.errors import Forbidden, InputError
from certfleet.dashboard.flows import FlowRunRef, start_flow
from certfleet.dashboard.listing import ColType, Column, ListSpec
from certfleet.models import repo
from certfleet.models.orm import Bot, DeploymentTarget, Server, ServerConnection, ServerStatus
from certfleet.servers import service
from certfleet.servers.service import SERVER_TYPES, ServerInput, ServerUpdate, ServerView

TYPE_LABELS = {kind.value: info.label for kind, info in SERVER_TYPES.items()}
PATH_FIELDS = {info.path_field: kind.value for kind, info in SERVER_TYPES.items()}
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
               choices=tuple(TYPE_LABELS), render=lambda v: TYPE_LABELS.get(v, v or "")),
        Column("ports", "Ports", Server.ports, ColType.TAGS, default=True, width=12),
        Column("version", "Version", Server.version, default=True, width=10),
        Column("service_name", "Service Name", Server.service_name, default=True),
        Column("bot", "Mapped Bot", Bot.name, default=True, render=lambda v: v or "Not Mapped"),
        Column("status", "Status", Server.status, ColType.ENUM, default=True, choices=tuple(ServerStatus), width=12),
        Column("status_reason", "Status Reason", Server.status_reason, default=True, width=30),
        Column("last_checked_at", "Last Checked", Server.last_checked_at, ColType.DATE, default=True),
        Column("mapped", "Mapped", Server.bot_id.is_not(None), ColType.BOOL, render=lambda v: "Yes" if v else "No",
               width=8),
        Column("connection", "OS / Connection", Server.connection, ColType.ENUM,
               choices=tuple(ServerConnection), render=lambda v: CONNECTIONS.get(str(v), str(v) if v else "")),
        Column("keystore_folder", "Key Store Folder Path", Server.keystore_folder, width=26),
        Column("app_path", "Server Path", Server.app_path, width=26),
        Column("username", "Username", Server.username),
        Column("created_at", "Created Date", Server.created_at, ColType.DATE),
        Column("created_by", "Created By", Server.created_by),
    ),
)  # fmt: skip

# Model-level messages of ServerInput name no field: put them beside the field they are about.
_MODEL_MESSAGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("IIS is reached over SMB", "connection"),
    ("username:", "username"),
    ("Windows account", "password"),
    ("give the Service Name", "service_name"),
    ("does not deploy to", "server_type"),
    ("do not apply to a Windows", "connection"),
    ("apply to Windows (SMB) servers only", "connection"),
    ("smb_share_folder", "smb_share_folder"),
    ("the folder the share", "smb_share_folder"),
    ("SMB share", "smb_share"),
    ("smb_share", "smb_share"),
    ("give a password or an SSH private key", "password"),
    ("private key", "ssh_private_key"),
    ("Key Store Folder Path", "keystore_folder"),
    ("allowed path", "allowed_paths"),
)

LABELS = {
    "description": "Description",
    "ip_address": "IP Address",
    "username": "Username",
    "server_type": "Server Type",
    "ports": "Ports",
    "connection": "OS / Connection",
    "smb_port": "SMB port",
    "smb_share": "SMB share",
    "smb_share_folder": "Share folder",
    "smb_connect_timeout": "Connect timeout",
    "smb_io_timeout": "File operation timeout",
    "smb_rpc_timeout": "Service manager timeout",
    **{info.path_field: info.path_label for info in SERVER_TYPES.values()},
}

M = TypeVar("M", ServerInput, ServerUpdate)


def _path_field_of(values: Mapping[str, Any]) -> str:
    kind = str(values.get("server_type") or "").strip().lower()
    for info_kind, info in SERVER_TYPES.items():
        if info_kind.value == kind:
            return info.path_field
    return "app_path"


def _problems(exc: ValidationError, values: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """Each (field, message) of the service's validation error, model-level messages given their field."""
    problems: list[tuple[str | None, str]] = []
    for name, message in service.field_errors(exc).items():
        field: str | None = name.split(".")[0]  # "ports.1" -> the Ports field
        if name == "__all__":
            field = next((f for text, f in _MODEL_MESSAGE_FIELDS if text in message), None)
            if field is None and ("Path" in message or "_path" in message):
                field = _path_field_of(values)
        elif field == "app_path":
            field = _path_field_of(values)
        if message in ("Field required", "String should have at least 1 character"):
            message = f"{LABELS.get(field or '', field)} is required"
        problems.append((field, message))
    return problems


def _validate(model: Callable[..., M], values: Mapping[str, Any]) -> M:
    try:
        return model(**values)
    except ValidationError as exc:
        problems = _problems(exc, values)
        first_field, first = problems[0]
        message = first if len(problems) == 1 else "; ".join(f"{f or 'server'}: {m}" for f, m in problems)
        raise InputError(message, field=first_field, problems=problems) from None


# Given empty, these go back to the type's own default (no extra allowed paths); omitted, they are kept.
_CLEARABLE = (
    "config_test_command",
    "reload_command",
    "allowed_paths",
    "maintenance_cron",
    "maintenance_duration_minutes",
)


def _cleaned(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop empty form values: the service reads them as "not given" (on edit: keep the stored value)."""
    return {
        k: v
        for k, v in values.items()
        if (k in _CLEARABLE and k in values) or (v is not None and v != "" and not (k == "bot_id" and v == "none"))
    }


def _refused(exc: service.ServerNotValid) -> Exception:
    if isinstance(exc, service.CommandNotAllowed) and exc.admin_only:
        return Forbidden(str(exc))
    field = exc.field or ("bot_id" if "bot" in str(exc) else None)
    return InputError(str(exc), field=field, problems=[(field, str(exc))])


def create_server(values: Mapping[str, Any], actor: str, *, admin: bool = False) -> ServerView:
    """`admin`: the caller is an Admin (the only role that may set free-form commands)."""
    data = _validate(ServerInput, {k: v for k, v in _cleaned(values).items() if v is not None and v != ""})
    try:
        return service.create_server(data, actor=actor, custom_commands=admin)
    except service.ServerNotValid as exc:
        raise _refused(exc) from None


def update_server(server_id: int, values: Mapping[str, Any], actor: str, *, admin: bool = False) -> ServerView:
    cleaned = _cleaned(values)
    # ServerUpdate takes the path as app_path: the selected type's field first, else whichever one was given
    given = [f for f in (_path_field_of(cleaned), *PATH_FIELDS) if f in cleaned]
    if given and "app_path" not in cleaned:
        cleaned["app_path"] = cleaned[given[0]]
    for f in PATH_FIELDS:
        cleaned.pop(f, None)
    data = _validate(ServerUpdate, cleaned)
    try:
        return service.update_server(server_id, data, actor=actor, custom_commands=admin)
    except service.ServerNotValid as exc:
        raise _refused(exc) from None
    except ValidationError as exc:  # the merged server (stored values + changes) no longer validates
        problems = _problems(exc, cleaned)
        raise InputError(problems[0][1], field=problems[0][0], problems=problems) from None


def get_server(server_id: int) -> ServerView:
    return service.get_server(server_id)


def start_check(session: Session, server_id: int, actor: str) -> FlowRunRef:
    """Check connectivity: a `check-server` run on the server's bot (never the SSH login in the web process)."""
    server = repo.get(session, Server, server_id)
    try:
        route = route_of_server(server)
    except NoRoute as exc:
        raise InputError(str(exc)) from None
    run = start_flow("check-server", {"server_id": server.id, "actor": actor}, queue=route.queue)
    repo.audit(session, actor=actor, action="start-check-server", obj=server, detail=run.name)
    return run


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
    total, mapped, active, windows = session.execute(
        select(
            func.count(Server.id),
            func.sum(case((Server.bot_id.is_not(None), 1), else_=0)),
            func.sum(case((Server.status == ServerStatus.ACTIVE, 1), else_=0)),
            func.sum(case((Server.connection == ServerConnection.SMB, 1), else_=0)),
        )
    ).one()
    return {
        "total": int(total or 0),
        "mapped": int(mapped or 0),
        "active": int(active or 0),
        "windows": int(windows or 0),
    }
