"""CA Connectors pages: a list per kind (tabs), the manual's form of each kind, Edit / Disable / Delete Template,
Test connection. Everything goes through `certfleet.ca_admin.service` via `services/ca_connectors.py`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from certfleet.dashboard.deps import Admin, DbSession, Viewer
from certfleet.dashboard.errors import InputError, flash
from certfleet.dashboard.lists import add_export_page, page_context
from certfleet.dashboard.services import ca_connectors as svc
from certfleet.dashboard.templating import query_string, render
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector

router = APIRouter()
add_export_page(router, svc.CA_CONNECTORS)


@router.get("/ca-connectors", response_class=HTMLResponse)
def connectors_page(request: Request, db: DbSession, who: Viewer, kind: str = "") -> Response:
    if kind:  # a tab is a filter on Kind: the shared list machinery does the rest
        if kind not in svc.TABS:
            raise InputError(f"CA connector kind must be one of {', '.join(svc.TABS)}, not {kind!r}", field="kind")
        return RedirectResponse(f"/ca-connectors?{query_string(filter=f'kind:eq:{kind}')}", status_code=303)
    ctx = page_context(request, db, who, svc.CA_CONNECTORS, kinds=svc.TABS, counts=svc.counts_by_kind(db))
    ctx["kind"] = next((f.split(":", 2)[2] for f in ctx["filters"] if f.startswith("kind:eq:")), "")
    return render(request, "ca_connectors/list.html", ctx)


def _form_context(
    kind: str, connector_id: int | None, values: dict[str, Any], stored: dict[str, bool]
) -> dict[str, Any]:
    verb = "Edit" if connector_id else "Create"
    return {
        "title": f"{verb} {svc.label(kind)} Connector",
        "kind": kind,
        "fields": svc.form_fields(kind),
        "connector_id": connector_id,
        "v": values,
        "stored": stored,
    }


@router.get("/ca-connectors/new", response_class=HTMLResponse)
def new_connector(request: Request, who: Admin, kind: str = "digicert") -> HTMLResponse:
    defaults = svc.default_values(kind)
    return render(request, "ca_connectors/form.html", _form_context(kind, None, defaults, {}))


async def _form(request: Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    form = await request.form()
    values: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            if data:
                files[key] = data
                if key == "uploaded_file" and value.filename:
                    values["uploaded_file_name"] = value.filename
        elif key not in ("csrf_token",):
            values[key] = value
    return values, files


@router.post("/ca-connectors", response_class=HTMLResponse)
async def create_connector(request: Request, who: Admin) -> Response:
    values, files = await _form(request)
    return await _save(request, who.username, values, files, None)


@router.get("/ca-connectors/{connector_id}", response_class=HTMLResponse)
def edit_connector(connector_id: int, request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    detail = svc.detail(db, connector_id)
    if detail["kind"] not in svc.KINDS:  # the built-in CA has no form
        return render(request, "error.html", {"title": detail["name"], "message": "the built-in CA has no settings"})
    ctx = _form_context(detail["kind"], connector_id, svc.edit_values(db, connector_id), detail["secrets_set"])
    return render(request, "ca_connectors/form.html", ctx)


@router.post("/ca-connectors/{connector_id}", response_class=HTMLResponse)
async def update_connector(connector_id: int, request: Request, who: Admin) -> Response:
    values, files = await _form(request)
    return await _save(request, who.username, values, files, connector_id)


async def _save(
    request: Request, actor: str, values: dict[str, Any], files: dict[str, bytes], connector_id: int | None
) -> Response:
    kind = str(values.get("kind") or "")

    def work() -> tuple[str, InputError | None, dict[str, bool]]:
        try:
            with session_scope() as s:
                if connector_id is None:
                    svc.create(s, kind, values, actor, files)
                else:
                    svc.update(s, connector_id, values, actor, files)
                return kind, None, {}
        except InputError as exc:
            stored: dict[str, bool] = {}
            if connector_id is not None:
                with session_scope() as s:
                    stored = svc.detail(s, connector_id)["secrets_set"]
            return kind, exc, stored

    kind, error, stored = await run_in_threadpool(work)
    if error is not None:
        svc.creatable_kind(kind)
        secret_keys = {f.key for f in svc.form_fields(kind) if f.secret}
        shown = {key: v for key, v in values.items() if key not in secret_keys}  # never echo a secret
        ctx = {**_form_context(kind, connector_id, shown, stored), "error": error}
        return render(request, "ca_connectors/form.html", ctx, status_code=422)
    response = RedirectResponse(f"/ca-connectors?kind={kind}", status_code=303)
    flash(response, f"CA connector {values.get('name')} saved", "success")
    return response


@router.post("/ca-connectors/{connector_id}/disable")
def disable(connector_id: int, db: DbSession, who: Admin) -> Response:
    svc.disable(db, connector_id, who.username)
    return _back_to_list(db, connector_id, "disabled: it places no new orders")


@router.post("/ca-connectors/{connector_id}/enable")
def enable(connector_id: int, db: DbSession, who: Admin) -> Response:
    svc.enable(db, connector_id, who.username)
    return _back_to_list(db, connector_id, "enabled")


def _back_to_list(db: DbSession, connector_id: int, what: str) -> Response:
    c = repo.get(db, CAConnector, connector_id)
    response = RedirectResponse(f"/ca-connectors?kind={c.kind}", status_code=303)
    flash(response, f"{c.name} {what}", "success")
    return response


@router.post("/ca-connectors/{connector_id}/delete")
def delete(connector_id: int, db: DbSession, who: Admin) -> Response:
    kind = repo.get(db, CAConnector, connector_id).kind
    name = svc.delete(db, connector_id, who.username)
    response = RedirectResponse(f"/ca-connectors?kind={kind}", status_code=303)
    flash(response, f"{name} deleted", "success")
    return response


@router.post("/ca-connectors/{connector_id}/test")
def test_connection(connector_id: int, db: DbSession, who: Admin) -> Response:
    c = repo.get(db, CAConnector, connector_id)
    result = svc.check_connection(db, connector_id)
    response = RedirectResponse(f"/ca-connectors?kind={c.kind}", status_code=303)
    verdict = "connection OK" if result.ok else "connection failed"
    flash(response, f"{c.name}: {verdict}: {result.message}", "success" if result.ok else "error")
    return response
