"""Discovery pages: the Discover form (starts discover-endpoints in Prefect), the discovery runs list, Import
certificate files, Scan server files (starts discover-server-files), and the private roots that decide CA Type."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from certfleet.dashboard.deps import Admin, DbSession, Operator, Viewer
from certfleet.dashboard.errors import InputError, flash
from certfleet.dashboard.lists import add_export_page, page_context
from certfleet.dashboard.services import inventory
from certfleet.dashboard.templating import NAV, NavItem, render
from certfleet.inventory.schemas import ImportReport

router = APIRouter()
add_export_page(router, inventory.DISCOVERY_RUNS)

if not any(n.href == "/discovery" for n in NAV):  # the menu: discovery next to the certificates it fills
    _at = next((i + 1 for i, n in enumerate(NAV) if n.href == "/certificates"), len(NAV))
    NAV[_at:_at] = [
        NavItem("Certificates → Provisioning", "Discovery", "/discovery"),
        NavItem("Certificates → Provisioning", "Discovery Runs", "/discovery-runs"),
    ]
    _at = next((i + 1 for i, n in enumerate(NAV) if n.href == "/ca-connectors"), len(NAV))
    NAV.insert(_at, NavItem("Settings", "Private Roots", "/private-roots"))

_DEFAULTS = {"targets": "", "ports": "443", "sni_names": "", "bot_id": "", "concurrency": "256",
             "connect_timeout": "3", "handshake_timeout": "5"}  # fmt: skip


def _discover_context(db: Session, values: dict[str, str], error: InputError | None = None) -> dict[str, Any]:
    return {"title": "Discovery", "v": values, "bots": inventory.discovery_bots(db), "error": error}


@router.get("/discovery", response_class=HTMLResponse)
def discover_form(request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    return render(request, "discovery/discover.html", _discover_context(db, dict(_DEFAULTS)))


@router.post("/discovery", response_class=HTMLResponse)
def discover(
    request: Request,
    db: DbSession,
    who: Operator,
    targets: Annotated[str, Form()] = "",
    ports: Annotated[str, Form()] = "443",
    sni_names: Annotated[str, Form()] = "",
    bot_id: Annotated[str, Form()] = "",
    concurrency: Annotated[str, Form()] = "256",
    connect_timeout: Annotated[str, Form()] = "3",
    handshake_timeout: Annotated[str, Form()] = "5",
) -> Response:
    values = {"targets": targets, "ports": ports, "sni_names": sni_names, "bot_id": bot_id,
              "concurrency": concurrency, "connect_timeout": connect_timeout,
              "handshake_timeout": handshake_timeout}  # fmt: skip
    try:
        data: dict[str, Any] = {k: v for k, v in values.items() if v.strip()}
        body: inventory.DiscoverRequest = inventory.validated(inventory.DiscoverRequest, data)
        run = inventory.start_discovery(db, body, actor=who.username)
    except InputError as exc:
        return render(request, "discovery/discover.html", _discover_context(db, values, exc), status_code=422)
    response = RedirectResponse("/discovery-runs", status_code=303)
    flash(response, f"started {run.name} in Prefect: {run.url}", "success")
    return response


@router.get("/discovery-runs", response_class=HTMLResponse)
def runs_page(request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    return render(request, "discovery/runs.html", page_context(request, db, who, inventory.DISCOVERY_RUNS))


@router.get("/discovery/import", response_class=HTMLResponse)
def import_form(request: Request, who: Operator) -> HTMLResponse:
    return render(request, "discovery/import.html", {"title": "Import certificates", "report": None})


@router.post("/discovery/import", response_class=HTMLResponse)
async def import_files(
    request: Request,
    who: Operator,
    files: Annotated[list[UploadFile], File()],
    password: Annotated[str, Form()] = "",
    key_password: Annotated[str, Form()] = "",
) -> HTMLResponse:
    uploads = [(f.filename or "upload", await f.read(inventory.MAX_UPLOAD_BYTES + 1)) for f in files if f.filename]
    try:
        report: ImportReport = await run_in_threadpool(
            inventory.import_files,
            uploads,
            actor=who.username,
            password=password or None,
            key_password=key_password or None,
        )
    except InputError as exc:
        ctx = {"title": "Import certificates", "report": None, "error": exc}
        return render(request, "discovery/import.html", ctx, status_code=422)
    # As the API: 422 when nothing was imported (a mix is shown as a normal page, each row with its result).
    status = 422 if report.http_status == 422 else 200
    return render(
        request, "discovery/import.html", {"title": "Import certificates", "report": report}, status_code=status
    )


@router.post("/servers/{server_id}/scan-files")
def scan_files(server_id: int, db: DbSession, who: Operator) -> Response:
    run = inventory.start_file_scan(db, server_id, actor=who.username)
    response = RedirectResponse("/servers", status_code=303)
    flash(response, f"started {run.name} in Prefect: {run.url}", "success")
    return response


@router.get("/private-roots", response_class=HTMLResponse)
def private_roots(request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    ctx = {"title": "Private Roots", "roots": inventory.list_private_roots(db), "v": {}}
    return render(request, "discovery/private_roots.html", ctx)


@router.post("/private-roots", response_class=HTMLResponse)
def add_private_root(
    request: Request,
    db: DbSession,
    who: Operator,
    name: Annotated[str, Form()] = "",
    pem: Annotated[str, Form()] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    uploaded = file.file.read(inventory.MAX_UPLOAD_BYTES) if file is not None and file.filename else b""
    try:
        with db.begin_nested():
            root = inventory.register_private_root(db, name, uploaded or pem.encode(), actor=who.username)
    except InputError as exc:
        ctx = {"title": "Private Roots", "roots": inventory.list_private_roots(db),
               "v": {"name": name, "pem": pem}, "error": exc}  # fmt: skip
        return render(request, "discovery/private_roots.html", ctx, status_code=422)
    response = RedirectResponse("/private-roots", status_code=303)
    flash(response, f"private root {root.name} registered: CA Types re-derived", "success")
    return response


@router.post("/private-roots/{root_id}/delete")
def remove_private_root(root_id: int, db: DbSession, who: Operator) -> Response:
    inventory.remove_private_root(db, root_id, actor=who.username)
    response = RedirectResponse("/private-roots", status_code=303)
    flash(response, "private root removed: CA Types re-derived", "success")
    return response


@router.post("/private-roots/{root_id}/public-rules")
def public_rules(root_id: int, db: DbSession, who: Admin, apply: Annotated[str, Form()] = "") -> Response:
    root = inventory.hold_to_public_rules(db, root_id, apply == "1", actor=who.username)
    response = RedirectResponse("/private-roots", status_code=303)
    state = "now held to the public CA rules" if root.apply_public_rules else "no longer held to the public CA rules"
    flash(response, f"private root {root.name} is {state}: Vulnerable re-derived", "success")
    return response
