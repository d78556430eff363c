"""`JobStore` on the database: the central host's runs use it directly, the bot API through its routes.

With `bot_id` set (the bot API), every call first checks that the server concerned is mapped to that bot,
so a bot can read and journal only its own servers' deployments (`NotYourServer`, a 403).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from cryptography.hazmat.primitives import hashes
from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet.connectors.base import CertificateBundle
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.inventory.served import mark_served
from certfleet.inventory.usage import NotServable, assert_servable
from certfleet.jobs.models import RestoreItem, RestorePlan, ServerAccess, StaleBackup, TargetJob
from certfleet.jobs.store import bundle_of
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Certificate,
    CertificateStatus,
    Deployment,
    DeploymentStatus,
    DeploymentStep,
    DeploymentTarget,
    Server,
    StepState,
    utcnow,
)
from certfleet.pki.bundle import chain_to_pem
from certfleet.pki.parse import stored_chain

ACTOR = "flow:deploy-certificate"
REPLACE_FILE = "replace-file"
CONFIG_TEST = "config-test"
RELOAD = "reload"
# A file another target of the same run had already replaced with this certificate (two ports, one server block):
# not backed up or written again, the server not reloaded again; its rollback is that deployment's.
SHARED_FILE = "shared-file"


if TYPE_CHECKING:
    from certfleet.servers.service import CheckOutcome, ConnectivityResult


def _undoable(step: DeploymentStep) -> bool:
    """A file whose backup was taken, or a change journalled with its own undo data (an IIS binding): journalled
    before it ran, so it may have happened, and its undo (idempotent) is replayed by every rollback."""
    if step.action == REPLACE_FILE:
        return step.existed_before is not None
    return step.undo is not None


class NotYourServer(PermissionError):
    """A bot asked for a server that is not mapped to it."""


def _cannot_deploy(certificate_id: int, reason: str) -> NoReturn:
    """A deployment that cannot start says why on the certificate, not only in the Prefect log."""
    with session_scope() as s:
        cert = repo.get(s, Certificate, certificate_id)
        cert.status = CertificateStatus.DEPLOYMENT_FAILED
        cert.status_reason = reason
        repo.audit(s, actor=ACTOR, action="deploy", obj=cert, outcome="refused", detail=reason)
    raise PermanentConnectorError(reason)


def rollback_refusal(session: Session, deployment: Deployment) -> str | None:
    """Why rolling this deployment back would not restore exactly what it replaced, or None when it can.

    A newer deployment that finished on the same target replaced these files (and removed their backups):
    restoring them would undo that one instead. A rolled-back deployment may be rolled back again (a retry):
    its files are back, so its backups are gone and nothing is left to restore."""
    newer = session.scalars(
        select(Deployment.id)
        .where(
            Deployment.target_id == deployment.target_id,
            Deployment.id > deployment.id,
            Deployment.status == DeploymentStatus.DEPLOYED,
        )
        .order_by(Deployment.id.desc())
    ).first()
    where = f"{deployment.target.server.host}:{deployment.target.port}"
    if newer is not None:
        return (
            f"deployment {deployment.id} cannot be rolled back: deployment {newer} replaced it on {where}; "
            f"roll back deployment {newer} instead"
        )
    restorable = (st for st in deployment.steps if st.action == REPLACE_FILE and st.state is not StepState.RESTORED)
    if any(st.existed_before and not st.backup_path for st in restorable):
        return f"deployment {deployment.id} cannot be rolled back: its backups on {where} were removed"
    shared = [st for st in deployment.steps if st.action == SHARED_FILE]
    if shared and not any(st.action == REPLACE_FILE for st in deployment.steps):
        return (
            f"deployment {deployment.id} cannot be rolled back on its own: its files on {where} are shared with "
            f"another target and were replaced by {shared[0].detail or 'another deployment'}; roll that one back"
        )
    return None


def server_access(server: Server) -> ServerAccess:
    return ServerAccess(
        server_id=server.id,
        description=server.description,
        host=server.host,
        connection=server.connection.value,
        bot_id=server.bot_id,
        ports=list(server.ports or []),
        ssh_port=server.ssh_port or 22,
        username=server.username,
        password=server.password,
        ssh_private_key=server.ssh_private_key,
        ssh_key_passphrase=server.ssh_key_passphrase,
        ssh_host_key=server.ssh_host_key,
        use_sudo=bool(server.use_sudo),
        server_type=server.server_type,
        app_path=server.app_path,
        keystore_folder=server.keystore_folder,
        service_name=server.service_name,
        version=server.version,
        config_test_command=server.config_test_command,
        reload_command=server.reload_command,
        smb_port=server.smb_port if server.smb_port is not None else 445,
        smb_share=server.smb_share,
        smb_share_folder=server.smb_share_folder,
        smb_encrypt=bool(server.smb_encrypt),
        smb_connect_timeout=server.smb_connect_timeout or 15,
        smb_io_timeout=server.smb_io_timeout or 60,
        smb_rpc_timeout=server.smb_rpc_timeout or 60,
    )


def target_job(target: DeploymentTarget, deployment: Deployment | None = None) -> TargetJob:
    cert = target.certificate
    return TargetJob(
        certificate_id=cert.id,
        target_id=target.id,
        deployment_id=deployment.id if deployment else None,
        common_name=cert.common_name,
        port=target.port,
        server_name=target.server_name or cert.common_name,
        cert_path=target.cert_path,
        key_path=target.key_path,
        chain_path=target.chain_path,
        serial_number=deployment.serial_number if deployment else cert.serial_number,
        previous_serial=deployment.previous_serial if deployment else None,
        issuer_pem=_issuers(cert.pem_chain),
        leaf_sha256=_leaf_sha256(cert.pem_chain, deployment.serial_number if deployment else cert.serial_number),
        server=server_access(target.server),
    )


def _leaf_sha256(pem_chain: str | None, serial: str | None) -> str | None:
    """The fingerprint of the row's certificate when it is the one with `serial` (an older deployment's is not)."""
    if not (pem_chain and serial):
        return None
    leaf = stored_chain(pem_chain)[0]
    try:
        same = leaf.serial_number == int(serial, 16)
    except ValueError:  # not a hex serial: the proof checks the issuer's signature instead
        return None
    return leaf.fingerprint(hashes.SHA256()).hex() if same else None


def _issuers(pem_chain: str | None) -> str | None:
    """The certificates above the leaf (PEM), or None for a self-signed or not yet issued certificate."""
    if not pem_chain:
        return None
    above = stored_chain(pem_chain)[1:]
    return chain_to_pem(above).decode() if above else None


def certificate_bundle(cert: Certificate) -> CertificateBundle:
    if cert.pem_chain is None or cert.private_key is None:
        raise PermanentConnectorError(f"certificate {cert.id} has no issued certificate and key to install")
    chain = stored_chain(cert.pem_chain)
    # The root stays out of what a server sends: clients must already trust it.
    intermediates = [c for c in chain[1:] if c.subject != c.issuer]
    return bundle_of(chain_to_pem(chain[:1]).decode(), chain_to_pem(intermediates).decode(), cert.private_key.decode())


def deploy_refusal(cert: Certificate, target: DeploymentTarget) -> str | None:
    """Why the certificate cannot be deployed to the target (said on the certificate), or None."""
    if not (cert.pem_chain and cert.serial_number):
        return f"certificate {cert.id} has not been issued yet: issue it first"
    if not cert.private_key:
        return f"certificate {cert.id}: certfleet holds no private key for it: import it with its key, or issue it"
    try:  # an S/MIME or CA certificate cannot be served: refuse before anything on the server changes
        assert_servable(cert.pem_chain, target.server.server_type)
    except NotServable as exc:
        return f"certificate {cert.id}: {exc}"
    return None


def still_running(deployment_id: int) -> str:
    return (
        f"deployment {deployment_id} to this target is still running or was interrupted: "
        f"wait for it, or run rollback-deployment {deployment_id} first"
    )


def add_deployments(
    s: Session, opening: Sequence[tuple[Certificate, DeploymentTarget, str | None]], flow_run_id: str | None
) -> dict[int, int]:
    """New Running deployments, each (certificate, target, serial served before), in one statement; their ids by
    target (a certificate's targets are its own: one deployment each)."""
    rows = []
    for cert, target, previous_serial in opening:
        target.deploy_waits_until = None  # its maintenance window (if it waited for one) has come
        rows.append(
            {
                "certificate_id": cert.id,
                "target_id": target.id,
                "serial_number": cert.serial_number,
                "previous_serial": previous_serial,
                "flow_run_id": flow_run_id,
            }
        )
    added = repo.insert_ids(s, Deployment, rows, Deployment.target_id)
    return {target_id: deployment_id for (target_id,), deployment_id in added.items()}


def finish_deployment(s: Session, deployment: Deployment) -> list[StaleBackup]:
    """The deployment proven: Deployed, its certificate served there; returns the target's older backups."""
    proven(s, deployment)
    return stale_backups(s, [deployment]).get(deployment.id, [])


def proven(s: Session, deployment: Deployment) -> None:
    """The deployment Deployed: its certificate is the one served on the target now."""
    deployment.status = DeploymentStatus.DEPLOYED
    deployment.finished_at = utcnow()
    cert = deployment.target.certificate
    cert.status = CertificateStatus.DEPLOYED
    cert.status_reason = None
    cert.last_provisioned_on = deployment.finished_at
    mark_served(s, cert, deployment.serial_number)
    where = f"{deployment.target.server.host}:{deployment.target.port}"
    repo.audit(s, actor=ACTOR, action="deploy", obj=cert, detail=f"serial {deployment.serial_number} on {where}")


def stale_backups(s: Session, finished: Sequence[Deployment]) -> dict[int, list[StaleBackup]]:
    """Per finished deployment, the backups its target's other deployments still keep (one query for all).
    Only the newest deployment keeps its backups: it is the one that can still be rolled back."""
    newest = {d.target_id: d.id for d in finished}
    rows = s.execute(
        select(Deployment.target_id, DeploymentStep.id, DeploymentStep.backup_path)
        .join(Deployment)
        .where(
            Deployment.target_id.in_(list(newest)),
            Deployment.id.not_in(list(newest.values())),
            DeploymentStep.action == REPLACE_FILE,
            DeploymentStep.backup_path.is_not(None),
        )
        .order_by(DeploymentStep.id)
    )
    stale: dict[int, list[StaleBackup]] = {}
    for target_id, step_id, path in rows:
        stale.setdefault(newest[target_id], []).append(StaleBackup(step_id=step_id, path=path or ""))
    return stale


def restore_plan(s: Session, deployment: Deployment) -> RestorePlan:
    """What rolling the deployment back must undo (newest change first), or why it must not be rolled back."""
    steps = deployment.steps
    items = [
        RestoreItem(
            step_id=st.id,
            action=st.action,
            path=st.path or "",
            backup_path=st.backup_path or "",
            existed=bool(st.existed_before),
            undo=st.undo,
        )
        for st in reversed(steps)
        if st.state is not StepState.RESTORED and _undoable(st)
    ]
    return RestorePlan(
        job=target_job(deployment.target, deployment),
        items=items,
        touched=any(_undoable(st) for st in steps),
        # A server that was never told to reload still runs the old files: restoring them is enough.
        reloaded=any(st.action == RELOAD for st in steps),
        refusal=rollback_refusal(s, deployment),
    )


def close_deployment(s: Session, deployment: Deployment, status: DeploymentStatus, reason: str) -> list[StaleBackup]:
    """Ends a deployment that did not succeed; returns the backups no rollback needs any more (`JobStore.close`)."""
    deployment.status = status
    deployment.reason = reason
    deployment.finished_at = utcnow()
    cert = deployment.target.certificate
    if status is DeploymentStatus.ROLLED_BACK:
        # What it replaced is served again (a rollback proves it), also when the deployment failed before it was
        # Deployed: the certificate issued for it stays the row's newest, issued but not served.
        mark_served(s, cert, deployment.previous_serial)
    cert.status = (
        CertificateStatus.ROLLED_BACK if status is DeploymentStatus.ROLLED_BACK else CertificateStatus.DEPLOYMENT_FAILED
    )
    cert.status_reason = reason
    repo.audit(s, actor=ACTOR, action="rollback", obj=deployment, outcome=status.value, detail=reason)
    # Rolled back: no copy is needed any more. Otherwise only the copies of files that were never replaced (a
    # worker killed between the backup and the install) are useless; the others may be what puts the server right
    # by hand.
    return [
        StaleBackup(step_id=st.id, path=st.backup_path)
        for st in deployment.steps
        if st.action == REPLACE_FILE
        and st.backup_path
        and (status is DeploymentStatus.ROLLED_BACK or st.existed_before is None)
    ]


class DbJobStore:
    def __init__(self, bot_id: int | None = None) -> None:
        self.bot_id = bot_id

    # -- scoping ---------------------------------------------------------------------------------------

    def _mine(self, server: Server) -> None:
        if self.bot_id is not None and server.bot_id != self.bot_id:
            raise NotYourServer(f"server {server.id} ({server.host}) is not mapped to this bot")

    def _target(self, s: Session, target_id: int) -> DeploymentTarget:
        target = repo.get(s, DeploymentTarget, target_id)
        self._mine(target.server)
        return target

    def _deployment(self, s: Session, deployment_id: int) -> Deployment:
        deployment = repo.get(s, Deployment, deployment_id)
        self._mine(deployment.target.server)
        return deployment

    # -- JobStore ----------------------------------------------------------------------------------------

    def certificate_targets(self, certificate_id: int) -> list[int]:
        with session_scope() as s:
            cert = repo.get(s, Certificate, certificate_id)
            return [t.id for t in cert.targets if self.bot_id is None or t.server.bot_id == self.bot_id]

    def target_job(self, certificate_id: int, target_id: int) -> TargetJob:
        with session_scope() as s:
            target = self._target(s, target_id)
            if target.certificate_id != certificate_id:
                raise PermanentConnectorError(f"target {target_id} belongs to certificate {target.certificate_id}")
            return target_job(target)

    def open_deployment(
        self, certificate_id: int, target_id: int, previous_serial: str | None, flow_run_id: str | None
    ) -> int:
        with session_scope() as s:
            target = self._target(s, target_id)
            cert = repo.get(s, Certificate, certificate_id)
            if target.certificate_id != certificate_id:
                raise PermanentConnectorError(f"target {target_id} belongs to certificate {target.certificate_id}")
            refusal = deploy_refusal(cert, target)
        if refusal is not None:
            _cannot_deploy(certificate_id, refusal)
        with session_scope() as s:
            target = self._target(s, target_id)
            busy = s.scalar(
                select(Deployment.id).where(
                    Deployment.target_id == target_id, Deployment.status == DeploymentStatus.RUNNING
                )
            )
            if busy is not None:
                raise PermanentConnectorError(still_running(busy))
            cert = repo.get(s, Certificate, certificate_id)
            return add_deployments(s, [(cert, target, previous_serial)], flow_run_id)[target.id]

    def deployment_job(self, deployment_id: int) -> TargetJob:
        with session_scope() as s:
            deployment = self._deployment(s, deployment_id)
            return target_job(deployment.target, deployment)

    def bundle(self, deployment_id: int) -> CertificateBundle:
        with session_scope() as s:
            return certificate_bundle(self._deployment(s, deployment_id).certificate)

    def journal(
        self,
        deployment_id: int,
        action: str,
        path: str | None = None,
        backup_path: str | None = None,
        undo: dict[str, Any] | None = None,
    ) -> int:
        with session_scope() as s:
            deployment = self._deployment(s, deployment_id)
            if deployment.status is not DeploymentStatus.RUNNING:
                raise PermanentConnectorError(
                    f"deployment {deployment_id} is {deployment.status.value}: no further change is journalled"
                )
            step = repo.journal(s, deployment, action=action, path=path, backup_path=backup_path, undo=undo)
            s.flush()
            return step.id

    def update_step(
        self,
        step_id: int,
        *,
        state: StepState | None = None,
        existed_before: bool | None = None,
        detail: str | None = None,
    ) -> None:
        with session_scope() as s:
            step = repo.get(s, DeploymentStep, step_id)
            self._mine(step.deployment.target.server)
            if state is not None:
                step.state = state
            if existed_before is not None:
                step.existed_before = existed_before
            if detail is not None:
                step.detail = detail

    def finish(self, deployment_id: int) -> list[StaleBackup]:
        with session_scope() as s:
            return finish_deployment(s, self._deployment(s, deployment_id))

    def forget_backups(self, deployment_id: int, removed: list[StaleBackup]) -> None:
        with session_scope() as s:
            self._deployment(s, deployment_id)
            for item in removed:
                step = repo.get(s, DeploymentStep, item.step_id)
                self._mine(step.deployment.target.server)
                step.detail = f"backup {step.backup_path} removed after deployment {deployment_id}"
                step.backup_path = None

    def restore_plan(self, deployment_id: int) -> RestorePlan:
        with session_scope() as s:
            return restore_plan(s, self._deployment(s, deployment_id))

    def close(self, deployment_id: int, status: DeploymentStatus, reason: str) -> list[StaleBackup]:
        with session_scope() as s:
            return close_deployment(s, self._deployment(s, deployment_id), status, reason)

    def pin_host_key(self, server_id: int, key_line: str) -> None:
        """Record the key a server presented on first contact; a key pinned meanwhile is never replaced."""
        from certfleet.connectors.servers.ssh import fingerprint  # SSH was used: paramiko is loaded already

        with session_scope() as s:
            server = repo.get(s, Server, server_id)
            self._mine(server)
            if server.ssh_host_key:
                return
            server.ssh_host_key = key_line
            repo.audit(
                s, actor="certfleet", action="pin-host-key", obj=server, detail=f"{fingerprint(key_line)} pinned"
            )

    def server_access(self, server_id: int) -> ServerAccess:
        with session_scope() as s:
            server = repo.get(s, Server, server_id)
            self._mine(server)
            return server_access(server)

    def record_check(self, server_id: int, actor: str, outcome: CheckOutcome) -> ConnectivityResult:
        from certfleet.servers.service import record_check

        with session_scope() as s:
            self._mine(repo.get(s, Server, server_id))
        return record_check(server_id, actor, outcome)
