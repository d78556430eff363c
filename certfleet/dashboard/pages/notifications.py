"""Notifications page: channels (add / edit with a Test button that sends a real message and shows the server's
answer), rules, and the last notifications with their delivery state. Admins configure; every role reads.
Everything goes through `certfleet.notifications.service`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from certfleet.dashboard.deps import Admin, DbSession, Viewer
from certfleet.dashboard.errors import InputError, flash
from certfleet.dashboard.templating import render
from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector
from certfleet.notifications import service as svc
from certfleet.notifications.channels import KIND_LABELS, KINDS, SMTP_SECURITY
from certfleet.notifications.outbox import EVENT_KINDS

router = APIRouter()


@dataclass(frozen=True)
class FormField:
    key: str
    label: str
    kind: str = "text"  # text, number, password (a secret), select
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()


QUIET = FormField(
    "quiet_hours", "Quiet hours (UTC)", help="e.g. 22:00-07:00: what is queued then waits (not expiry within 1 day)"
)
FIELDS: dict[str, list[FormField]] = {
    "email": [
        FormField("host", "SMTP host", required=True, help="e.g. smtp.example.org"),
        FormField("port", "Port", "number", required=True, help="587 for STARTTLS, 465 for TLS"),
        FormField("security", "Security", "select", required=True, choices=SMTP_SECURITY),
        FormField("username", "Username", help="leave empty when the server takes mail without login"),
        FormField("password", "Password", "password"),
        FormField("sender", "From", required=True, help="the sender address"),
        FormField("recipients", "To", required=True, help="addresses, separated by commas"),
        FormField("ca_file", "CA bundle", help="absolute path of a PEM file; empty: the system's trusted CAs"),
        QUIET,
    ],
    "slack": [FormField("url", "Incoming webhook URL", "password", required=True, help="kept secret"), QUIET],
    "teams": [
        FormField("url", "Incoming webhook URL (Workflows)", "password", required=True, help="kept secret"),
        QUIET,
    ],
    "webhook": [
        FormField("url", "URL", required=True, help="receives a JSON POST"),
        FormField("signing_key", "Signing key", "password", required=True, help="HMAC-SHA256 key, kept secret"),
        QUIET,
    ],
}


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise InputError(f"kind: one of {', '.join(KINDS)}", field="kind")
    return kind


@router.get("/notifications", response_class=HTMLResponse)
def notifications_page(request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    channels = svc.list_channels(db)
    names = {c["id"]: c["name"] for c in channels}
    connectors = {c.id: c.name for c in db.scalars(select(CAConnector).order_by(CAConnector.name))}
    return render(
        request,
        "notifications/page.html",
        {
            "title": "Notifications",
            "channels": channels,
            "channel_names": names,
            "rules": svc.list_rules(db),
            "notifications": svc.last_notifications(db, 100),
            "event_kinds": list(EVENT_KINDS),
            "channel_kinds": KIND_LABELS,
            "connectors": connectors,
        },
    )


def _form_context(kind: str, channel_id: int | None, values: dict[str, Any], secret_set: bool) -> dict[str, Any]:
    return {
        "title": f"{'Edit' if channel_id else 'Add'} {KIND_LABELS[kind]} channel",
        "kind": kind,
        "fields": FIELDS[kind],
        "channel_id": channel_id,
        "v": values,
        "secret_set": secret_set,
    }


@router.get("/notifications/channels/new", response_class=HTMLResponse)
def new_channel(request: Request, who: Admin, kind: str = "email") -> HTMLResponse:
    defaults = {"port": 587, "security": "starttls", "enabled": "true"} if _kind(kind) == "email" else {}
    return render(request, "notifications/form.html", _form_context(kind, None, {"enabled": "true", **defaults}, False))


@router.get("/notifications/channels/{channel_id}", response_class=HTMLResponse)
def edit_channel(channel_id: int, request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    d = svc.channel_detail(svc.get_channel(db, channel_id))
    values = {**{k: v for k, v in d["settings"].items() if v is not None}, "name": d["name"]}
    if isinstance(values.get("recipients"), list):
        values["recipients"] = ", ".join(values["recipients"])
    values["enabled"] = "true" if d["enabled"] else "false"
    return render(request, "notifications/form.html", _form_context(d["kind"], channel_id, values, d["secret_set"]))


async def _values(request: Request) -> dict[str, Any]:
    form = await request.form()
    return {k: v for k, v in form.multi_items() if k != "csrf_token" and isinstance(v, str)}


@router.post("/notifications/channels", response_class=HTMLResponse)
async def create_channel(request: Request, who: Admin) -> Response:
    return await _save(request, who.username, await _values(request), None)


@router.post("/notifications/channels/{channel_id}", response_class=HTMLResponse)
async def update_channel(channel_id: int, request: Request, who: Admin) -> Response:
    return await _save(request, who.username, await _values(request), channel_id)


async def _save(request: Request, actor: str, values: dict[str, Any], channel_id: int | None) -> Response:
    def work() -> tuple[str, InputError | None, bool]:
        try:
            with session_scope() as s:
                if channel_id is None:
                    row = svc.create_channel(s, values, actor)
                else:
                    row = svc.update_channel(s, channel_id, values, actor)
                return row.kind, None, False
        except InputError as exc:
            if channel_id is None:
                return _kind(str(values.get("kind") or "")), exc, False
            with session_scope() as s:
                row = svc.get_channel(s, channel_id)
                return row.kind, exc, row.secret is not None

    kind, error, secret_set = await run_in_threadpool(work)
    if error is not None:
        secret_keys = {f.key for f in FIELDS[kind] if f.kind == "password"}
        shown = {k: v for k, v in values.items() if k not in secret_keys}  # never echo a secret
        ctx = {**_form_context(kind, channel_id, shown, secret_set), "error": error}
        return render(request, "notifications/form.html", ctx, status_code=422)
    response = RedirectResponse("/notifications", status_code=303)
    flash(response, f"channel {values.get('name')} saved", "success")
    return response


@router.post("/notifications/channels/{channel_id}/test", response_class=HTMLResponse)
def test_channel(channel_id: int, request: Request, db: DbSession, who: Admin) -> HTMLResponse:
    ok, answer = svc.send_test(db, channel_id, who.username)
    d = svc.channel_detail(svc.get_channel(db, channel_id))
    return render(
        request, "notifications/test.html", {"title": f"Test {d['name']}", "c": d, "ok": ok, "answer": answer}
    )


@router.post("/notifications/channels/{channel_id}/delete")
def delete_channel(channel_id: int, db: DbSession, who: Admin) -> Response:
    name = svc.get_channel(db, channel_id).name
    svc.delete_channel(db, channel_id, who.username)
    response = RedirectResponse("/notifications", status_code=303)
    flash(response, f"channel {name} deleted", "success")
    return response


@router.post("/notifications/rules")
async def create_rule(request: Request, who: Admin) -> Response:
    form = await request.form()
    body: dict[str, Any] = {
        "event_kind": form.get("event_kind"),
        "ca_connector_id": form.get("ca_connector_id") or None,
        "tag": form.get("tag") or None,
        "server_group": form.get("server_group") or None,
        "channel_ids": [int(v) for v in form.getlist("channel_ids") if isinstance(v, str) and v.isdigit()],
    }

    def work() -> None:
        with session_scope() as s:
            svc.create_rule(s, body, who.username)

    await run_in_threadpool(work)
    response = RedirectResponse("/notifications", status_code=303)
    flash(response, f"rule for {body['event_kind']} added", "success")
    return response


@router.post("/notifications/rules/{rule_id}/delete")
def delete_rule(rule_id: int, db: DbSession, who: Admin) -> Response:
    svc.delete_rule(db, rule_id, who.username)
    response = RedirectResponse("/notifications", status_code=303)
    flash(response, "rule deleted", "success")
    return response
