"""/api/v1 discovery: start a network scan (discover-endpoints) or a server file scan (discover-server-files) in
Prefect, list discovery runs, and register the private roots that make a chain "Private and known"."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import Field

from certfleet.dashboard.api.certificates import run_json
from certfleet.dashboard.api.ids import RowId
from certfleet.dashboard.deps import Admin, DbSession, Operator, Viewer
from certfleet.dashboard.lists import add_list_api
from certfleet.dashboard.services import inventory
from certfleet.input_model import InputModel
from certfleet.inventory.schemas import PrivateRootView

router = APIRouter(tags=["Discovery"])
add_list_api(router, inventory.DISCOVERY_RUNS, tag="Discovery")


class FileScanBody(InputModel):
    bot_id: int | None = Field(default=None, description="a bot that may discover; the server's bot, else local")
    extra_paths: list[str] = Field(default_factory=list, description="more absolute folders to look in")


class PublicRulesIn(InputModel):
    apply: bool = Field(description="hold chains to this private root to the public CA rules (398-day limit)")


class PrivateRootIn(InputModel):
    name: str = Field(max_length=120)
    pem: str = Field(max_length=200_000, description="the root CA certificate, PEM")


@router.post(
    "/discovery/endpoints",
    status_code=202,
    summary="Discover: start a discover-endpoints run (TLS scan of hosts, ranges and ports) in Prefect",
)
def discover(body: inventory.DiscoverRequest, db: DbSession, who: Operator) -> dict[str, str]:
    return run_json(inventory.start_discovery(db, body, actor=who.username))


@router.post(
    "/servers/{server_id}/scan-files",
    status_code=202,
    summary="Scan server files: start a discover-server-files run for one server in Prefect",
)
def scan_files(
    server_id: RowId, db: DbSession, who: Operator, body: Annotated[FileScanBody | None, Body()] = None
) -> dict[str, str]:
    body = body or FileScanBody()
    run = inventory.start_file_scan(db, server_id, actor=who.username, bot_id=body.bot_id, extra_paths=body.extra_paths)
    return run_json(run)


@router.get("/private-roots", summary="Private roots: the organisation's trusted root CAs (CA Type)")
def private_roots(db: DbSession, who: Viewer) -> list[PrivateRootView]:
    return inventory.list_private_roots(db)


@router.post("/private-roots", status_code=201, summary="Register a private root (re-derives every CA Type)")
def add_private_root(body: PrivateRootIn, db: DbSession, who: Operator) -> PrivateRootView:
    return inventory.register_private_root(db, body.name, body.pem.encode(), actor=who.username)


@router.delete("/private-roots/{root_id}", status_code=204, summary="Remove a private root")
def remove_private_root(root_id: RowId, db: DbSession, who: Operator) -> None:
    inventory.remove_private_root(db, root_id, actor=who.username)


@router.put(
    "/private-roots/{root_id}/public-rules",
    summary="Admin: hold chains to a private root to the public CA rules, or stop (re-derives Vulnerable)",
)
def public_rules(root_id: RowId, body: PublicRulesIn, db: DbSession, who: Admin) -> PrivateRootView:
    return inventory.hold_to_public_rules(db, root_id, body.apply, actor=who.username)
