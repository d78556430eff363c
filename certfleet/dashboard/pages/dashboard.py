"""The Provisioning Dashboard (Certificates → Provisioning)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from certfleet.dashboard.deps import DbSession, Viewer
from certfleet.dashboard.services import tiles
from certfleet.dashboard.templating import render

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    return render(request, "dashboard/index.html", {"title": "Provisioning Dashboard", "t": tiles.tiles(db)})
