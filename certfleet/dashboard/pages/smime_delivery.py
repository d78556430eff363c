"""S/MIME Provisioning -> Delivery: where smime-rollout delivers each user's PKCS#12 and password (a folder, an
SMB share or two e-mails). Admins change it; every role reads it. Everything goes through
`certfleet.smime.delivery`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from certfleet.dashboard.deps import Admin, DbSession, Viewer
from certfleet.dashboard.errors import InputError, flash
from certfleet.dashboard.pages.notifications import FormField
from certfleet.dashboard.templating import render
from certfleet.models.db import session_scope
from certfleet.notifications.channels import SMTP_SECURITY
from certfleet.smime import delivery

router = APIRouter()

FIELDS: dict[str, list[FormField]] = {
    "folder": [
        FormField("path", "Folder", required=True, help="absolute path, local or an NFS mount, e.g. /srv/smime"),
    ],
    "smb": [
        FormField("host", "File server", required=True, help="host name or IP address"),
        FormField("port", "Port", "number", help="empty: 445"),
        FormField("share", "Share", required=True, help="e.g. Certificates or D$"),
        FormField("folder", "Folder in the share", help="e.g. S-MIME\\Users; empty: the share's top folder"),
        FormField("username", "Username", required=True, help="DOMAIN\\user or user@domain (NTLM)"),
        FormField("password", "Password", "password", required=True),
        FormField(
            "encrypt",
            "SMB 3 encryption",
            "select",
            choices=("false", "true"),
            help="true: refuse a session the server does not encrypt",
        ),
    ],
    "email": [
        FormField("host", "SMTP host", required=True, help="e.g. smtp.example.org"),
        FormField("port", "Port", "number", required=True, help="587 for STARTTLS, 465 for TLS"),
        FormField("security", "Security", "select", required=True, choices=SMTP_SECURITY),
        FormField("username", "Username", help="leave empty when the server takes mail without login"),
        FormField("password", "Password", "password"),
        FormField("sender", "From", required=True, help="the sender address users see"),
        FormField("ca_file", "CA bundle", help="absolute path of a PEM file; empty: the system's trusted CAs"),
    ],
}


def _method(method: str) -> str:
    if method not in delivery.METHODS:
        raise InputError(f"method: one of {', '.join(delivery.METHODS)}", field="method")
    return method


def _context(method: str, detail: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": "S/MIME delivery",
        "method": method,
        "methods": delivery.METHOD_LABELS,
        "fields": FIELDS[method],
        "detail": detail,
        "v": values,
        "secret_set": detail["password_set"] and detail["method"] == method,
    }


@router.get("/smime/delivery", response_class=HTMLResponse)
def delivery_page(request: Request, db: DbSession, who: Viewer, method: str | None = None) -> HTMLResponse:
    detail = delivery.setting_detail(db)
    shown = _method(method or detail["method"])
    values: dict[str, Any] = {}
    if shown == detail["method"]:
        values = {k: ("true" if v is True else "false" if v is False else v) for k, v in detail["settings"].items()}
    elif shown == "email":
        values = {"port": 587, "security": "starttls"}
    return render(request, "smime/delivery.html", _context(shown, detail, values))


@router.post("/smime/delivery", response_class=HTMLResponse)
async def save_delivery(request: Request, who: Admin) -> Response:
    form = await request.form()
    values = {k: v for k, v in form.multi_items() if k != "csrf_token" and isinstance(v, str)}

    def work() -> tuple[dict[str, Any], InputError | None]:
        try:
            with session_scope() as s:
                delivery.save_setting(s, values, who.username)
                return delivery.setting_detail(s), None
        except InputError as exc:
            with session_scope() as s:
                return delivery.setting_detail(s), exc

    detail, error = await run_in_threadpool(work)
    if error is not None:
        method = _method(str(values.get("method") or "folder"))
        shown = {k: v for k, v in values.items() if k != "password"}  # never echo a secret
        return render(request, "smime/delivery.html", {**_context(method, detail, shown), "error": error}, 422)
    response = RedirectResponse("/smime/delivery", status_code=303)
    flash(response, f"S/MIME delivery saved: {detail['summary']}", "success")
    return response
