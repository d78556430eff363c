"""Audit log page (operators and admins)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from certfleet.dashboard.deps import DbSession, Operator, require_role
from certfleet.dashboard.lists import add_export_page, page_context
from certfleet.dashboard.services.orders import AUDIT
from certfleet.dashboard.templating import render

router = APIRouter()
export_router = APIRouter(dependencies=[Depends(require_role("operator"))])
add_export_page(export_router, AUDIT)
router.include_router(export_router)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, db: DbSession, who: Operator) -> HTMLResponse:
    return render(request, "audit/list.html", page_context(request, db, who, AUDIT))
