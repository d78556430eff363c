"""Starting certfleet's flows for an object, with the checks that make a clear error instead of a red run."""

from __future__ import annotations

from sqlalchemy.orm import Session

from certfleet.dashboard.errors import InputError
from certfleet.dashboard.flows import FlowRunRef, start_flow
from certfleet.dashboard.services.certificates import needs_configuration
from certfleet.models import repo
from certfleet.models.orm import Certificate, Deployment

CERTIFICATE_FLOWS = {
    "provision": "provision-certificate",
    "issue": "issue-certificate",
    "deploy": "deploy-certificate",
}


def start_for_certificate(session: Session, cert_id: int, action: str, actor: str) -> FlowRunRef:
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
    run = start_flow(CERTIFICATE_FLOWS[action], {"certificate_id": cert.id})
    repo.audit(session, actor=actor, action=f"start-{CERTIFICATE_FLOWS[action]}", obj=cert, detail=run.name)
    return run


def start_rollback(session: Session, deployment_id: int, actor: str) -> FlowRunRef:
    deployment = repo.get(session, Deployment, deployment_id)
    run = start_flow("rollback-deployment", {"deployment_id": deployment.id})
    repo.audit(session, actor=actor, action="start-rollback-deployment", obj=deployment, detail=run.name)
    return run
