"""Orders page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from certfleet.dashboard.deps import DbSession, Viewer
from certfleet.dashboard.lists import add_export_page, page_context
from certfleet.dashboard.services import orders
from certfleet.dashboard.templating import render

router = APIRouter()
add_export_page(router, orders.ORDERS)


@router.get("/orders", response_class=HTMLResponse)
def orders_page(request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    ctx = page_context(request, db, who, orders.ORDERS, counts=orders.tile_counts(db))
    return render(request, "orders/list.html", ctx)
