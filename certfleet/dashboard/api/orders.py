"""/api/v1/orders: Provisioning Orders (read-only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from certfleet.dashboard.api.ids import RowId
from certfleet.dashboard.deps import DbSession, Viewer
from certfleet.dashboard.lists import add_list_api
from certfleet.dashboard.services.orders import ORDERS
from certfleet.dashboard.templating import flow_run_url
from certfleet.models import repo
from certfleet.models.orm import Order

router = APIRouter(tags=["Orders"])
add_list_api(router, ORDERS, tag="Orders")


@router.get("/orders/{order_id}", summary="One order with its history")
def get_order(order_id: RowId, db: DbSession, who: Viewer) -> dict[str, Any]:
    o = repo.get(db, Order, order_id)
    return {
        "id": o.id,
        "certificate_id": o.certificate_id,
        "ca_connector_id": o.ca_connector_id,
        "state": o.state.value,
        "ca_order_id": o.ca_order_id,
        "serial_number": o.serial_number,
        "error": o.error,
        "history": o.history,
        "created_at": o.created_at.isoformat(),
        "prefect_url": flow_run_url(o.flow_run_id) if o.flow_run_id else None,
    }
