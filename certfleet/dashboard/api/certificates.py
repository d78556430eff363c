"""/api/v1/certificates: the list and export, the Select Action menu (configure, download, details, view, ignore,
unignore, delete: all through `certfleet.inventory.service`), import, targets, and starting issue / deploy /
provision / rollback / revoke runs in Prefect."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import ConfigDict, Field, SecretStr

from certfleet import fields
from certfleet.dashboard.api.ids import RowId
from certfleet.dashboard.deps import DbSession, Operator, Viewer
from certfleet.dashboard.errors import Forbidden, InputError
from certfleet.dashboard.flows import FlowRunRef
from certfleet.dashboard.lists import add_list_api
from certfleet.dashboard.services import batch_requests, inventory
from certfleet.dashboard.services import certificates as svc
from certfleet.dashboard.services.runs import start_for_certificate, start_revocation, start_rollback
from certfleet.dashboard.templating import flow_run_url
from certfleet.input_model import InputModel
from certfleet.inventory.schemas import (
    BATCH_NAME,
    IGNORE_REASON,
    ORGANIZATION,
    CertificateConfiguration,
    CertificateDetails,
    CertificateText,
    ConfigureRequest,
    Deleted,
    DownloadFormat,
    ImportReport,
    StatusChange,
    TargetInput,
)
from certfleet.models import repo
from certfleet.models.orm import Certificate, Deployment, DeploymentType
from certfleet.renewal.schedule import ari_renews_at, next_renewal
from certfleet.revocation import REASONS

router = APIRouter(tags=["Certificates"])
add_list_api(router, svc.CERTIFICATES, tag="Certificates")


class ConfigureIn(InputModel):
    """A new request's optional configuration (Configure itself takes `ConfigureBody`)."""

    ca_connector_id: int | None = None
    provisioning_bot_id: int | None = None
    key_spec: str = "rsa2048"
    validity_days: int | None = None
    renew_before_days: int | None = None  # None: the CA connector's default, else 30
    renew_before_fraction: float | None = Field(default=None, gt=0, lt=1, allow_inf_nan=False)
    organization: Annotated[str, ORGANIZATION] | None = None
    tags: Annotated[list[str], fields.TagList()] = Field(default_factory=list)
    batch_name: Annotated[str, BATCH_NAME] | None = None
    deployment_type: str = DeploymentType.AUTOMATED.value


class ConfigureBody(ConfigureRequest):
    """Configure: as the inventory service takes it; `targets` left out keeps the certificate's targets."""

    targets: list[TargetInput] | None = None  # type: ignore[assignment]


class DownloadBody(InputModel):
    format: DownloadFormat = DownloadFormat.PEM
    include_chain: bool = True
    password: SecretStr | None = Field(default=None, description="PKCS#12 only: 8+ characters, protects the key")


class IgnoreBody(InputModel):
    reason: Annotated[str, IGNORE_REASON] | None = None


class CertificateIn(ConfigureIn):
    common_name: str
    sans: list[str] = Field(default_factory=list)
    profile: str = "tls-server"


class TargetIn(InputModel):
    server_id: int
    port: int
    server_name: str | None = None
    cert_path: str | None = None  # nginx, Apache, Java servers: found in the server's configuration when not given
    key_path: str | None = None
    chain_path: str | None = None


class StartIn(InputModel):
    model_config = ConfigDict(extra="forbid")

    ignore_window: bool = Field(
        default=False, description="deploy only: now, whatever the servers' maintenance windows say (audited)"
    )


