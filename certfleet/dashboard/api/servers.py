"""/api/v1/servers: the list and export, add and update (through `certfleet.servers.service`), delete, and
Check connectivity (a `check-server` run in Prefect)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from certfleet.connectors.servers import commands
from certfleet.dashboard.api.ids import RowId
from certfleet.dashboard.deps import DbSession, Operator, Viewer
from certfleet.dashboard.lists import add_list_api
from certfleet.dashboard.services import servers as svc
from certfleet.servers.service import SERVER_TYPES

router = APIRouter(tags=["Servers"])
add_list_api(router, svc.SERVERS, tag="Servers")

# The body is validated by the service (ServerInput / ServerUpdate in certfleet.servers.service), not by FastAPI,
# so a bad field answers 422 with the service's own message per field:
# {"detail", "field", "problems": [{"field", "message"}]}.


def _json(view: Any) -> dict[str, Any]:
    out: dict[str, Any] = view.model_dump(mode="json")
    return out


@router.get(
    "/server-types",
    summary="Server types, the path field each one asks for, and the config-test and reload commands it knows",
)
def server_types(who: Viewer) -> list[dict[str, Any]]:
    return [
        {"key": kind.value, "label": t.label, "path_field": t.path_field, "path_label": t.path_label,
         "path_example": t.path_example, "default_ports": t.default_ports,
         "config_test_commands": commands.choices(kind.value, "config test"),
         "reload_commands": commands.choices(kind.value, "reload")}
        for kind, t in SERVER_TYPES.items()
    ]  # fmt: skip


@router.get("/servers/{server_id}", summary="One server (never its password or key: only whether one is set)")
def get_server(server_id: RowId, db: DbSession, who: Viewer) -> dict[str, Any]:
    return _json(svc.get_server(server_id))


@router.post("/servers", status_code=201, summary="Add Server")
def create_server(body: Annotated[dict[str, Any], Body()], db: DbSession, who: Operator) -> dict[str, Any]:
    return _json(svc.create_server(body, who.username, admin=who.has("admin")))


@router.put(
    "/servers/{server_id}",
    summary="Update a server (omitted fields and secrets are kept)",
)
def update_server(
    server_id: RowId, body: Annotated[dict[str, Any], Body()], db: DbSession, who: Operator
) -> dict[str, Any]:
    return _json(svc.update_server(server_id, body, who.username, admin=who.has("admin")))


@router.post(
    "/servers/{server_id}/check",
    status_code=202,
    summary="Check connectivity: start a check-server run (sets the server Active, or Unreachable with the reason)",
)
def check_server(server_id: RowId, db: DbSession, who: Operator) -> dict[str, str]:
    run = svc.start_check(db, server_id, who.username)
    return {"flow_run_id": run.id, "flow_run_name": run.name, "prefect_url": run.url}


@router.delete("/servers/{server_id}", summary="Delete a server that is no certificate's target")
def delete_server(server_id: RowId, db: DbSession, who: Operator) -> dict[str, Any]:
    return {"deleted": server_id, "description": svc.delete_server(db, server_id, who.username)}
