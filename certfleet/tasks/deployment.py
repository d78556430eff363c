"""Deploying to one target: journal, back up, install atomically, config test, reload, prove, or restore.

Every change on a server is journalled (committed) before it happens, so `rollback-deployment` can undo
it from any process, even after the worker that made it died.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from sqlalchemy import select

from certfleet.connectors.base import Backup, CertificateBundle, ServerHandler
from certfleet.connectors.errors import ConnectorError, PermanentConnectorError
from certfleet.connectors.servers.probe import ProbeError, fetch_served_chain, wait_for_serial
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Certificate,
    CertificateStatus,
    Deployment,
    DeploymentStatus,
    DeploymentStep,
    DeploymentTarget,
    StepState,
    utcnow,
)
from certfleet.pki.bundle import chain_to_pem
from certfleet.pki.parse import load_material, serial_hex
from certfleet.settings import get_settings
from certfleet.tasks.build import build_handler, build_transport

ACTOR = "flow:deploy-certificate"
REPLACE_FILE = "replace-file"
CONFIG_TEST = "config-test"
RELOAD = "reload"


def _endpoint(target: DeploymentTarget) -> tuple[str, int, str]:
    return target.server.host, target.port, target.server_name or target.certificate.common_name


def _served_serial(target: DeploymentTarget) -> str | None:
    host, port, sni = _endpoint(target)
    try:
        return serial_hex(fetch_served_chain(host, port, server_name=sni, timeout=5.0)[0].serial_number)
    except ProbeError:
        return None  # nothing listening yet: a first deployment


@task(cache_policy=NO_CACHE, task_run_name="start-deployment-cert-{certificate_id}-target-{target_id}")
def start_deployment(certificate_id: int, target_id: int) -> int:
    with session_scope() as s:
        cert = repo.get(s, Certificate, certificate_id)
        target = repo.get(s, DeploymentTarget, target_id)
        if target.certificate_id != certificate_id:
            raise PermanentConnectorError(f"target {target_id} belongs to certificate {target.certificate_id}")
        if not (cert.pem_chain and cert.private_key and cert.serial_number):
            raise PermanentConnectorError(f"certificate {certificate_id} has not been issued yet: issue it first")
        busy = s.scalar(
            select(Deployment.id).where(
                Deployment.target_id == target_id, Deployment.status == DeploymentStatus.RUNNING
            )
        )
        if busy is not None:
            raise PermanentConnectorError(
                f"deployment {busy} to this target is still running or was interrupted: "
                f"wait for it, or run rollback-deployment {busy} first"
            )
        deployment = Deployment(
            certificate_id=certificate_id,
            target_id=target_id,
            serial_number=cert.serial_number,
            previous_serial=_served_serial(target),
            flow_run_id=str(flow_run.id) if flow_run.id else None,
        )
        s.add(deployment)
        s.flush()
        return deployment.id


@task(cache_policy=NO_CACHE, task_run_name="install-deployment-{deployment_id}")
def install_on_target(deployment_id: int) -> None:
    """No retries here: a half-done install is undone by `restore_target`, never repeated blindly."""
    with session_scope() as s:
        deployment = repo.get(s, Deployment, deployment_id)
        handler = build_handler(deployment.target)
        bundle = _bundle(deployment.target.certificate)
    for write in handler.plan(bundle):
        backup_path = f"{write.path}.certfleet-backup-{deployment_id}"
        step_id = _journal(deployment_id, REPLACE_FILE, path=write.path, backup_path=backup_path)
        backup = handler.snapshot(write.path, backup_path)
        _update_step(step_id, existed_before=backup.existed)
        handler.install(write)
        _update_step(step_id, state=StepState.DONE)
    _run_step(deployment_id, handler, CONFIG_TEST)
    _run_step(deployment_id, handler, RELOAD)


@task(cache_policy=NO_CACHE, task_run_name="verify-deployment-{deployment_id}")
def verify_served(deployment_id: int) -> None:
    """A TLS handshake (with SNI) must see the new serial; a reload takes a moment, so poll briefly."""
    with session_scope() as s:
        deployment = repo.get(s, Deployment, deployment_id)
        host, port, sni = _endpoint(deployment.target)
        expected = deployment.serial_number
    try:
        wait_for_serial(
            host,
            port,
            server_name=sni,
            expected_serial=int(expected, 16),
            timeout=get_settings().verify_timeout_s,
        )
    except ProbeError as exc:
        raise PermanentConnectorError(f"the new certificate is not served: {exc}") from exc


@task(cache_policy=NO_CACHE, task_run_name="finish-deployment-{deployment_id}")
def finish_deployment(deployment_id: int) -> None:
    with session_scope() as s:
        deployment = repo.get(s, Deployment, deployment_id)
        deployment.status = DeploymentStatus.DEPLOYED
        deployment.finished_at = utcnow()
        cert = deployment.target.certificate
        cert.status = CertificateStatus.DEPLOYED
        cert.status_reason = None
        cert.last_provisioned_on = deployment.finished_at
        host, port, _ = _endpoint(deployment.target)
        repo.audit(s, actor=ACTOR, action="deploy", obj=cert, detail=f"serial {cert.serial_number} on {host}:{port}")
        transport = build_transport(deployment.target.server)
        stale = list(
            s.scalars(
                select(DeploymentStep)
                .join(Deployment)
                .where(
                    Deployment.target_id == deployment.target_id,
                    Deployment.id != deployment_id,
                    DeploymentStep.action == REPLACE_FILE,
                    DeploymentStep.backup_path.is_not(None),
                )
            )
        )
        # Only the newest deployment keeps its backups: it is the one that can still be rolled back.
        for step in stale:
            transport.remove(step.backup_path or "")
            step.detail = f"backup {step.backup_path} removed after deployment {deployment_id}"
            step.backup_path = None


@task(cache_policy=NO_CACHE, task_run_name="restore-deployment-{deployment_id}")
def restore_target(deployment_id: int, reason: str) -> str:
    """Undo a deployment from its journal: restore files, test, reload, prove the old serial is back.

    Re-runnable: steps already restored are skipped. Returns the deployment's final status.
    """
    with session_scope() as s:
        deployment = repo.get(s, Deployment, deployment_id)
        handler = build_handler(deployment.target)
        host, port, sni = _endpoint(deployment.target)
        previous = deployment.previous_serial
        to_restore = [
            (st.id, Backup(st.path or "", st.backup_path or "", bool(st.existed_before)))
            for st in reversed(deployment.steps)
            if st.action == REPLACE_FILE and st.state is not StepState.RESTORED and st.existed_before is not None
        ]
        touched = any(st.action == REPLACE_FILE and st.existed_before is not None for st in deployment.steps)
        # A server that was never told to reload still runs the old files: restoring them is enough.
        reloaded = any(st.action == RELOAD for st in deployment.steps)
    try:
        for step_id, backup in to_restore:
            handler.restore(backup)
            _update_step(step_id, state=StepState.RESTORED)
        if reloaded:
            handler.verify()
            handler.activate()
        if touched and previous is not None:
            wait_for_serial(
                host,
                port,
                server_name=sni,
                expected_serial=int(previous, 16),
                timeout=get_settings().verify_timeout_s,
            )
    except (ConnectorError, ProbeError) as exc:
        return _close(deployment_id, DeploymentStatus.FAILED, f"{reason}; rollback failed: {exc}")
    if not touched:
        return _close(deployment_id, DeploymentStatus.FAILED, f"{reason}; nothing on the server was changed")
    served = f"serial {previous} is served again" if previous else "the previous files are back"
    return _close(deployment_id, DeploymentStatus.ROLLED_BACK, f"{reason}; rolled back, {served}")


def _close(deployment_id: int, status: DeploymentStatus, reason: str) -> str:
    with session_scope() as s:
        deployment = repo.get(s, Deployment, deployment_id)
        deployment.status = status
        deployment.reason = reason
        deployment.finished_at = utcnow()
        cert = deployment.target.certificate
        cert.status = (
            CertificateStatus.ROLLED_BACK
            if status is DeploymentStatus.ROLLED_BACK
            else CertificateStatus.DEPLOYMENT_FAILED
        )
        cert.status_reason = reason
        repo.audit(s, actor=ACTOR, action="rollback", obj=deployment, outcome=status.value, detail=reason)
    return status.value


def _bundle(cert: Certificate) -> CertificateBundle:
    if cert.pem_chain is None or cert.private_key is None:
        raise PermanentConnectorError(f"certificate {cert.id} has no issued certificate and key to install")
    chain = load_material(cert.pem_chain.encode()).certificates
    # The root stays out of what a server sends: clients must already trust it.
    intermediates = [c for c in chain[1:] if c.subject != c.issuer]
    return CertificateBundle(
        leaf_pem=chain_to_pem(chain[:1]), chain_pem=chain_to_pem(intermediates), key_pem=cert.private_key
    )


def _journal(deployment_id: int, action: str, **fields: str | None) -> int:
    with session_scope() as s:
        step = repo.journal(s, repo.get(s, Deployment, deployment_id), action=action, **fields)
        s.flush()
        return step.id


def _update_step(
    step_id: int,
    *,
    state: StepState | None = None,
    existed_before: bool | None = None,
    detail: str | None = None,
) -> None:
    with session_scope() as s:
        step = repo.get(s, DeploymentStep, step_id)
        if state is not None:
            step.state = state
        if existed_before is not None:
            step.existed_before = existed_before
        if detail is not None:
            step.detail = detail


def _run_step(deployment_id: int, handler: ServerHandler, action: str) -> None:
    step_id = _journal(deployment_id, action)
    try:
        handler.verify() if action == CONFIG_TEST else handler.activate()
    except ConnectorError as exc:
        _update_step(step_id, state=StepState.FAILED, detail=str(exc))
        raise
    _update_step(step_id, state=StepState.DONE)