def certificate_json(c: Certificate) -> dict[str, Any]:
    def iso(v: Any) -> Any:
        return v.isoformat() if v is not None else None

    return {
        "id": c.id,
        "common_name": c.common_name,
        "sans": c.sans,
        "status": c.status.value,
        "status_reason": c.status_reason,
        "revocation_reason": c.revocation_reason,
        "revoked_at": iso(c.revoked_at),
        "profile": c.profile,
        "usage": c.usage or c.profile,  # what it is for; before its first issue, the profile it is ordered with
        "key_spec": c.key_spec,
        "ca_connector_id": c.ca_connector_id,
        "provisioning_bot_id": c.provisioning_bot_id,
        "discovery_bot_id": c.discovery_bot_id,
        "validity_days": c.validity_days,
        "renew_before_days": c.renew_before_days,
        "renew_before_fraction": c.renew_before_fraction,
        "renewal_attempts": c.renewal_attempts,
        "renewal_next_attempt_at": iso(c.renewal_next_attempt_at),
        # When renew-expiring renews it (None: it does not look after it); with ACME Renewal Information
        # (RFC 9773) the time chosen inside the CA's suggested window, with the CA's explanation if any.
        "renewal_due_at": iso(next_renewal(c)),
        "ari_renew_at": iso(ari_renews_at(c)),
        "ari_explanation_url": c.ari_explanation_url if ari_renews_at(c) else None,
        "ari_next_poll_at": iso(c.ari_next_poll_at),
        "ari_error": c.ari_error,
        "organization": c.organization,
        "tags": c.tags,
        "batch_name": c.batch_name,
        "deployment_type": c.deployment_type.value,
        "issuer_ca": c.issuer_ca,
        "ca_type": c.ca_type.value if c.ca_type else None,
        "serial_number": c.serial_number,
        "served_serial_number": c.served_serial_number,  # until the newest is proven on a server: the previous one
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
                # a deploy-certificate run waits in Prefect for the server's maintenance window until then
                "deploy_waits_until": iso(t.deploy_waits_until),
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
        renew_before_fraction=body.renew_before_fraction,
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


IMPORT_DESCRIPTION = """One outcome per file (per entry for a Java keystore); a bad file gets its reason and never
stops the others. Formats: PEM (certificates, PKCS#7, an optional private key), DER, PKCS#7 (.p7b), PKCS#12
(.pfx/.p12, with `password`), JKS and JCEKS (with `password` as the store password and, when the key entries
have their own, `key_password`). One password serves every file of the upload.

The status says how it went: **200** every file (and keystore entry) was imported; **207** some were and some
were not (read each outcome); **422** none was. The body is the same in all three:
`{"imported": n, "failed": m, "outcomes": [{"filename", "entry", "imported", "certificate_id", "common_name",
"new", "private_key_stored", "reason"}]}`; `reason` says what the file is and what is wrong with it, or notes
what was left out of an imported file."""


@router.post(
    "/certificates/import",
    summary="Import certificate files: PEM, DER, PKCS#7, PKCS#12, JKS, JCEKS (200 all, 207 some, 422 none)",
    description=IMPORT_DESCRIPTION,
    responses={
        207: {"description": "some files (or keystore entries) were imported, some were not: see each outcome"},
        422: {"description": "no file was imported: each outcome says why"},
    },
)
async def import_files(
    who: Operator,
    files: Annotated[list[UploadFile], File(description="certificate files")],
    password: Annotated[SecretStr | None, Form(description="PKCS#12 password or keystore store password")] = None,
    key_password: Annotated[
        SecretStr | None, Form(description="Java keystores: the key entries' password, when not the store's")
    ] = None,
    bot_id: Annotated[int | None, Form()] = None,
) -> JSONResponse:
    uploads = [(f.filename or "upload", await f.read(inventory.MAX_UPLOAD_BYTES + 1)) for f in files]
    # The service runs its own transactions: no request session is held open meanwhile (SQLite would lock).
    secret = password.get_secret_value() if password else None
    key_secret = key_password.get_secret_value() if key_password else None
    report: ImportReport = await run_in_threadpool(
        inventory.import_files, uploads, actor=who.username, password=secret, bot_id=bot_id, key_password=key_secret
    )
    body = {"imported": report.imported, "failed": report.failed, **report.model_dump(mode="json")}
    return JSONResponse(body, status_code=report.http_status)


@router.post(
    "/certificate-requests/import",
    summary="Request certificates from a CSV or Excel file, one per row (Common Name, SANs, Servers, Batch Name...)",
    description=(batch_requests.__doc__ or "").split("\n\n", 1)[1],
    responses={
        201: {"description": "every row stored, or the good rows when accept_good is true"},
        422: {"description": "nothing stored: the per-row report says why"},
    },
)
def import_requests(
    db: DbSession,
    who: Operator,
    file: Annotated[UploadFile, File(description="a .csv (UTF-8) or .xlsx file with a header row")],
    accept_good: Annotated[bool, Form(description="store the good rows even if some rows fail")] = False,
) -> JSONResponse:
    report = batch_requests.import_requests(
        db, file.file.read(), file.filename or "upload", accept_good=accept_good, actor=who.username
    )
    return JSONResponse(report.as_json(), status_code=201 if report.stored or not report.bad else 422)


@router.get("/certificates/{cert_id}", summary="One certificate with its targets")
def get_one(cert_id: RowId, db: DbSession, who: Viewer) -> dict[str, Any]:
    return certificate_json(repo.get(db, Certificate, cert_id))


def _request(db: DbSession, cert_id: RowId, body: ConfigureBody) -> ConfigureRequest:
    targets = body.targets if body.targets is not None else inventory.current_targets(db, cert_id)
    return ConfigureRequest.model_validate({**body.model_dump(exclude={"targets"}), "targets": targets})


@router.get("/certificates/{cert_id}/configuration", summary="Configure: the saved configuration")
def get_configuration(cert_id: RowId, db: DbSession, who: Viewer) -> CertificateConfiguration:
    return inventory.configuration(db, cert_id)


@router.put(
    "/certificates/{cert_id}",
    summary="Configure: CA connector, provisioning bot, targets, key parameters, renewal policy",
    description="Refused with 422 and every reason in `problems` ({field, message}) when it cannot work; "
    "nothing is saved then. Leave `targets` out to keep the certificate's targets.",
)
def configure(cert_id: RowId, body: ConfigureBody, db: DbSession, who: Operator) -> CertificateConfiguration:
    return inventory.configure(db, cert_id, _request(db, cert_id, body), actor=who.username)


@router.post("/certificates/{cert_id}/configuration/check", summary="Configure: every problem, without saving")
def check_configuration(cert_id: RowId, body: ConfigureBody, db: DbSession, who: Viewer) -> dict[str, Any]:
    problems = inventory.check_configuration(db, cert_id, _request(db, cert_id, body))
    return {"ok": not problems, "problems": [{"field": f, "message": m} for f, m in problems]}


@router.post("/certificates/{cert_id}/targets", status_code=201, summary="Add a deployment target")
def add_target(cert_id: RowId, body: TargetIn, db: DbSession, who: Operator) -> dict[str, Any]:
    svc.add_target(db, cert_id, svc.TargetFields(**body.model_dump()), who.username)
    return certificate_json(repo.get(db, Certificate, cert_id))


@router.delete("/certificates/{cert_id}/targets/{target_id}", summary="Remove a deployment target")
def remove_target(cert_id: RowId, target_id: RowId, db: DbSession, who: Operator) -> dict[str, Any]:
    svc.remove_target(db, cert_id, target_id, who.username)
    return certificate_json(repo.get(db, Certificate, cert_id))


def _file(result: Any) -> Response:
    return Response(
        result.content,
        media_type=result.media_type,
        headers={"Content-Disposition": f'attachment; filename="{result.filename}"'},
    )


@router.get("/certificates/{cert_id}/download", summary="Download: format pem, der or pkcs7 (p7b)")
def download(cert_id: RowId, db: DbSession, who: Viewer, format: str = "pem", include_chain: bool = True) -> Response:
    fmt = inventory.download_format(format)
    if fmt is DownloadFormat.PKCS12:
        raise InputError(
            "a PKCS#12 file needs a password: POST it to /certificates/{id}/download (never in a URL)",
            field="format",
        )
    return _file(inventory.download(db, cert_id, fmt.value, actor=who.username, include_chain=include_chain))


@router.post(
    "/certificates/{cert_id}/download",
    summary="Download in any format; PKCS#12 (private key + chain) needs a password and the operator role",
)
def download_with_body(cert_id: RowId, db: DbSession, who: Viewer, body: DownloadBody) -> Response:
    if body.format is DownloadFormat.PKCS12 and not who.has("operator"):
        raise Forbidden("exporting a private key (PKCS#12) needs the operator role")
    password = body.password.get_secret_value() if body.password else None
    result = inventory.download(
        db, cert_id, body.format.value, actor=who.username, include_chain=body.include_chain, password=password
    )
    return _file(result)


@router.get("/certificates/{cert_id}/details", summary="Certificate Details: decoded fields, chain, locations")
def details(cert_id: RowId, db: DbSession, who: Viewer) -> CertificateDetails:
    return inventory.details(db, cert_id)


@router.get("/certificates/{cert_id}/text", summary="View Certificate: the decoded X.509 as text")
def view(cert_id: RowId, db: DbSession, who: Viewer) -> CertificateText:
    return inventory.view(db, cert_id)


@router.post("/certificates/{cert_id}/ignore", summary="Ignore: exclude from provisioning, keep in inventory")
def ignore(
    cert_id: RowId, db: DbSession, who: Operator, body: Annotated[IgnoreBody | None, Body()] = None
) -> StatusChange:
    return inventory.ignore(db, cert_id, actor=who.username, reason=body.reason if body else None)


@router.post("/certificates/{cert_id}/unignore", summary="Unignore: back to the state its data says")
def unignore(cert_id: RowId, db: DbSession, who: Operator) -> StatusChange:
    return inventory.unignore(db, cert_id, actor=who.username)


@router.delete("/certificates/{cert_id}", summary="Delete the certificate, its locations and order history")
def delete(cert_id: RowId, db: DbSession, who: Operator) -> Deleted:
    return inventory.delete(db, cert_id, actor=who.username)


class RevokeBody(InputModel):
    reason: str = Field(description="RFC 5280 reason name: " + ", ".join(REASONS))
    serial_number: str | None = Field(
        default=None, description="a serial (hex) the certificate had before a rotation; default: the current one"
    )


@router.post(
    "/certificates/{cert_id}/revoke",
    status_code=202,
    summary="Start a revoke-certificate run: the issuing CA revokes it with an RFC 5280 reason",
    description="Refused with 422 and the reason when the certificate is not issued, already revoked, not issued "
    "through certfleet, or `reason` is not an RFC 5280 reason name. A deployed certificate is revoked all the "
    "same: rotate it first (provision) and revoke the previous `serial_number` to avoid serving a revoked one.",
)
def revoke(cert_id: RowId, body: RevokeBody, db: DbSession, who: Operator) -> dict[str, str]:
    return run_json(start_revocation(db, cert_id, body.reason, who.username, body.serial_number))


@router.post(
    "/certificates/{cert_id}/{action}",
    status_code=202,
    summary="Start a run in Prefect: action is provision, issue or deploy",
    description="A deploy starts one run per bot that reaches the certificate's servers: `runs` lists them all, "
    "the top-level fields name the first. A server outside its maintenance window gets its own run, scheduled in "
    "Prefect for the window's start (`targets[].deploy_waits_until` on the certificate); "
    '`{"ignore_window": true}` deploys now regardless (audited).',
)
def start(
    cert_id: RowId, action: str, db: DbSession, who: Operator, body: Annotated[StartIn | None, Body()] = None
) -> dict[str, Any]:
    ignore_window = body.ignore_window if body is not None else False
    runs = start_for_certificate(db, cert_id, action, who.username, ignore_window=ignore_window)
    return {**run_json(runs[0]), "runs": [run_json(r) for r in runs]}


@router.get("/certificates/{cert_id}/deployments", summary="Deployments of a certificate, newest first")
def deployments(cert_id: RowId, db: DbSession, who: Viewer) -> list[dict[str, Any]]:
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
def rollback(deployment_id: RowId, db: DbSession, who: Operator) -> dict[str, str]:
    return run_json(start_rollback(db, deployment_id, who.username))
