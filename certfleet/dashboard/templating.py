"""Jinja2 rendering with the base layout: navigation (the manual's menu), the user, CSRF token, flash message.

Templates live in `certfleet/dashboard/templates/`; a domain puts its pages in `templates/<domain>/` and
extends "base.html". A page adds itself to the menu by appending a `NavItem` to `NAV` (see README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from certfleet import __version__
from certfleet.dashboard import listing, security
from certfleet.dashboard.deps import CSRF_FIELD, Principal, session_data
from certfleet.dashboard.errors import take_flash
from certfleet.dashboard.help import HELP
from certfleet.models.orm import UserRole
from certfleet.settings import get_settings

TEMPLATES = Path(__file__).with_name("templates")
templates = Jinja2Templates(directory=str(TEMPLATES))


@dataclass(frozen=True)
class NavItem:
    section: str  # the menu group, e.g. "Certificates → Provisioning"
    label: str
    href: str
    role: UserRole = UserRole.VIEWER


NAV: list[NavItem] = [
    NavItem("Certificates → Provisioning", "Dashboard", "/"),
    NavItem("Certificates → Provisioning", "Bots", "/bots"),
    NavItem("Certificates → Provisioning", "Provisioning Certificates", "/certificates"),
    NavItem("Certificates → Provisioning", "Servers", "/servers"),
    NavItem("Certificates → Provisioning", "S/MIME Provisioning", "/smime"),
    NavItem("Certificates → Provisioning", "Orders", "/orders"),
    NavItem("Settings", "CA Connectors", "/ca-connectors"),
    NavItem("Settings", "Notifications", "/notifications"),
    NavItem("Settings", "Audit Log", "/audit", UserRole.OPERATOR),
    NavItem("Settings", "Users", "/users", UserRole.ADMIN),
    NavItem("Settings", "API Tokens", "/account/tokens"),
    NavItem("Settings", "API (OpenAPI)", "/api/docs"),
]


def prefect_ui_url() -> str:
    s = get_settings()
    return f"http://{s.host}:{s.prefect_port}"


def flow_run_url(flow_run_id: str) -> str:
    return f"{prefect_ui_url()}/runs/flow-run/{flow_run_id}"


def query_string(**params: Any) -> str:
    """A query string from keyword arguments; list values repeat the key (filter=...&filter=...)."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None or value == "" or value == []:
            continue
        for v in value if isinstance(value, list | tuple) else [value]:
            pairs.append((key, str(v)))
    return urlencode(pairs)


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    principal: Principal | None = getattr(request.state, "principal", None) or None
    session = session_data(request)
    flash = take_flash(request)
    if flash:
        request.state.flash_taken = True
    ctx: dict[str, Any] = {
        "request": request,
        "user": principal,
        "csrf_field": CSRF_FIELD,
        "csrf_token": security.csrf_token(session.sid),
        "flash": flash,
        "nav": [n for n in NAV if principal is not None and principal.has(n.role)],
        "path": request.url.path,
        "prefect_ui": prefect_ui_url(),
        "version": __version__,
        "help": HELP,
        "listing": listing,
        "qs": query_string,
    }
    ctx.update(context or {})
    return templates.TemplateResponse(request, template, ctx, status_code=status_code)
