"""Provisioning Certificates pages: the list, a certificate's Configure / Details / View / Download / targets /
deployments, a new request, and starting runs in Prefect. The Select Action menu goes through the inventory
service (`certfleet.dashboard.services.inventory`), as the API does."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet import revocation
from certfleet.bots import service as bots_svc
from certfleet.dashboard.deps import DbSession, Operator, Viewer
from certfleet.dashboard.errors import InputError, flash
from certfleet.dashboard.lists import add_export_page, page_context
from certfleet.dashboard.services import batch_requests, inventory
from certfleet.dashboard.services import certificates as svc
from certfleet.dashboard.services.runs import start_for_certificate, start_revocation, start_rollback
from certfleet.dashboard.templating import flow_run_url, render
from certfleet.models import repo
from certfleet.models.orm import CAConnector, Certificate, Deployment, DeploymentType, Order, Server, utcnow
from certfleet.renewal.schedule import ari_renews_at, next_renewal

router = APIRouter()
add_export_page(router, svc.CERTIFICATES)


class _ConfigForm:
    def __init__(
        self,
        ca_connector_id: Annotated[str, Form()] = "",
        provisioning_bot_id: Annotated[str, Form()] = "",
        key_spec: Annotated[str, Form()] = "rsa2048",
        validity_days: Annotated[str, Form()] = "",
        renew_before_days: Annotated[str, Form()] = "",
        organization: Annotated[str, Form()] = "",
        tags: Annotated[str, Form()] = "",
        batch_name: Annotated[str, Form()] = "",
        deployment_type: Annotated[str, Form()] = DeploymentType.AUTOMATED.value,
        renew_before_fraction: Annotated[str, Form()] = "",
    ) -> None:
        self.fields = svc.CertificateFields(
            ca_connector_id,
            provisioning_bot_id,
            key_spec,
            validity_days,
            renew_before_days,
            organization or None,  # an empty input is "no value" (a form cannot send null)
            tags,
            batch_name or None,
            deployment_type,
            renew_before_fraction,
        )


def _choices(db: Session) -> dict[str, Any]:
    connectors = db.execute(select(CAConnector.id, CAConnector.name, CAConnector.kind).order_by(CAConnector.name))
    servers = db.execute(select(Server.id, Server.description, Server.host).order_by(Server.description).limit(2000))
    return {
        "connectors": [(i, f"{n} ({k})") for i, n, k in connectors],
        "bots": bots_svc.choices(db),
        "servers": [(i, f"{d} ({h})") for i, d, h in servers],
        "key_specs": svc.KEY_SPECS,
        "deployment_types": [t.value for t in DeploymentType],
    }


@router.get("/certificates", response_class=HTMLResponse)
def certificates_page(request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    ctx = page_context(request, db, who, svc.CERTIFICATES)
    return render(request, "certificates/list.html", ctx)


@router.get("/certificates/new", response_class=HTMLResponse)
def new_certificate(request: Request, db: DbSession, who: Operator) -> HTMLResponse:
    return render(request, "certificates/new.html", {"title": "New certificate", "v": {}, **_choices(db)})


@router.post("/certificates", response_class=HTMLResponse)
def create_certificate(
    request: Request,
    db: DbSession,
    who: Operator,
    config: Annotated[_ConfigForm, Depends()],
    common_name: Annotated[str, Form()] = "",
    sans: Annotated[str, Form()] = "",
    profile: Annotated[str, Form()] = "tls-server",
) -> Response:
    try:
        cert = svc.create_certificate(db, svc.NewCertificate(common_name, sans, profile, config.fields), who.username)
    except InputError as exc:
        values = {**config.fields.__dict__, "common_name": common_name, "sans": sans, "profile": profile}
        ctx = {"title": "New certificate", "v": values, "error": exc, **_choices(db)}
        return render(request, "certificates/new.html", ctx, status_code=422)
    response = RedirectResponse(f"/certificates/{cert.id}", status_code=303)
    flash(response, f"certificate {cert.common_name} created: add a target, then Provision", "success")
    return response


@router.post("/certificates/requests/file", response_class=HTMLResponse)
def import_requests(
    request: Request,
    db: DbSession,
    who: Operator,
    file: Annotated[UploadFile, File()],
    accept_good: Annotated[str, Form()] = "",
) -> Response:
    """A CSV or Excel file of requests: every row checked; stored all, the good rows when accepted, or nothing."""
    ctx: dict[str, Any] = {"title": "New certificate", "v": {}, "accept_good": bool(accept_good), **_choices(db)}
    try:
        report = batch_requests.import_requests(
            db, file.file.read(), file.filename or "upload", accept_good=bool(accept_good), actor=who.username
        )
    except InputError as exc:
        return render(request, "certificates/new.html", {**ctx, "bulk_error": exc}, status_code=422)
    status = 422 if report.bad and not report.stored else 200
    ctx |= {"report": report, "filename": file.filename, "columns": batch_requests.COLUMNS}
    return render(request, "certificates/new.html", ctx, status_code=status)


def _detail_context(db: Session, cert: Certificate) -> dict[str, Any]:
    found = inventory.details_or_none(db, cert.id)
    deployments = list(
        db.scalars(
            select(Deployment).where(Deployment.certificate_id == cert.id).order_by(Deployment.id.desc()).limit(20)
        )
    )
    orders = list(db.scalars(select(Order).where(Order.certificate_id == cert.id).order_by(Order.id.desc()).limit(10)))
    return {
        "title": cert.common_name,
        "cert": cert,
        "found": found,
        "info": found.certificate if found else None,
        "text": inventory.view(db, cert.id).text if found else None,
        "missing": svc.needs_configuration(cert),
        "revoke": _revoke_context(db, cert),
        "deployments": deployments,
        "orders": orders,
        "run_url": flow_run_url,
        "configuring": True,
        "renews_at": next_renewal(cert),
        "ari_renews_at": ari_renews_at(cert),
        "now": utcnow(),
        "problems": [],
        "v": {
            "ca_connector_id": cert.ca_connector_id or "",
            "provisioning_bot_id": cert.provisioning_bot_id or "",
            "key_spec": cert.key_spec,
            "validity_days": cert.validity_days or "",
            "renew_before_days": cert.renew_before_days,
            "renew_before_fraction": "" if cert.renew_before_fraction is None else cert.renew_before_fraction,
            "organization": cert.organization or "",
            "tags": ", ".join(cert.tags or []),
            "batch_name": cert.batch_name or "",
            "deployment_type": cert.deployment_type.value,
        },
        **_choices(db),
    }


def _revoke_context(db: Session, cert: Certificate) -> dict[str, Any]:
    """The Revoke panel: reasons, the serials certfleet issued, and where the current one is served."""
    serials = revocation.issued_serials(db, cert)
    try:
        served = revocation.check_revocable(db, cert.id).served_on
        refused = None
    except InputError as exc:
        served, refused = [], exc.message
    return {"reasons": revocation.REASONS, "serials": serials, "served_on": served, "refused": refused}


@router.get("/certificates/{cert_id}", response_class=HTMLResponse)
def certificate_detail(cert_id: int, request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    return render(request, "certificates/detail.html", _detail_context(db, repo.get(db, Certificate, cert_id)))


@router.post("/certificates/{cert_id}", response_class=HTMLResponse)
def configure(
    cert_id: int, request: Request, db: DbSession, who: Operator, config: Annotated[_ConfigForm, Depends()]
) -> Response:
    form = {k: "" if x is None else str(x) for k, x in config.fields.__dict__.items()}
    try:
        configure_request = inventory.configure_request_from_form(db, cert_id, form)
        with db.begin_nested():  # a refusal undoes whatever the service changed; the page still renders
            inventory.configure(db, cert_id, configure_request, actor=who.username)
    except InputError as exc:
        ctx = _detail_context(db, repo.get(db, Certificate, cert_id))
        problems = exc.problems or [(exc.field, exc.message)]
        ctx.update(error=exc, problems=problems, v=form)
        return render(request, "certificates/detail.html", ctx, status_code=422)
    response = RedirectResponse(f"/certificates/{cert_id}", status_code=303)
    flash(response, "configuration saved", "success")
    return response


@router.post("/certificates/{cert_id}/targets")
def add_target(
    cert_id: int,
    db: DbSession,
    who: Operator,
    server_id: Annotated[str, Form()] = "",
    port: Annotated[str, Form()] = "",
    server_name: Annotated[str, Form()] = "",
    cert_path: Annotated[str, Form()] = "",
    key_path: Annotated[str, Form()] = "",
    chain_path: Annotated[str, Form()] = "",
) -> Response:
    svc.add_target(
        db, cert_id, svc.TargetFields(server_id, port, server_name, cert_path, key_path, chain_path), who.username
    )
    response = RedirectResponse(f"/certificates/{cert_id}", status_code=303)
    flash(response, "target added", "success")
    return response


@router.post("/certificates/{cert_id}/targets/{target_id}/delete")
def remove_target(cert_id: int, target_id: int, db: DbSession, who: Operator) -> Response:
    svc.remove_target(db, cert_id, target_id, who.username)
    response = RedirectResponse(f"/certificates/{cert_id}", status_code=303)
    flash(response, "target removed", "success")
    return response


def _file(result: Any) -> Response:
    disposition = f'attachment; filename="{result.filename}"'
    return Response(result.content, media_type=result.media_type, headers={"Content-Disposition": disposition})


@router.get("/certificates/{cert_id}/download/{fmt}")
def download(cert_id: int, fmt: str, db: DbSession, who: Viewer) -> Response:
    if inventory.download_format(fmt).value == "pkcs12":
        raise InputError("a PKCS#12 file needs a password: use the PKCS#12 form on the certificate's page")
    return _file(inventory.download(db, cert_id, fmt, actor=who.username))


@router.post("/certificates/{cert_id}/download")
def download_pkcs12(
    cert_id: int,
    db: DbSession,
    who: Operator,
    password: Annotated[str, Form()] = "",
    fmt: Annotated[str, Form()] = "pkcs12",
) -> Response:
    """PKCS#12 holds the private key: a POST (the password never travels in a URL) for operators."""
    return _file(inventory.download(db, cert_id, fmt, actor=who.username, password=password or None))


