"""Deploying a group of certificates to one server: one config test and one reload for the group.

rotate-batch puts many certificates on one server. Deployed one by one, each pays the server's config test and
reload (two process starts, and a test that reads every site of the server) and several Prefect task runs. Here a
group of certificates, each with its one target on the server, is deployed in one task: every deployment is
opened and journalled as deploy-certificate's are (its files backed up and replaced, each step recorded before it
runs), then the server is tested once and reloaded once (each deployment journals the shared config-test and
reload steps, so `rollback-deployment` of any one of them stays exact), then each certificate is proven served by
its own TLS handshake and finished.

When the server's config test fails for the group, nothing was reloaded: every file of the group is put back and
the certificates are handed back to be deployed one by one, so the one that breaks the test fails on its own.
When the reload fails, the group is rolled back and each certificate fails with the reason. A certificate not
proven served is rolled back alone. Only server kinds whose test and reload concern the whole server (PEM files
with commands, nginx, Apache over SSH or locally) are grouped; others, and certificates with several targets or
a target elsewhere, are handed back for the one-by-one path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from certfleet.connectors.base import ServerHandler
from certfleet.connectors.errors import ConnectorError
from certfleet.connectors.servers.apache import ApacheHandler
from certfleet.connectors.servers.nginx import NginxHandler
from certfleet.connectors.servers.pem_files import PemFilesTarget
from certfleet.jobs.db_store import CONFIG_TEST, RELOAD
from certfleet.jobs.store import JobStore, current_store
from certfleet.models.orm import StepState
from certfleet.tasks.build import build_handler
from certfleet.tasks.deployment import (
    finish_deployment,
    install_files,
    mark_reloaded,
    open_for_job,
    restore_target,
    verify_served,
)

# Kinds whose config test checks the whole server and whose reload is a reload (not a restart, not over SMB):
# exact types, so a Windows Apache (restarted through the service manager) is not one of them.
GROUPED_KINDS: tuple[type, ...] = (PemFilesTarget, NginxHandler, ApacheHandler)


@dataclass
class GroupOutcome:
    """Per certificate: its deployment when Deployed, its reason when failed, or handed back (`alone`)."""

    deployed: dict[int, int] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    alone: list[int] = field(default_factory=list)


@dataclass
class _Opened:
    certificate_id: int
    target_id: int
    deployment_id: int
    handler: ServerHandler


def _restore(deployment_id: int, reason: str) -> str:
    try:
        return restore_target.fn(deployment_id, reason)
    except Exception as exc:  # refused or unreachable: the reason is the outcome
        return f"not rolled back: {exc}"


def _open(store: JobStore, server_id: int, certificate_id: int, out: GroupOutcome) -> _Opened | None:
    """The certificate's deployment opened and its files installed; None when it is handed back or failed."""
    targets = store.certificate_targets(certificate_id)
    if len(targets) != 1:
        out.alone.append(certificate_id)
        return None
    target_id = targets[0]
    try:
        job = store.target_job(certificate_id, target_id)
        handler = build_handler(job, store) if job.server.server_id == server_id else None
    except ConnectorError:
        handler = None  # the one-by-one path reports it as deploy-certificate does
    if handler is None or type(handler) not in GROUPED_KINDS:
        out.alone.append(certificate_id)
        return None
    try:
        deployment_id = open_for_job(store, job, certificate_id, target_id)
    except Exception as exc:  # cannot start (not issued, a deployment still running there): said on the certificate
        out.failed[certificate_id] = f"target {target_id}: {exc}"
        return None
    try:
        install_files(store, deployment_id, handler, store.bundle(deployment_id))
    except Exception as exc:
        out.failed[certificate_id] = f"target {target_id}: {_restore(deployment_id, repr(exc))}"
        return None
    return _Opened(certificate_id, target_id, deployment_id, handler)


def _check(handlers: list[ServerHandler]) -> None:
    """Each target's own check of what is now installed, then the server's config test once."""
    for handler in handlers[:-1]:
        if isinstance(handler, NginxHandler | ApacheHandler):
            handler.check_installed()
    handlers[-1].verify()


def _shared_step(store: JobStore, group: list[_Opened], action: str) -> None:
    """One config test or reload for the group, journalled on each deployment before it runs."""
    steps = [store.journal(o.deployment_id, action) for o in group]
    if action == RELOAD:
        for o in group:
            mark_reloaded(o.deployment_id)
    try:
        if action == CONFIG_TEST:
            _check([o.handler for o in group])
        else:
            group[-1].handler.activate()
    except ConnectorError as exc:
        for step_id in steps:
            store.update_step(step_id, state=StepState.FAILED, detail=f"{exc} (for a group of {len(group)})")
        raise
    for step_id in steps:
        store.update_step(step_id, state=StepState.DONE, detail=f"once for a group of {len(group)}")


@task(cache_policy=NO_CACHE, task_run_name="deploy-group-server-{server_id}-from-cert-{first_certificate_id}")
def deploy_group(server_id: int, first_certificate_id: int, certificate_ids: list[int]) -> GroupOutcome:
    """Deploy the (issued) certificates to their targets on the server with one config test and one reload."""
    store = current_store()
    out = GroupOutcome()
    group = [o for c in certificate_ids if (o := _open(store, server_id, c, out)) is not None]
    if not group:
        return out
    try:
        _shared_step(store, group, CONFIG_TEST)
    except ConnectorError as exc:
        get_run_logger().warning("config test failed for a group of %d: deploying each alone: %s", len(group), exc)
        for o in group:
            _restore(o.deployment_id, f"the config test of a group of {len(group)} failed ({exc}): deployed alone")
            out.alone.append(o.certificate_id)
        return out
    try:
        _shared_step(store, group, RELOAD)
    except ConnectorError as exc:
        for o in group:
            status = _restore(o.deployment_id, str(exc))
            out.failed[o.certificate_id] = f"target {o.target_id}: reload of the group failed ({exc}): {status}"
        return out
    for o in group:
        try:
            verify_served.fn(o.deployment_id)
        except ConnectorError as exc:
            status = _restore(o.deployment_id, str(exc))
            out.failed[o.certificate_id] = f"target {o.target_id}: not proven served ({exc}): {status}"
            continue
        finish_deployment.fn(o.deployment_id)
        out.deployed[o.certificate_id] = o.deployment_id
    return out
