"""/api/v1/ca-connectors: the list per kind, create / edit (secrets are write-only), disable / enable, delete."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from certfleet.dashboard.deps import Admin, DbSession, Viewer
from certfleet.dashboard.errors import InputError
from certfleet.dashboard.lists import add_list_api
from certfleet.dashboard.services import ca_connectors as svc
from certfleet.models import repo
from certfleet.models.orm import CAConnector

router = APIRouter(tags=["CA Connectors"])
add_list_api(router, svc.CA_CONNECTORS, tag="CA Connectors")


class ConnectorIn(BaseModel):
    kind: str = Field(description="emsign, emca, adcs, digicert, acme or local")
    name: str
    base_url: str | None = None
    validity_days: int = 90
    values: dict[str, Any] = Field(default_factory=dict, description="the kind's fields (see /ca-connector-kinds)")
    files: dict[str, str] = Field(default_factory=dict, description="file fields, base64")


def connector_json(c: CAConnector) -> dict[str, Any]:
    kind = svc.KINDS.get(c.kind)
    plain = {f.key for f in kind.fields if not f.secret} if kind else set()
    return {
        "id": c.id,
        "kind": c.kind,
        "name": c.name,
        "base_url": c.base_url,
        "status": c.status.value,
        "validity_days": c.default_validity_days,
        "settings": {k: v for k, v in c.settings.items() if k in plain},
        "secrets_stored": sorted(svc.stored_secrets(c) & {f.key for f in kind.fields} if kind else []),
        "created_at": c.created_at.isoformat(),
        "created_by": c.created_by,
    }


@router.get("/ca-connector-kinds", summary="The kinds of CA connector and the fields of each form")
def kinds(who: Viewer) -> list[dict[str, Any]]:
    return [
        {
            "kind": k.key,
            "label": k.label,
            "ca_type": k.ca_type,
            "base_url_label": k.base_url_label,
            "fields": [
                {
                    "key": f.key,
                    "label": f.label,
                    "type": f.kind,
                    "required": f.required,
                    "secret": f.secret,
                    "choices": [c[0] for c in f.choices],
                }
                for f in k.fields
            ],
        }
        for k in svc.KINDS.values()
    ]


def _files(body: ConnectorIn) -> dict[str, bytes]:
    try:
        return {k: base64.b64decode(v, validate=True) for k, v in body.files.items()}
    except ValueError:
        raise InputError("files must be base64", field="files") from None


@router.get("/ca-connectors/{connector_id}", summary="One connector (secrets are never returned)")
def get_connector(connector_id: int, db: DbSession, who: Viewer) -> dict[str, Any]:
    return connector_json(repo.get(db, CAConnector, connector_id))


@router.post("/ca-connectors", status_code=201, summary="Create a CA connector")
def create(body: ConnectorIn, db: DbSession, who: Admin) -> dict[str, Any]:
    values = {**body.values, "name": body.name, "base_url": body.base_url, "validity_days": body.validity_days}
    return connector_json(svc.save(db, body.kind, values, who.username, files=_files(body)))


@router.put("/ca-connectors/{connector_id}", summary="Edit a CA connector (empty secrets keep the stored ones)")
def update(connector_id: int, body: ConnectorIn, db: DbSession, who: Admin) -> dict[str, Any]:
    values = {**body.values, "name": body.name, "base_url": body.base_url, "validity_days": body.validity_days}
    return connector_json(svc.save(db, body.kind, values, who.username, connector_id, _files(body)))


@router.post("/ca-connectors/{connector_id}/disable", summary="Disable: the connector places no new orders")
def disable(connector_id: int, db: DbSession, who: Admin) -> dict[str, Any]:
    return connector_json(svc.set_enabled(db, connector_id, False, who.username))


@router.post("/ca-connectors/{connector_id}/enable", summary="Enable a disabled connector")
def enable(connector_id: int, db: DbSession, who: Admin) -> dict[str, Any]:
    return connector_json(svc.set_enabled(db, connector_id, True, who.username))


@router.delete("/ca-connectors/{connector_id}", summary="Delete a connector nothing uses")
def delete(connector_id: int, db: DbSession, who: Admin) -> dict[str, Any]:
    return {"deleted": connector_id, "name": svc.delete(db, connector_id, who.username)}