@router.post("/certificates/{cert_id}/ignore")
def ignore(cert_id: int, db: DbSession, who: Operator, reason: Annotated[str, Form()] = "") -> Response:
    change = inventory.ignore(db, cert_id, actor=who.username, reason=reason or None)
    response = RedirectResponse("/certificates", status_code=303)
    name = repo.get(db, Certificate, change.certificate_id).common_name
    flash(response, f"{name} is ignored: it stays in the inventory, out of provisioning", "success")
    return response


@router.post("/certificates/{cert_id}/unignore")
def unignore(cert_id: int, db: DbSession, who: Operator) -> Response:
    change = inventory.unignore(db, cert_id, actor=who.username)
    response = RedirectResponse(f"/certificates/{cert_id}", status_code=303)
    flash(response, f"certificate is back in provisioning: {change.status.value}", "success")
    return response


@router.post("/certificates/{cert_id}/delete")
def delete(cert_id: int, db: DbSession, who: Operator) -> Response:
    deleted = inventory.delete(db, cert_id, actor=who.username)
    response = RedirectResponse("/certificates", status_code=303)
    flash(response, f"{deleted.common_name} deleted", "success")
    return response


@router.post("/certificates/{cert_id}/run/{action}")
def start(
    cert_id: int, action: str, db: DbSession, who: Operator, ignore_window: Annotated[str, Form()] = ""
) -> Response:
    runs = start_for_certificate(db, cert_id, action, who.username, ignore_window=bool(ignore_window))
    response = RedirectResponse(f"/certificates/{cert_id}", status_code=303)
    flash(response, "; ".join(f"started {run.name} in Prefect: {run.url}" for run in runs), "success")
    return response


@router.post("/certificates/{cert_id}/revoke")
def revoke(
    cert_id: int,
    db: DbSession,
    who: Operator,
    reason: Annotated[str, Form()] = "",
    serial_number: Annotated[str, Form()] = "",
) -> Response:
    run = start_revocation(db, cert_id, reason, who.username, serial_number or None)
    response = RedirectResponse(f"/certificates/{cert_id}", status_code=303)
    flash(response, f"started {run.name} in Prefect: {run.url}", "success")
    return response


@router.post("/deployments/{deployment_id}/rollback")
def rollback(deployment_id: int, db: DbSession, who: Operator) -> Response:
    deployment = repo.get(db, Deployment, deployment_id)
    run = start_rollback(db, deployment_id, who.username)
    response = RedirectResponse(f"/certificates/{deployment.certificate_id}", status_code=303)
    flash(response, f"started {run.name} in Prefect: {run.url}", "success")
    return response
