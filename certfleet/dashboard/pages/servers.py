"""Servers pages: the list, Add Server (fields by server type), edit, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from certfleet.dashboard.deps import DbSession, Operator, Viewer
from certfleet.dashboard.errors import InputError, flash
from certfleet.dashboard.lists import add_export_page, page_context
from certfleet.dashboard.services import bots as bots_svc
from certfleet.dashboard.services import servers as svc
from certfleet.dashboard.templating import render
from certfleet.models import repo
from certfleet.models.orm import Server

router = APIRouter()
add_export_page(router, svc.SERVERS)


class ConnectorFormBase:
    def __init__(
        self,
        description: Annotated[str, Form()] = "",
        ip_address: Annotated[str, Form()] = "",
        server_type: Annotated[str, Form()] = "nginx",
        connection: Annotated[str, Form()] = "ssh",
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        keystore_folder: Annotated[str, Form()] = "",
        app_path: Annotated[str, Form()] = "",
        version: Annotated[str, Form()] = "",
        ports: Annotated[str, Form()] = "",
        service_name: Annotated[str, Form()] = "",
        bot_id: Annotated[str, Form()] = "",
        ssh_port: Annotated[str, Form()] = "22",
        ssh_host_key: Annotated[str, Form()] = "",
        use_sudo: Annotated[str, Form()] = "",
        config_test_command: Annotated[str, Form()] = "",
        reload_command: Annotated[str, Form()] = "",
    ) -> None:
        self.fields = svc.ServerFields(
            description,
            ip_address,
            server_type,
            connection,
            username,
            password,
            keystore_folder,
            app_path,
            version,
            ports,
            service_name,
            bot_id,
            ssh_port,
            ssh_host_key,
            bool(use_sudo),
            config_test_command,
            reload_command,
        )


def _values(server: Server | None, fields: svc.ServerFields | None = None) -> dict[str, Any]:
    if fields is not None:
        v = {k: ("" if x is None else x) for k, x in fields.__dict__.items()}
        v["password"] = ""  # never sent back to the browser
        return v
    if server is None:
        return {"server_type": "nginx", "connection": "ssh", "ssh_port": 22}
    return {
        "description": server.description,
        "ip_address": server.host,
        "server_type": server.server_type,
        "connection": server.connection.value,
        "username": server.username or "",
        "keystore_folder": server.keystore_folder or "",
        "app_path": server.app_path or "",
        "version": server.version or "",
        "ports": ", ".join(str(p) for p in server.ports),
        "service_name": server.service_name or "",
        "bot_id": server.bot_id or "",
        "ssh_port": server.ssh_port,
        "ssh_host_key": server.ssh_host_key or "",
        "use_sudo": server.use_sudo,
        "config_test_command": server.config_test_command or "",
        "reload_command": server.reload_command or "",
    }


def _form_context(db: Session, server: Server | None, v: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "title": f"Edit Server {server.description}" if server else "Add Server",
        "server": server,
        "v": v,
        "types": svc.SERVER_TYPES,
        "type_options": [(t.key, t.label) for t in svc.SERVER_TYPES.values()],
        "connections": svc.CONNECTIONS,
        "bots": bots_svc.choices(db),
        **extra,
    }


@router.get("/servers", response_class=HTMLResponse)
def servers_page(request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    return render(request, "servers/list.html", page_context(request, db, who, svc.SERVERS, counts=svc.counts(db)))


@router.get("/servers/new", response_class=HTMLResponse)
def new_server(request: Request, db: DbSession, who: Operator) -> HTMLResponse:
    return render(request, "servers/form.html", _form_context(db, None, _values(None)))


@router.post("/servers", response_class=HTMLResponse)
def create_server(request: Request, db: DbSession, who: Operator, form: Annotated[ConnectorFormBase, Depends()]) -> Response:
    try:
        server = svc.create_server(db, form.fields, who.username)
    except InputError as exc:
        ctx = _form_context(db, None, _values(None, form.fields), error=exc)
        return render(request, "servers/form.html", ctx, status_code=422)
    response = RedirectResponse("/servers", status_code=303)
    flash(response, f"server {server.description} added", "success")
    return response


@router.get("/servers/{server_id}", response_class=HTMLResponse)
def edit_server(server_id: int, request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    server = repo.get(db, Server, server_id)
    return render(request, "servers/form.html", _form_context(db, server, _values(server)))


@router.post("/servers/{server_id}", response_class=HTMLResponse)
def update_server(
    server_id: int, request: Request, db: DbSession, who: Operator, form: Annotated[ConnectorFormBase, Depends()]
) -> Response:
    try:
        server = svc.update_server(db, server_id, form.fields, who.username)
    except InputError as exc:
        db.rollback()
        server = repo.get(db, Server, server_id)
        ctx = _form_context(db, server, _values(None, form.fields), error=exc)
        return render(request, "servers/form.html", ctx, status_code=422)
    response = RedirectResponse("/servers", status_code=303)
    flash(response, f"server {server.description} saved", "success")
    return response


@router.post("/servers/{server_id}/delete")
def delete_server(server_id: int, db: DbSession, who: Operator) -> Response:
    name = svc.delete_server(db, server_id, who.username)
    response = RedirectResponse("/servers", status_code=303)
    flash(response, f"server {name} deleted", "success")
    return response
