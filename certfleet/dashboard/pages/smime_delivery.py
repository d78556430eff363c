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
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import DirectoryProfile
from certfleet.notifications.channels import SMTP_SECURITY
from certfleet.smime import delivery, delivery_targets

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


# A profile's page offers one more choice: no target of its own (its users go to the setting's).
SETTING = "setting"
PROFILE_METHODS = {SETTING: "The S/MIME delivery setting", **delivery.METHOD_LABELS}


def _method(method: str, allowed: tuple[str, ...] = delivery.METHODS) -> str:
    if method not in allowed:
        raise InputError(f"method: one of {', '.join(allowed)}", field="method")
    return method


def _context(
    method: str, detail: dict[str, Any], values: dict[str, Any], profile: DirectoryProfile | None = None
) -> dict[str, Any]:
    return {
        "title": f"Delivery for {profile.name}" if profile else "S/MIME delivery",
        "method": method,
        "methods": PROFILE_METHODS if profile else delivery.METHOD_LABELS,
        "fields": FIELDS.get(method, []),
        "detail": detail,
        "v": values,
        "secret_set": detail["password_set"] and detail["method"] == method,
        "profile": profile,
        "base": f"/smime/profiles/{profile.id}/delivery" if profile else "/smime/delivery",
    }


def _shown_values(shown: str, detail: dict[str, Any]) -> dict[str, Any]:
    if shown == detail["method"]:
        return {k: ("true" if v is True else "false" if v is False else v) for k, v in detail["settings"].items()}
    if shown == "email":
        return {"port": 587, "security": "starttls"}
    return {}


@router.get("/smime/delivery", response_class=HTMLResponse)
def delivery_page(request: Request, db: DbSession, who: Viewer, method: str | None = None) -> HTMLResponse:
    detail = delivery.setting_detail(db)
    shown = _method(method or detail["method"])
    return render(request, "smime/delivery.html", _context(shown, detail, _shown_values(shown, detail)))


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


def _profile_detail(profile: DirectoryProfile) -> dict[str, Any]:
    """The page's view of a profile's target; without one, the setting's method is not preselected."""
    own = delivery_targets.profile_delivery_detail(profile)
    if own is None:
        return {"method": SETTING, "settings": {}, "password_set": False, "saved": False,
                "summary": "the S/MIME delivery setting's target"}  # fmt: skip
    return {**own, "saved": True}


@router.get("/smime/profiles/{profile_id:int}/delivery", response_class=HTMLResponse)
def profile_delivery_page(
    profile_id: int, request: Request, db: DbSession, who: Viewer, method: str | None = None
) -> HTMLResponse:
    profile = repo.get(db, DirectoryProfile, profile_id)
    detail = _profile_detail(profile)
    shown = _method(method or detail["method"], tuple(PROFILE_METHODS))
    return render(request, "smime/delivery.html", _context(shown, detail, _shown_values(shown, detail), profile))


@router.post("/smime/profiles/{profile_id:int}/delivery", response_class=HTMLResponse)
async def save_profile_delivery(profile_id: int, request: Request, who: Admin) -> Response:
    """The profile's own target (same fields and checks as the setting), or `setting`: none of its own."""
    form = await request.form()
    values = {k: v for k, v in form.multi_items() if k != "csrf_token" and isinstance(v, str)}

    def work() -> tuple[DirectoryProfile, dict[str, Any], InputError | None]:
        try:
            with session_scope() as s:
                if values.get("method") == SETTING:
                    profile = delivery_targets.clear_profile_delivery(s, profile_id, who.username)
                else:
                    profile = delivery_targets.save_profile_delivery(s, profile_id, values, who.username)
                s.flush()
                s.expunge(profile)
                return profile, _profile_detail(profile), None
        except InputError as exc:
            with session_scope() as s:
                profile = repo.get(s, DirectoryProfile, profile_id)
                s.expunge(profile)
                return profile, _profile_detail(profile), exc

    profile, detail, error = await run_in_threadpool(work)
    if error is not None:
        method = _method(str(values.get("method") or "folder"), tuple(PROFILE_METHODS))
        shown = {k: v for k, v in values.items() if k != "password"}  # never echo a secret
        ctx = {**_context(method, detail, shown, profile), "error": error}
        return render(request, "smime/delivery.html", ctx, 422)
    response = RedirectResponse("/smime/profiles", status_code=303)
    flash(response, f"delivery for {profile.name} saved: {detail['summary']}", "success")
    return response
