"""CA Connectors pages: a list per kind (tabs) and the form of each kind; Edit / Disable / Delete Template."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from certfleet.dashboard.deps import Admin, DbSession, Viewer
from certfleet.dashboard.errors import InputError, flash
from certfleet.dashboard.lists import add_export_page, page_context
from certfleet.dashboard.services import ca_connectors as svc
from certfleet.dashboard.templating import query_string, render
from certfleet.models import repo
from certfleet.models.orm import CAConnector

router = APIRouter()
add_export_page(router, svc.CA_CONNECTORS)


@router.get("/ca-connectors", response_class=HTMLResponse)
def connectors_page(request: Request, db: DbSession, who: Viewer, kind: str = "") -> Response:
    if kind:  # a tab is a filter on Kind: the shared list machinery does the rest
        svc.kind_of(kind)
        return RedirectResponse(f"/ca-connectors?{query_string(filter=f'kind:eq:{kind}')}", status_code=303)
    ctx = page_context(request, db, who, svc.CA_CONNECTORS, kinds=svc.KINDS, counts=svc.counts_by_kind(db))
    ctx["kind"] = next((f.split(":", 2)[2] for f in ctx["filters"] if f.startswith("kind:eq:")), "")
    return render(request, "ca_connectors/list.html", ctx)


@router.get("/ca-connectors/new", response_class=HTMLResponse)
def new_connector(request: Request, who: Admin, kind: str = "digicert") -> HTMLResponse:
    k = svc.kind_of(kind)
    return render(
        request,
        "ca_connectors/form.html",
        {
            "title": f"Create {k.label} Connector",
            "k": k,
            "connector": None,
            "v": svc.form_values(None),
            "stored": set(),
        },
    )


async def _form(request: Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    form = await request.form()
    values: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            if data:
                files[key] = data
        else:
            values[key] = value
    return values, files


@router.post("/ca-connectors", response_class=HTMLResponse)
async def create_connector(request: Request, who: Admin) -> Response:
    values, files = await _form(request)
    return await _save(request, who.username, values, files, None)


@router.get("/ca-connectors/{connector_id}", response_class=HTMLResponse)
def edit_connector(connector_id: int, request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    c = repo.get(db, CAConnector, connector_id)
    k = svc.kind_of(c.kind)
    ctx = {"title": f"Edit {k.label} Connector", "k": k, "connector": c, "v": svc.form_values(c),
           "stored": svc.stored_secrets(c)}  # fmt: skip
    return render(request, "ca_connectors/form.html", ctx)


@router.post("/ca-connectors/{connector_id}", response_class=HTMLResponse)
async def update_connector(connector_id: int, request: Request, who: Admin) -> Response:
    values, files = await _form(request)
    return await _save(request, who.username, values, files, connector_id)


async def _save(
    request: Request, actor: str, values: dict[str, Any], files: dict[str, bytes], connector_id: int | None
) -> Response:
    from starlette.concurrency import run_in_threadpool

    from certfleet.models.db import session_scope

    kind = str(values.get("kind") or "")

    def work() -> tuple[str | None, InputError | None, set[str]]:
        try:
            with session_scope() as s:
                c = svc.save(s, kind, values, actor, connector_id, files)
                return c.name, None, set()
        except InputError as exc:
            with session_scope() as s:
                stored = svc.stored_secrets(s.get(CAConnector, connector_id)) if connector_id else set()
            return None, exc, stored

    name, error, stored = await run_in_threadpool(work)
    if error is not None:
        k = svc.kind_of(kind)
        shown = {key: v for key, v in values.items() if key not in {f.key for f in k.fields if f.secret}}
        ctx = {"title": f"{k.label} Connector", "k": k, "connector": {"id": connector_id} if connector_id else None,
               "v": shown, "stored": stored, "error": error}  # fmt: skip
        return render(request, "ca_connectors/form.html", ctx, status_code=422)
    response = RedirectResponse(f"/ca-connectors?kind={kind}", status_code=303)
    flash(response, f"CA connector {name} saved", "success")
    return response


@router.post("/ca-connectors/{connector_id}/disable")
def disable(connector_id: int, db: DbSession, who: Admin) -> Response:
    c = svc.set_enabled(db, connector_id, False, who.username)
    response = RedirectResponse(f"/ca-connectors?kind={c.kind}", status_code=303)
    flash(response, f"{c.name} disabled: it places no new orders", "success")
    return response


@router.post("/ca-connectors/{connector_id}/enable")
def enable(connector_id: int, db: DbSession, who: Admin) -> Response:
    c = svc.set_enabled(db, connector_id, True, who.username)
    response = RedirectResponse(f"/ca-connectors?kind={c.kind}", status_code=303)
    flash(response, f"{c.name} enabled", "success")
    return response


@router.post("/ca-connectors/{connector_id}/delete")
def delete(connector_id: int, db: DbSession, who: Admin) -> Response:
    kind = repo.get(db, CAConnector, connector_id).kind
    name = svc.delete(db, connector_id, who.username)
    response = RedirectResponse(f"/ca-connectors?kind={kind}", status_code=303)
    flash(response, f"{name} deleted", "success")
    return response
