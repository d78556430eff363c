"""/api/v1/dashboard: the tiles of the Provisioning Dashboard."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from certfleet.dashboard.deps import DbSession, Viewer
from certfleet.dashboard.services import tiles
from certfleet.dashboard.templating import prefect_ui_url

router = APIRouter(tags=["Dashboard"])


@router.get("/dashboard", summary="Every tile's count (bots, certificates, servers, S/MIME, orders)")
def dashboard(db: DbSession, who: Viewer) -> dict[str, Any]:
    return {**tiles.tiles(db), "prefect_ui": prefect_ui_url()}


@router.get("/dashboard/runs", summary="deploy-certificate runs in Prefect: pending (scheduled/running) and failed")
async def runs(who: Viewer) -> dict[str, Any]:
    result = await run_in_threadpool(tiles.deployment_runs)
    return {**result, "prefect_ui": prefect_ui_url()}
