"""Deploying to one target: journal, back up, install atomically, config test, reload, prove, or restore.

Every change on a server is journalled (committed) before it happens, so `rollback-deployment` can undo
it from any process, even after the worker that made it died: a replaced file with its backup path, a change
that is no file (an IIS binding) with its own undo data, measured before it runs. The tasks read their job and write the
journal through a `JobStore`: the database on the central host, certfleet's API on a bot. What a run has
already changed is also kept in memory, so a run whose store stops answering (a revoked bot token, a lost
API) still puts the server back as it was before it fails.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from certfleet.connectors.base import Backup, CertificateBundle, ServerHandler
from certfleet.connectors.errors import ConnectorError, PermanentConnectorError
from certfleet.connectors.servers.probe import ProbeError, fetch_served_chain, wait_for_serial
from certfleet.connectors.servers.transport import Transport
from certfleet.jobs.db_store import CONFIG_TEST, RELOAD, REPLACE_FILE, SHARED_FILE
from certfleet.jobs.models import StaleBackup, TargetJob
from certfleet.jobs.store import JobStore, current_store
from certfleet.models.orm import DeploymentStatus, StepState
from certfleet.pki.parse import serial_hex
from certfleet.settings import get_settings
from certfleet.tasks.build import build_handler, build_transport


@dataclass
class _InFlight:
    """What this process changed for one deployment: the fallback when the journal cannot be read."""

    handler: ServerHandler
    backups: list[Backup] = field(default_factory=list)  # newest last
    undos: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (action, undo data), newest last
    reloaded: bool = False
    shared_key: tuple[str, int, str] | None = None  # (flow run, server, serial) once its files stay in place


_in_flight: dict[int, _InFlight] = {}
_in_flight_lock = threading.Lock()
# Files a finished deployment of this flow run replaced, per (flow run, server id, serial): path -> deployment id.
# Targets of one certificate that share files on a server (one server block listening on two ports) are deployed
# one after the other in one run: the second must not back up (its "backup" would be the first one's new file),
# write or reload again; it only proves its port serves the certificate.
_replaced_in_run: dict[tuple[str, int, str], dict[str, int]] = {}


def served_serial(job: TargetJob) -> str | None:
    """The serial the target serves now (the rollback's proof), or None when nothing answers there."""
    try:
        chain = fetch_served_chain(job.server.host, job.port, server_name=job.server_name, timeout=5.0)
    except ProbeError:
        return None  # nothing listening yet: a first deployment
    return serial_hex(chain[0].serial_number)


@task(cache_policy=NO_CACHE, task_run_name="start-deployment-cert-{certificate_id}-target-{target_id}")
def start_deployment(certificate_id: int, target_id: int) -> int:
    store = current_store()
    return open_for_job(store, store.target_job(certificate_id, target_id), certificate_id, target_id)


def open_for_job(store: JobStore, job: TargetJob, certificate_id: int, target_id: int) -> int:
    """The deployment row, with the serial the target serves before it (the rollback's proof) and the flow run."""
    return store.open_deployment(
        certificate_id, target_id, served_serial(job), str(flow_run.id) if flow_run.id else None
    )


@task(cache_policy=NO_CACHE, task_run_name="install-deployment-{deployment_id}")
def install_on_target(deployment_id: int) -> None:
    """No retries here: a half-done install is undone by `restore_target`, never repeated blindly."""
    store = current_store()
    job = store.deployment_job(deployment_id)
    handler = build_handler(job, store)
    bundle = store.bundle(deployment_id)
    run = flow_run.root_flow_run_id if flow_run.id else None  # deploy-certificate's, above its per-target runs
    shared_key = (str(run), job.server.server_id, job.serial_number or "") if run else None
    written_before = _replaced_in_run.get(shared_key, {}) if shared_key else {}
    if install_files(store, deployment_id, handler, bundle, shared_key=shared_key, written_before=written_before):
        _run_step(store, deployment_id, handler, CONFIG_TEST)
        _run_step(store, deployment_id, handler, RELOAD)


def install_files(
    store: JobStore,
    deployment_id: int,
    handler: ServerHandler,
    bundle: CertificateBundle,
    *,
    shared_key: tuple[str, int, str] | None = None,
    written_before: dict[str, int] | None = None,
) -> bool:
    """Journal, back up and replace the deployment's files (and apply its other changes), without testing or
    reloading the server. Returns False when every file was already in place (another target of the run wrote it
    and reloaded the server): then only the proof is left."""
    written_before = written_before or {}
    with _in_flight_lock:
        _in_flight[deployment_id] = _InFlight(handler, shared_key=shared_key)
    writes = handler.plan(bundle)
    # A change that is no file reads what it will replace first: a refusal there (an unknown IIS site, no binding
    # on the port) comes before anything on the server changes.
    changes = [(change, change.measure()) for change in handler.changes(bundle)]
    for write in writes:
        if write.path in written_before:
            step_id = store.journal(deployment_id, SHARED_FILE, path=write.path)
            store.update_step(step_id, state=StepState.DONE, detail=f"deployment {written_before[write.path]}")
    fresh = [w for w in writes if w.path not in written_before]
    if writes and not fresh:
        return False  # every file is in place and the server was reloaded with it: only the proof is left
    for write in fresh:
        backup_path = f"{write.path}.certfleet-backup-{deployment_id}"
        step_id = store.journal(deployment_id, REPLACE_FILE, path=write.path, backup_path=backup_path)
        backup = handler.snapshot(write.path, backup_path)
        _in_flight[deployment_id].backups.append(backup)
        store.update_step(step_id, existed_before=backup.existed)
        handler.install(write)
        store.update_step(step_id, state=StepState.DONE)
    for change, undo in changes:
        step_id = store.journal(deployment_id, change.action, path=change.subject, undo=undo)
        _in_flight[deployment_id].undos.append((change.action, undo))
        change.apply(undo)
        store.update_step(step_id, state=StepState.DONE)
    return True


@task(cache_policy=NO_CACHE, task_run_name="verify-deployment-{deployment_id}")
def verify_served(deployment_id: int) -> None:
    prove_served(current_store().deployment_job(deployment_id))


def prove_served(job: TargetJob) -> None:
    """A TLS handshake (with SNI) must see the new serial; a reload takes a moment, so poll briefly."""
    try:
        wait_for_serial(
            job.server.host,
            job.port,
            server_name=job.server_name,
            expected_serial=int(job.serial_number or "0", 16),
            timeout=get_settings().verify_timeout_s,
            issuer_pem=job.issuer_pem,  # the right serial from another issuer is not our certificate
            expected_sha256=job.leaf_sha256,
        )
    except ProbeError as exc:
        raise PermanentConnectorError(f"the new certificate is not served: {exc}") from exc


@task(cache_policy=NO_CACHE, task_run_name="finish-deployment-{deployment_id}")
def finish_deployment(deployment_id: int) -> None:
    store = current_store()
    with _in_flight_lock:
        work = _in_flight.pop(deployment_id, None)
    if work is not None and work.shared_key is not None:  # proven: what it wrote stays for the run's other targets
        replaced = _replaced_in_run.setdefault(work.shared_key, {})
        for backup in work.backups:
            replaced.setdefault(backup.path, deployment_id)
    _remove_backups(store, deployment_id, store.finish(deployment_id))


def _remove_backups(store: JobStore, deployment_id: int, stale: list[StaleBackup]) -> None:
    """Backup files no rollback needs (private keys among them) do not stay on the server."""
    if not stale:
        return
    try:
        transport = build_transport(store.deployment_job(deployment_id).server, store)
    except ConnectorError as exc:
        get_run_logger().warning("could not reach the server to remove %d backup(s): %s", len(stale), exc)
        return
    store.forget_backups(deployment_id, remove_files(transport, stale))


def remove_files(transport: Transport, stale: list[StaleBackup]) -> list[StaleBackup]:
    """The backups removed from the server; one that cannot be is left for the next deployment to remove."""
    removed = []
    for item in stale:
        try:
            transport.remove(item.path)
        except ConnectorError as exc:  # the outcome stands
            get_run_logger().warning("could not remove the backup %s: %s", item.path, exc)
            continue
        removed.append(item)
    return removed


@task(cache_policy=NO_CACHE, task_run_name="restore-deployment-{deployment_id}")
def restore_target(deployment_id: int, reason: str) -> str:
    """Undo a deployment from its journal: restore files, test, reload, prove the old serial is back.

    Re-runnable: steps already restored are skipped. Returns the deployment's final status.
    """
    store = current_store()
    try:
        plan = store.restore_plan(deployment_id)
    except Exception as exc:
        return _restore_unrecorded(store, deployment_id, reason, exc)
    if plan.refusal:  # refused before anything is touched: the deployment and its certificate keep their status
        raise PermanentConnectorError(plan.refusal)
    job = plan.job
    check_note = ""
    try:
        handler = build_handler(job, store)
        for item in plan.items:  # newest first: an IIS binding is put back before the PFX file under it
            if item.undo is not None:
                handler.undo(item.action, item.undo)
            else:
                handler.restore(item.backup())
            store.update_step(item.step_id, state=StepState.RESTORED)
        _forget(deployment_id)
        if plan.reloaded:
            check_note = check_restored(handler)
            handler.activate()
        if plan.touched:
            prove_previous(job)
    except (ConnectorError, ProbeError) as exc:
        return _close(store, deployment_id, DeploymentStatus.FAILED, f"{reason}; rollback failed: {exc}")
    if not plan.touched:
        return _close(store, deployment_id, DeploymentStatus.FAILED, nothing_changed(reason))
    stale = store.close(deployment_id, DeploymentStatus.ROLLED_BACK, rolled_back(reason, job, check_note))
    _remove_backups(store, deployment_id, stale)  # the files are back: their copies are not needed any more
    return DeploymentStatus.ROLLED_BACK.value


def check_restored(handler: ServerHandler) -> str:
    """The server's config check after a rollback put its files back; a note when it disagrees.

    The files are back byte for byte, so what the server ran before is what it runs again: a check that disagrees
    with them (a stricter version, a file changed by hand) is reported, not obeyed."""
    try:
        handler.verify()
    except PermanentConnectorError as exc:
        return f" (the configuration check of the restored files failed: {exc})"
    return ""


def prove_previous(job: TargetJob) -> None:
    """The serial the target served before the deployment is served again (when it served one)."""
    if job.previous_serial is not None:
        wait_for_serial(
            job.server.host,
            job.port,
            server_name=job.server_name,
            expected_serial=int(job.previous_serial, 16),
            timeout=get_settings().verify_timeout_s,
        )


def nothing_changed(reason: str) -> str:
    return f"{reason}; nothing on the server was changed"


def rolled_back(reason: str, job: TargetJob, check_note: str) -> str:
    served = f"serial {job.previous_serial} is served again" if job.previous_serial else "the previous files are back"
    return f"{reason}; rolled back, {served}{check_note}"


def _restore_unrecorded(store: JobStore, deployment_id: int, reason: str, exc: Exception) -> str:
    """The journal cannot be read (e.g. the bot's token was revoked): undo what this process changed, then fail.

    The run fails with the store's refusal, so the operator sees why; the deployment row stays Running
    (interrupted) until `rollback-deployment` or the next deployment's check looks at it again.
    """
    with _in_flight_lock:
        work = _in_flight.pop(deployment_id, None)
    undone = "nothing had been changed"
    if work is not None and (work.backups or work.undos):
        try:
            for action, data in reversed(work.undos):  # made after the files: undone before them
                work.handler.undo(action, data)
            for backup in reversed(work.backups):
                work.handler.restore(backup)
            if work.reloaded:
                work.handler.verify()
                work.handler.activate()
            undone = f"the {len(work.backups)} file(s) this run replaced were put back"
            if work.undos:
                undone += f" and its {len(work.undos)} other change(s) undone"
        except ConnectorError as undo_exc:
            undone = f"putting the files back failed too: {undo_exc}"
    raise PermanentConnectorError(
        f"{reason}; the journal of deployment {deployment_id} cannot be reached ({exc}); {undone}"
    ) from exc


def _close(store: JobStore, deployment_id: int, status: DeploymentStatus, reason: str) -> str:
    _remove_backups(store, deployment_id, store.close(deployment_id, status, reason))
    return status.value


def _forget(deployment_id: int) -> None:
    with _in_flight_lock:
        _in_flight.pop(deployment_id, None)


def note_in_flight(deployment_id: int, handler: ServerHandler, backup: Backup | None = None) -> None:
    """What this process is changing for a deployment (and a backup it took): undone from memory when the
    journal cannot be read (`restore_target`)."""
    with _in_flight_lock:
        work = _in_flight.setdefault(deployment_id, _InFlight(handler))
        if backup is not None:
            work.backups.append(backup)


def forget_in_flight(deployment_ids: list[int]) -> None:
    """Deployments finished: nothing of theirs is left for this process to undo."""
    with _in_flight_lock:
        for deployment_id in deployment_ids:
            _in_flight.pop(deployment_id, None)


def mark_reloaded(deployment_id: int) -> None:
    """From now on an undo by this process (journal unreachable) must reload the server too."""
    with _in_flight_lock:
        _in_flight[deployment_id].reloaded = True


def _run_step(store: JobStore, deployment_id: int, handler: ServerHandler, action: str) -> None:
    step_id = store.journal(deployment_id, action)
    if action == RELOAD:
        mark_reloaded(deployment_id)
    try:
        handler.verify() if action == CONFIG_TEST else handler.activate()
    except ConnectorError as exc:
        store.update_step(step_id, state=StepState.FAILED, detail=str(exc))
        raise
    store.update_step(step_id, state=StepState.DONE)
