"""/api/v1/rotations: start a rotate-batch run (ids, Batch Name or filter) and read what a batch did."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from certfleet.dashboard.deps import DbSession, Operator, Viewer
from certfleet.dashboard.services.runs import start_rotation
from certfleet.models.repo import NotFound
from certfleet.rotation.service import RotationRequest, items_of, summary_of

router = APIRouter(tags=["Rotations"])


@router.post(
    "/rotations",
    status_code=202,
    summary="Start a rotate-batch run: re-key, re-issue and deploy the chosen certificates",
    description="Choose one way: `certificate_ids`, `batch_name`, or a filter (`ca_connector_id`, `tag`, `status`, "
    "`expiring_within_days`; all must match). The first `canary_per_server_type` certificates of each server type "
    "go first; a failing canary, or more failures than `failure_budget` (a fraction, default 0.05), stops the "
    "batch and rolls back what it deployed. Send the `batch_key` of a stopped batch to continue it: nothing it "
    "issued is issued again.",
)
def start(body: RotationRequest, db: DbSession, who: Operator) -> dict[str, Any]:
    key, count, run = start_rotation(db, body, who.username)
    return {
        "batch_key": key,
        "certificates": count,
        "flow_run_id": run.id,
        "flow_run_name": run.name,
        "prefect_url": run.url,
    }


@router.get("/rotations/{batch_key}", summary="What a batch did: counts per state and server, and each certificate")
def show(batch_key: str, db: DbSession, who: Viewer) -> dict[str, Any]:
    if not items_of(db, batch_key):
        raise NotFound(f"no rotation batch {batch_key}")
    return summary_of(db, batch_key)
