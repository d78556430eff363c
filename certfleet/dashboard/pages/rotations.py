"""The certificate list's Rotate action: the selected certificates go to a rotate-batch run (checked first)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import RedirectResponse, Response

from certfleet.dashboard.deps import DbSession, Operator
from certfleet.dashboard.errors import InputError, flash
from certfleet.dashboard.services.runs import start_rotation
from certfleet.rotation.service import parse_request

router = APIRouter()


@router.post("/rotations")
def rotate_selected(
    db: DbSession,
    who: Operator,
    certificate_ids: Annotated[list[str] | None, Form()] = None,
    canary_per_server_type: Annotated[str, Form()] = "1",
    failure_budget: Annotated[str, Form()] = "0.05",
    ignore_maintenance_windows: Annotated[str, Form()] = "",
) -> Response:
    if not certificate_ids:
        raise InputError("select the certificates to rotate in the list first", field="certificate_ids")
    request = parse_request(
        {
            "certificate_ids": certificate_ids,
            "canary_per_server_type": canary_per_server_type,
            "failure_budget": failure_budget,
            # A checkbox: "on" when ticked, absent otherwise (anything else is refused by the request's rules).
            "ignore_maintenance_windows": ignore_maintenance_windows or False,
        }
    )
    key, count, run = start_rotation(db, request, who.username)
    response = RedirectResponse("/certificates", status_code=303)
    flash(response, f"started {run.name} in Prefect for {count} certificate(s), batch {key}: {run.url}", "success")
    return response
