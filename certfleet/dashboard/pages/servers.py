"""Servers pages: the list, Add/Edit Server (fields by server type) over `certfleet.servers.service`, Check
connectivity (a `check-server` run in Prefect), delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from certfleet.bots import service as bots_svc
from certfleet.connectors.servers import commands
from certfleet.dashboard.deps import DbSession, Operator, Viewer
from certfleet.dashboard.errors import InputError, flash
from certfleet.dashboard.lists import add_export_page, page_context
from certfleet.dashboard.services import servers as svc
from certfleet.dashboard.templating import render
from certfleet.models import repo
from certfleet.models.orm import Server
from certfleet.servers.service import CONNECTION_ALIASES, SERVER_TYPES, ServerView

router = APIRouter()
add_export_page(router, svc.SERVERS)

SECRETS = ("password", "ssh_private_key", "ssh_key_passphrase")


class ServerForm:
    """The Add/Edit Server form as posted: one path field per server type (only the selected one is enabled)."""

    def __init__(
        self,
        description: Annotated[str, Form()] = "",
        ip_address: Annotated[str, Form()] = "",
        server_type: Annotated[str, Form()] = "nginx",
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        nginx_path: Annotated[str, Form()] = "",
        apache_path: Annotated[str, Form()] = "",
        tomcat_path: Annotated[str, Form()] = "",
        jetty_path: Annotated[str, Form()] = "",
        jboss_path: Annotated[str, Form()] = "",
        weblogic_path: Annotated[str, Form()] = "",
        iis_site: Annotated[str, Form()] = "",
        keystore_folder: Annotated[str, Form()] = "",
        version: Annotated[str, Form()] = "",
        ports: Annotated[str, Form()] = "",
        service_name: Annotated[str, Form()] = "",
        bot_id: Annotated[str, Form()] = "",
        ssh_port: Annotated[str, Form()] = "22",
        ssh_host_key: Annotated[str, Form()] = "",
        ssh_private_key: Annotated[str, Form()] = "",
        ssh_key_passphrase: Annotated[str, Form()] = "",
        use_sudo: Annotated[str, Form()] = "",
        config_test_command: Annotated[str, Form()] = "",
        reload_command: Annotated[str, Form()] = "",
        allowed_paths: Annotated[str, Form()] = "",
        connection: Annotated[str, Form()] = "",
        smb_port: Annotated[str, Form()] = "445",
        smb_share: Annotated[str, Form()] = "",
        smb_share_folder: Annotated[str, Form()] = "",
        smb_encrypt: Annotated[str, Form()] = "",
        smb_connect_timeout: Annotated[str, Form()] = "15",
        smb_io_timeout: Annotated[str, Form()] = "60",
        smb_rpc_timeout: Annotated[str, Form()] = "60",
        maintenance_cron: Annotated[str, Form()] = "",
        maintenance_duration_minutes: Annotated[str, Form()] = "",
        maintenance_timezone: Annotated[str, Form()] = "UTC",
    ) -> None:
        self.values: dict[str, Any] = {
            "connection": connection,
            "description": description,
            "ip_address": ip_address,
            "server_type": server_type,
            "username": username,
            "password": password,
            "nginx_path": nginx_path,
            "apache_path": apache_path,
            "tomcat_path": tomcat_path,
            "jetty_path": jetty_path,
            "jboss_path": jboss_path,
            "weblogic_path": weblogic_path,
            "iis_site": iis_site,
            "keystore_folder": keystore_folder,
            "version": version,
            "ports": ports,
            "service_name": service_name,
            "bot_id": bot_id,
            "ssh_port": ssh_port,
            "ssh_host_key": ssh_host_key,
            "ssh_private_key": ssh_private_key,
            "ssh_key_passphrase": ssh_key_passphrase,
            "use_sudo": bool(use_sudo),
            "config_test_command": config_test_command,
            "reload_command": reload_command,
            "allowed_paths": allowed_paths,
            "smb_port": smb_port,
            "smb_share": smb_share,
            "smb_share_folder": smb_share_folder,
            "smb_encrypt": bool(smb_encrypt),
            "smb_connect_timeout": smb_connect_timeout,
            "smb_io_timeout": smb_io_timeout,
            "smb_rpc_timeout": smb_rpc_timeout,
            "maintenance_cron": maintenance_cron,
            "maintenance_duration_minutes": maintenance_duration_minutes,
            "maintenance_timezone": maintenance_timezone,
        }
        # the Windows fields are shown for Windows only; a Linux server keeps their defaults
        if CONNECTION_ALIASES.get(connection.strip().lower()) == "ssh":
            for name in ("smb_share", "smb_share_folder", "smb_connect_timeout", "smb_io_timeout", "smb_rpc_timeout"):
                self.values.pop(name)
        # only the selected type's path field is sent by the browser; keep the others out of validation
        kind = server_type.strip().lower()
        for info_kind, info in SERVER_TYPES.items():
            if info_kind.value != kind and not self.values[info.path_field]:
                self.values.pop(info.path_field)


def _values(view: ServerView | None, form: ServerForm | None = None) -> dict[str, Any]:
    if form is not None:
        v = dict(form.values)
        for secret in SECRETS:
            v[secret] = ""  # never sent back to the browser
        return v
    if view is None:
        return {
            "server_type": "nginx", "ssh_port": 22, "connection": "ssh", "smb_port": 445, "smb_share": "C$",
            "smb_connect_timeout": 15, "smb_io_timeout": 60, "smb_rpc_timeout": 60, "maintenance_timezone": "UTC",
        }  # fmt: skip
    v = {
        "connection": view.connection,
        "smb_port": view.smb_port,
        "smb_share": view.smb_share or "",
        "smb_share_folder": view.smb_share_folder or "",
        "smb_encrypt": view.smb_encrypt,
        "smb_connect_timeout": view.smb_connect_timeout,
        "smb_io_timeout": view.smb_io_timeout,
        "smb_rpc_timeout": view.smb_rpc_timeout,
        "description": view.description,
        "ip_address": view.ip_address,
        "server_type": view.server_type,
        "username": view.username or "",
        "keystore_folder": view.keystore_folder or "",
        "version": view.version or "",
        "ports": ", ".join(str(p) for p in view.ports),
        "service_name": view.service_name or "",
        "bot_id": view.bot_id or "",
        "ssh_port": view.ssh_port,
        "ssh_host_key": view.ssh_host_key or "",
        "use_sudo": view.use_sudo,
        "config_test_command": view.config_test_command or "",
        "reload_command": view.reload_command or "",
        "allowed_paths": "\n".join(view.allowed_paths),
        "maintenance_cron": view.maintenance_cron or "",
        "maintenance_duration_minutes": view.maintenance_duration_minutes or "",
        "maintenance_timezone": view.maintenance_timezone,
    }
    for kind, info in SERVER_TYPES.items():
        if kind.value == view.server_type:
            v[info.path_field] = view.app_path or ""
    return v


def _form_context(
    db: Session, server: Server | None, v: dict[str, Any], error: InputError | None = None
) -> dict[str, Any]:
    errors: dict[str, str] = {}
    if error is not None:
        for field, message in error.problems or [(error.field, error.message)]:
            if field:
                errors.setdefault(field, message)
    return {
        "title": f"Edit Server {server.description}" if server else "Add Server",
        "server": server,
        "view": svc.get_server(server.id) if server else None,
        "v": v,
        "types": {kind.value: info for kind, info in SERVER_TYPES.items()},
        "command_choices": {
            kind.value: (commands.choices(kind.value, "config test"), commands.choices(kind.value, "reload"))
            for kind in SERVER_TYPES
        },
        "custom_commands": commands.custom_commands_allowed(),
        "type_options": [(kind.value, info.label) for kind, info in SERVER_TYPES.items()],
        "connections": svc.CONNECTIONS,
        "bots": bots_svc.choices(db),
        "error": error,
        "errors": errors,
        # messages that name no field of the form are shown at the top
        "general_errors": [m for f, m in (error.problems or [(error.field, error.message)]) if not f or f not in v]
        if error
        else [],
    }


@router.get("/servers", response_class=HTMLResponse)
def servers_page(request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    return render(request, "servers/list.html", page_context(request, db, who, svc.SERVERS, counts=svc.counts(db)))


@router.get("/servers/new", response_class=HTMLResponse)
def new_server(request: Request, db: DbSession, who: Operator) -> HTMLResponse:
    return render(request, "servers/form.html", _form_context(db, None, _values(None)))


@router.post("/servers", response_class=HTMLResponse)
def create_server(request: Request, db: DbSession, who: Operator, form: Annotated[ServerForm, Depends()]) -> Response:
    try:
        view = svc.create_server(form.values, who.username, admin=who.has("admin"))
    except InputError as exc:
        ctx = _form_context(db, None, _values(None, form), error=exc)
        return render(request, "servers/form.html", ctx, status_code=422)
    response = RedirectResponse("/servers", status_code=303)
    flash(response, f"server {view.description} added (Pending until Check connectivity)", "success")
    return response


@router.get("/servers/{server_id}", response_class=HTMLResponse)
def edit_server(server_id: int, request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    server = repo.get(db, Server, server_id)
    return render(request, "servers/form.html", _form_context(db, server, _values(svc.get_server(server_id))))


@router.post("/servers/{server_id}", response_class=HTMLResponse)
def update_server(
    server_id: int, request: Request, db: DbSession, who: Operator, form: Annotated[ServerForm, Depends()]
) -> Response:
    server = repo.get(db, Server, server_id)
    try:
        view = svc.update_server(server_id, form.values, who.username, admin=who.has("admin"))
    except InputError as exc:
        ctx = _form_context(db, server, _values(None, form), error=exc)
        return render(request, "servers/form.html", ctx, status_code=422)
    response = RedirectResponse(f"/servers/{server_id}", status_code=303)
    flash(response, f"server {view.description} saved", "success")
    return response


@router.post("/servers/{server_id}/check")
def check_server(server_id: int, db: DbSession, who: Operator) -> Response:
    run = svc.start_check(db, server_id, who.username)
    response = RedirectResponse(f"/servers/{server_id}", status_code=303)
    flash(response, f"started {run.name}: the status shows the result when the run ends", "success")
    return response


@router.post("/servers/{server_id}/delete")
def delete_server(server_id: int, db: DbSession, who: Operator) -> Response:
    name = svc.delete_server(db, server_id, who.username)
    response = RedirectResponse("/servers", status_code=303)
    flash(response, f"server {name} deleted", "success")
    return response
