"""Starting certfleet's flows for an object, with the checks that make a clear error instead of a red run."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

from certfleet.bots.routing import NoRoute, cancel_waiting_runs, plan_deploys, record_plans, rollback_route
from certfleet.dashboard.errors import InputError
from certfleet.dashboard.flows import FlowRunRef, start_flow
from certfleet.dashboard.services.certificates import needs_configuration
from certfleet.models import repo
from certfleet.models.orm import Certificate, Deployment
from certfleet.revocation import FLOW as REVOKE_FLOW
from certfleet.revocation import check_revocable, parse_reason, record_start
from certfleet.rotation import service as rotation

T = TypeVar("T")

CERTIFICATE_FLOWS = {
    "provision": "provision-certificate",
    "issue": "issue-certificate",
    "deploy": "deploy-certificate",
}


def start_for_certificate(
    session: Session, cert_id: int, action: str, actor: str, *, ignore_window: bool = False
) -> list[FlowRunRef]:
    """One run, or for a deploy one run per bot that reaches the certificate's servers (and per maintenance
    window a server waits for). `ignore_window`: deploy now, whatever the servers' windows say (audited)."""
    if action not in CERTIFICATE_FLOWS:
        raise InputError(f"action must be one of {', '.join(CERTIFICATE_FLOWS)}", field="action")
    cert = repo.get(session, Certificate, cert_id)
    missing = needs_configuration(cert)
    if action == "issue":
        missing = [m for m in missing if m == "a CA connector"]
    elif action == "deploy":
        missing = [m for m in missing if m != "a CA connector"]
        if not cert.pem_chain:
            missing.append("an issued certificate (issue it first)")
    if missing:
        raise InputError(f"configure {cert.common_name} first: it needs {', '.join(missing)}")
    if ignore_window and action != "deploy":
        raise InputError("ignore_window applies to a deploy only", field="ignore_window")
    flow_name = CERTIFICATE_FLOWS[action]
    runs = []
    if action == "deploy":
        plans = _routes(lambda: plan_deploys(session, cert.id, ignore_window=ignore_window))
        for plan in plans:
            parameters = {"certificate_id": cert.id, "target_ids": plan.target_ids}
            runs.append(start_flow(flow_name, parameters, queue=plan.route.queue, scheduled_time=plan.at))
        record_plans(session, cert.id, plans)
        if ignore_window:
            # The runs that waited for a window must not deploy again later: a deploy now replaces them.
            cancelled = cancel_waiting_runs(
                cert.id,
                [t for plan in plans for t in plan.target_ids],
                reason=f"deployed now by {actor}, ignoring the maintenance window",
                keep_ids={run.id for run in runs},
            )
            repo.audit(
                session,
                actor=actor,
                action="deploy-ignoring-maintenance-window",
                obj=cert,
                detail="deploy now, whatever the servers' maintenance windows say"
                + (f"; cancelled the waiting run(s) {', '.join(cancelled)}" if cancelled else ""),
            )
    else:
        runs.append(start_flow(flow_name, {"certificate_id": cert.id}))
    for run in runs:
        repo.audit(session, actor=actor, action=f"start-{flow_name}", obj=cert, detail=run.name)
    return runs


def start_rollback(session: Session, deployment_id: int, actor: str) -> FlowRunRef:
    deployment = repo.get(session, Deployment, deployment_id)
    route = _routes(lambda: rollback_route(session, deployment.id))
    run = start_flow("rollback-deployment", {"deployment_id": deployment.id}, queue=route.queue)
    repo.audit(session, actor=actor, action="start-rollback-deployment", obj=deployment, detail=run.name)
    return run


def _routes(find: Callable[[], T]) -> T:
    try:
        return find()
    except NoRoute as exc:
        raise InputError(str(exc)) from None


def start_revocation(
    session: Session, cert_id: int, reason: str, actor: str, serial_number: str | None = None
) -> FlowRunRef:
    """A revoke-certificate run, after the checks that refuse with the reason (certfleet.revocation)."""
    flags = parse_reason(reason)
    revocable = check_revocable(session, cert_id, serial_number)
    parameters: dict[str, int | str] = {"certificate_id": revocable.certificate_id, "reason": flags.value}
    if not revocable.current:
        parameters["serial_number"] = revocable.serial_number
    run = start_flow(REVOKE_FLOW, parameters)
    record_start(session, revocable, flags, actor, run.name)
    return run


def start_rotation(session: Session, request: rotation.RotationRequest, actor: str) -> tuple[str, int, FlowRunRef]:
    """A rotate-batch run for the request (checked first); returns its batch key, its size and the run."""
    request, count = rotation.prepare(session, request)
    key = request.batch_key
    assert key is not None  # prepare gives every batch a key
    run = start_flow(rotation.FLOW, request.flow_parameters(), flow_run_name=f"{rotation.FLOW}-{key}")
    rotation.audit_start(session, key, count, actor, run.name, ignore_windows=request.ignore_maintenance_windows)
    return key, count, run
