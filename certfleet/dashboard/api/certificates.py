"""/api/v1/certificates: the list and export, configure, targets, download, details, ignore, delete, and starting
issue / deploy / provision / rollback runs in Prefect."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from certfleet.dashboard.deps import DbSession, Operator, Viewer
from certfleet.dashboard.flows import FlowRunRef
from certfleet.dashboard.lists import add_list_api
from certfleet.dashboard.services import certificates as svc
from certfleet.dashboard.services.runs import start_for_certificate, start_rollback
from certfleet.dashboard.templating import flow_run_url
from certfleet.models import repo
from certfleet.models.orm import Certificate, Deployment, DeploymentType

router = APIRouter(tags=["Certificates"])
add_list_api(router, svc.CERTIFICATES, tag="Certificates")


class ConfigureIn(BaseModel):
    ca_connector_id: int | None = None
    provisioning_bot_id: int | None = None
    key_spec: str = "rsa2048"
    validity_days: int | None = None
    renew_before_days: int = 30
    organization: str | None = None
    tags: list[str] = Field(default_factory=list)
    batch_name: str | None = None
    deployment_type: str = DeploymentType.AUTOMATED.value


class CertificateIn(ConfigureIn):
    common_name: str
    sans: list[str] = Field(default_factory=list)
    profile: str = "tls-server"


class TargetIn(BaseModel):
    server_id: int
    port: int
    server_name: str | None = None
    cert_path: str
    key_path: str
    chain_path: str | None = None


def certificate_json(c: Certificate) -> dict[str, Any]:
    def iso(v: Any) -> Any:
        return v.isoformat() if v is not None else None

    return {
        "id": c.id,
        "common_name": c.common_name,
        "sans": c.sans,
        "status": c.status.value,
        "status_reason": c.status_reason,
        "profile": c.profile,
        "key_spec": c.key_spec,
        "ca_connector_id": c.ca_connector_id,
        "provisioning_bot_id": c.provisioning_bot_id,
        "discovery_bot_id": c.discovery_bot_id,
        "validity_days": c.validity_days,
        "renew_before_days": c.renew_before_days,
        "organization": c.organization,
        "tags": c.tags,
        "batch_name": c.batch_name,
        "deployment_type": c.deployment_type.value,
        "issuer_ca": c.issuer_ca,
        "ca_type": c.ca_type.value if c.ca_type else None,
        "serial_number": c.serial_number,
        "signature_algorithm": c.signature_algorithm,
        "expires_on": iso(c.expires_on),
        "issued_on": iso(c.issued_on),
        "last_provisioned_on": iso(c.last_provisioned_on),
        "order_id": c.ca_order_id,
        "vulnerable": c.vulnerable,
        "vulnerability_reasons": c.vulnerability_reasons,
        "targets": [
            {
                "id": t.id,
                "server_id": t.server_id,
                "port": t.port,
                "server_name": t.server_name,
                "cert_path": t.cert_path,
                "key_path": t.key_path,
                "chain_path": t.chain_path,
            }
            for t in c.targets
        ],
    }


def _config(body: ConfigureIn) -> svc.CertificateFields:
    return svc.CertificateFields(
        ca_connector_id=body.ca_connector_id,
        provisioning_bot_id=body.provisioning_bot_id,
        key_spec=body.key_spec,
        validity_days=body.validity_days,
        renew_before_days=body.renew_before_days,
        organization=body.organization,
        tags=body.tags,
        batch_name=body.batch_name,
        deployment_type=body.deployment_type,
    )


def run_json(run: FlowRunRef) -> dict[str, str]:
    return {"flow_run_id": run.id, "flow_run_name": run.name, "prefect_url": run.url}


@router.post("/certificates", status_code=201, summary="Request a new certificate (status Initiated)")
def create(body: CertificateIn, db: DbSession, who: Operator) -> dict[str, Any]:
    new = svc.NewCertificate(body.common_name, body.sans, body.profile, _config(body))
    return certificate_json(svc.create_certificate(db, new, who.username))


@router.get("/certificates/{cert_id}", summary="One certificate with its targets")
def get_one(cert_id: int, db: DbSession, who: Viewer) -> dict[str, Any]:
    return certificate_json(repo.get(db, Certificate, cert_id))


@router.put("/certificates/{cert_id}", summary="Configure: CA, provisioning bot, key and lifecycle parameters")
def configure(cert_id: int, body: ConfigureIn, db: DbSession, who: Operator) -> dict[str, Any]:
    return certificate_json(svc.configure(db, cert_id, _config(body), who.username))


@router.post("/certificates/{cert_id}/targets", status_code=201, summary="Add a deployment target")
def add_target(cert_id: int, body: TargetIn, db: DbSession, who: Operator) -> dict[str, Any]:
    svc.add_target(db, cert_id, svc.TargetFields(**body.model_dump()), who.username)
    return certificate_json(repo.get(db, Certificate, cert_id))


@router.delete("/certificates/{cert_id}/targets/{target_id}", summary="Remove a deployment target")
def remove_target(cert_id: int, target_id: int, db: DbSession, who: Operator) -> dict[str, Any]:
    svc.remove_target(db, cert_id, target_id, who.username)
    return certificate_json(repo.get(db, Certificate, cert_id))


@router.get("/certificates/{cert_id}/download", summary="Download the certificate: format pem, der or p7b")
def download(cert_id: int, db: DbSession, who: Viewer, format: str = "pem") -> Response:
    data, media, name = svc.download(db, cert_id, format)
    return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/certificates/{cert_id}/details", summary="Decoded certificate metadata and its X.509 text")
def details(cert_id: int, db: DbSession, who: Viewer) -> dict[str, Any]:
    found = svc.details(db, cert_id)
    if found is None:
        return {"issued": False}
    info, text = found
    return {"issued": True, "details": info.model_dump(mode="json"), "text": text}


@router.post("/certificates/{cert_id}/ignore", summary="Ignore: exclude from provisioning, keep in inventory")
def ignore(cert_id: int, db: DbSession, who: Operator) -> dict[str, Any]:
    return certificate_json(svc.ignore(db, cert_id, who.username))


@router.delete("/certificates/{cert_id}", summary="Delete the certificate from the inventory")
def delete(cert_id: int, db: DbSession, who: Operator) -> dict[str, Any]:
    return {"deleted": cert_id, "common_name": svc.delete_certificate(db, cert_id, who.username)}


@router.post(
    "/certificates/{cert_id}/{action}",
    status_code=202,
    summary="Start a run in Prefect: action is provision, issue or deploy",
)
def start(cert_id: int, action: str, db: DbSession, who: Operator) -> dict[str, str]:
    return run_json(start_for_certificate(db, cert_id, action, who.username))


@router.get("/certificates/{cert_id}/deployments", summary="Deployments of a certificate, newest first")
def deployments(cert_id: int, db: DbSession, who: Viewer) -> list[dict[str, Any]]:
    cert = repo.get(db, Certificate, cert_id)
    rows = db.query(Deployment).filter(Deployment.certificate_id == cert.id).order_by(Deployment.id.desc()).limit(50)
    return [
        {
            "id": d.id,
            "target_id": d.target_id,
            "status": d.status.value,
            "serial_number": d.serial_number,
            "previous_serial": d.previous_serial,
            "reason": d.reason,
            "started_at": d.started_at.isoformat(),
            "finished_at": d.finished_at.isoformat() if d.finished_at else None,
            "prefect_url": flow_run_url(d.flow_run_id) if d.flow_run_id else None,
        }
        for d in rows
    ]


@router.post("/deployments/{deployment_id}/rollback", status_code=202, summary="Start a rollback-deployment run")
def rollback(deployment_id: int, db: DbSession, who: Operator) -> dict[str, str]:
    return run_json(start_rollback(db, deployment_id, who.username))
