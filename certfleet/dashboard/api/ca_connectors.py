"""/api/v1/ca-connectors: list per kind, create / edit (secrets are write-only), disable / enable, delete, test.

Everything goes through `certfleet.ca_admin.service` (via `services/ca_connectors.py`). Bodies are the kind's form
fields, flat (`{"kind": "digicert", "name": ..., "api_key": ..., "organization_id": ...}`); see
`GET /api/v1/ca-connector-kinds` for each kind's fields and JSON schema. emCA's Upload File is base64.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from certfleet.ca_admin import service as ca
from certfleet.dashboard.api.ids import RowId
from certfleet.dashboard.deps import Admin, DbSession, Viewer
from certfleet.dashboard.errors import InputError
from certfleet.dashboard.lists import add_list_api
from certfleet.dashboard.services import ca_connectors as svc

router = APIRouter(tags=["CA Connectors"])
add_list_api(router, svc.CA_CONNECTORS, tag="CA Connectors")

_BODY = Body(
    description="the kind's form fields (see /ca-connector-kinds); secrets left out on edit keep the stored ones",
    examples=[{"kind": "digicert", "name": "DigiCert prod", "api_key": "...", "organization_id": 112233}],
)


@router.get("/ca-connector-kinds", summary="The kinds of CA connector, their list columns and form schema")
def kinds(who: Viewer) -> list[dict[str, Any]]:
    return [
        {
            "kind": kind,
            "label": svc.label(kind),
            "columns": ca.columns(kind),
            "fields": [f.__dict__ for f in svc.form_fields(kind)],
            "schema": ca.form_schema(kind),
        }
        for kind in svc.KINDS
    ]


def _kind(body: dict[str, Any]) -> str:
    kind = body.get("kind")
    if not isinstance(kind, str) or not kind:
        raise InputError(f"kind is required: one of {', '.join(svc.KINDS)}", field="kind")
    return svc.creatable_kind(kind)


@router.get("/ca-connectors/{connector_id}", summary="One connector (secrets are never returned)")
def get_connector(connector_id: RowId, db: DbSession, who: Viewer) -> dict[str, Any]:
    return svc.detail(db, connector_id)


@router.post("/ca-connectors", status_code=201, summary="Create a CA connector")
def create(db: DbSession, who: Admin, body: dict[str, Any] = _BODY) -> dict[str, Any]:
    kind = _kind(body)
    connector_id = svc.create(db, kind, svc.decode_files(kind, body), who.username)
    return svc.detail(db, connector_id)


@router.put("/ca-connectors/{connector_id}", summary="Edit a CA connector (secrets left out keep the stored ones)")
def update(connector_id: RowId, db: DbSession, who: Admin, body: dict[str, Any] = _BODY) -> dict[str, Any]:
    kind = svc.detail(db, connector_id)["kind"]
    svc.update(db, connector_id, svc.decode_files(kind, body), who.username)
    return svc.detail(db, connector_id)


@router.post("/ca-connectors/{connector_id}/disable", summary="Disable: the connector places no new orders")
def disable(connector_id: RowId, db: DbSession, who: Admin) -> dict[str, Any]:
    svc.disable(db, connector_id, who.username)
    return svc.detail(db, connector_id)


@router.post("/ca-connectors/{connector_id}/enable", summary="Enable a disabled connector")
def enable(connector_id: RowId, db: DbSession, who: Admin) -> dict[str, Any]:
    svc.enable(db, connector_id, who.username)
    return svc.detail(db, connector_id)


@router.delete(
    "/ca-connectors/{connector_id}",
    summary="Delete a connector nothing uses (422 listing the certificates that still use it)",
)
def delete(connector_id: RowId, db: DbSession, who: Admin) -> dict[str, Any]:
    return {"deleted": connector_id, "name": svc.delete(db, connector_id, who.username)}


@router.post(
    "/ca-connectors/{connector_id}/test",
    summary="Test connection: authenticate against the CA with the stored settings; orders nothing",
)
def test_connection(connector_id: RowId, db: DbSession, who: Admin) -> dict[str, Any]:
    # Synchronous on purpose: it is one authenticated request bounded by the connector's own timeout.
    return svc.check_connection(db, connector_id).model_dump()
