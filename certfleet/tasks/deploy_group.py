"""Deploying a group of certificates to one server: one config test and one reload for the group.

rotate-batch puts many certificates on one server. Deployed one by one, each pays the server's config test and
reload (two process starts, and a test that reads every site of the server) and several Prefect task runs. Here a
group of certificates, each with its one target on the server, is deployed in one task: every deployment is
opened and journalled as deploy-certificate's are (its files backed up and replaced, each step recorded before it
runs), then the server is tested once and reloaded once (each deployment journals the shared config-test and
reload steps, so `rollback-deployment` of any one of them stays exact), then each certificate is proven served by
its own TLS handshake and finished. Each of these steps is one transaction for the whole group
(certfleet.jobs.db_group), in the order one deployment's would be.

When the server's config test fails for the group, nothing was reloaded: every file of the group is put back and
the certificates are handed back to be deployed one by one, so the one that breaks the test fails on its own.
When the reload fails, the group is rolled back and each certificate fails with the reason. A certificate not
proven served is rolled back alone. Only server kinds whose test and reload concern the whole server (PEM files
with commands, nginx, Apache over SSH or locally) are grouped; others, and certificates with several targets or
a target elsewhere, are handed back for the one-by-one path.

`deploy_groups` does the same for the groups of several (small) servers in one task: each step is still one
transaction for all of them, each server is still tested and reloaded once on its own, and a server whose test or
reload fails concerns only its own certificates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from certfleet.connectors.base import FileWrite, ServerHandler
from certfleet.connectors.errors import ConnectorError
from certfleet.connectors.servers.apache import ApacheHandler
from certfleet.connectors.servers.nginx import NginxHandler
from certfleet.connectors.servers.pem_files import PemFilesTarget
from certfleet.jobs.db_store import CONFIG_TEST, RELOAD, REPLACE_FILE
from certfleet.jobs.models import JournalStep, Opened, StaleBackup, TargetJob
from certfleet.jobs.store import GroupStore, current_group_store
from certfleet.models.orm import StepState
from certfleet.tasks.build import build_handler, build_transport
from certfleet.tasks.deployment import (
    forget_in_flight,
    mark_reloaded,
    note_in_flight,
    prove_served,
    remove_files,
    restore_target,
    served_serial,
)

# Certificates of one server issued and deployed together: one config test and one reload of the server per group.
# A stop of rotate-batch (canary, failure budget) takes effect between groups.
GROUP = 25
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
class _Member:
    """A certificate of the group with its deployment open: what it writes, the steps journalled for it."""

    certificate_id: int
    opened: Opened
    handler: ServerHandler
    writes: list[FileWrite]
    steps: list[int] = field(default_factory=list)  # its replace-file steps, in the order of `writes`
    existed: list[bool] = field(default_factory=list)

    @property
    def deployment_id(self) -> int:
        return self.opened.job.deployment_id or 0

    @property
    def target_id(self) -> int:
        return self.opened.job.target_id

    @property
    def server_id(self) -> int:
        return self.opened.job.server.server_id


def restore_alone(deployment_id: int, reason: str) -> str:
    """One deployment rolled back on its own; a refusal (e.g. a newer deployment replaced it) or an unreachable
    server is an outcome, not a crash, so the others are still rolled back."""
    try:
        return restore_target.fn(deployment_id, reason)
    except Exception as exc:
        return f"deployment {deployment_id} not rolled back: {exc}"


def _handlers(
    store: GroupStore, server_id: int, certificate_ids: list[int], out: GroupOutcome
) -> dict[int, tuple[TargetJob, ServerHandler]]:
    """The certificates that can be grouped (one target, on this server, of a grouped kind), with their handlers;
    the others are handed back."""
    jobs = store.single_targets(server_id, certificate_ids)
    handlers: dict[int, tuple[TargetJob, ServerHandler]] = {}
    for certificate_id in certificate_ids:
        job = jobs.get(certificate_id)
        try:
            handler = build_handler(job, store) if job is not None else None
        except ConnectorError:
            handler = None  # the one-by-one path reports it as deploy-certificate does
        if job is None or handler is None or type(handler) not in GROUPED_KINDS:
            out.alone.append(certificate_id)
        else:
            handlers[certificate_id] = (job, handler)
    return handlers


def _open(store: GroupStore, groups: list[tuple[int, list[int]]], out: GroupOutcome) -> list[_Member]:
    """The groups' deployments opened (one transaction), each with the serial its target serves before it (the
    rollback's proof) and its planned files; a certificate that cannot start is failed, said on it."""
    handlers: dict[int, tuple[TargetJob, ServerHandler]] = {}
    for server_id, certificate_ids in groups:
        handlers.update(_handlers(store, server_id, certificate_ids, out))
    served = {c: (job, served_serial(job)) for c, (job, _) in handlers.items()}
    opened = store.open_group(served, str(flow_run.id) if flow_run.id else None)
    members = []
    for certificate_id, result in opened.items():
        if isinstance(result, str):
            out.failed[certificate_id] = f"target {served[certificate_id][0].target_id}: {result}"
            continue
        handler, deployment_id = handlers[certificate_id][1], result.job.deployment_id or 0
        note_in_flight(deployment_id, handler)
        try:  # refusals of the handler (a key that is not the certificate's, no such site) touch nothing
            writes = handler.plan(result.bundle)
        except Exception as exc:
            status = restore_alone(deployment_id, repr(exc))
            out.failed[certificate_id] = f"target {result.job.target_id}: {exc}: {status}"
            continue
        members.append(_Member(certificate_id, result, handler, writes))
    return members


def _install(store: GroupStore, members: list[_Member], out: GroupOutcome) -> list[_Member]:
    """Every file of the group journalled, then backed up, then replaced: each of the three recorded for the whole
    group in one transaction before the next begins. A certificate whose backup or install fails is rolled back
    alone; returns the others."""
    steps = [
        JournalStep(
            deployment_id=m.deployment_id,
            action=REPLACE_FILE,
            path=w.path,
            backup_path=f"{w.path}.certfleet-backup-{m.deployment_id}",
        )
        for m in members
        for w in m.writes
    ]
    ids = iter(store.journal_steps(steps))
    for m in members:
        m.steps = [next(ids) for _ in m.writes]
    failed: dict[int, Exception] = {}
    for m in members:
        try:
            for w in m.writes:
                backup = m.handler.snapshot(w.path, f"{w.path}.certfleet-backup-{m.deployment_id}")
                note_in_flight(m.deployment_id, m.handler, backup)
                m.existed.append(backup.existed)
        except Exception as exc:
            failed[m.deployment_id] = exc
    backed_up = {step: existed for m in members for step, existed in zip(m.steps, m.existed, strict=False)}
    store.update_steps(list(backed_up), existed_before=backed_up)
    installed: list[int] = []
    for m in members:
        if m.deployment_id in failed:
            continue
        try:
            for w, step in zip(m.writes, m.steps, strict=True):
                m.handler.install(w)
                installed.append(step)
        except Exception as exc:
            failed[m.deployment_id] = exc
    store.update_steps(installed, state=StepState.DONE)
    for m in members:
        if m.deployment_id in failed:
            error = failed[m.deployment_id]
            status = restore_alone(m.deployment_id, repr(error))
            out.failed[m.certificate_id] = f"target {m.target_id}: {error}: {status}"
    return [m for m in members if m.deployment_id not in failed]


def _check(handlers: list[ServerHandler]) -> None:
    """Each target's own check of what is now installed, then the server's config test once."""
    for handler in handlers[:-1]:
        if isinstance(handler, NginxHandler | ApacheHandler):
            handler.check_installed()
    handlers[-1].verify()


def _shared_step(store: GroupStore, servers: dict[int, list[_Member]], action: str) -> dict[int, ConnectorError]:
    """One config test or reload per server for its group, journalled on each deployment (one transaction for all
    the servers) before it runs. Returns the servers where it failed, with the error."""
    journalled = [JournalStep(deployment_id=m.deployment_id, action=action) for g in servers.values() for m in g]
    ids = iter(store.journal_steps(journalled))
    steps = {server_id: [next(ids) for _ in group] for server_id, group in servers.items()}
    if action == RELOAD:
        for group in servers.values():
            for m in group:
                mark_reloaded(m.deployment_id)
    failed: dict[int, ConnectorError] = {}
    for server_id, group in servers.items():
        try:
            if action == CONFIG_TEST:
                _check([m.handler for m in group])
            else:
                group[-1].handler.activate()
        except ConnectorError as exc:
            failed[server_id] = exc
            store.update_steps(steps[server_id], state=StepState.FAILED, detail=f"{exc} (for a group of {len(group)})")
    done: dict[int, list[int]] = {}  # by the size of the group: the detail says it
    for server_id, group in servers.items():
        if server_id not in failed:
            done.setdefault(len(group), []).extend(steps[server_id])
    for size, ids_done in done.items():
        store.update_steps(ids_done, state=StepState.DONE, detail=f"once for a group of {size}")
    return failed


def _finish(store: GroupStore, group: list[_Member], out: GroupOutcome) -> None:
    """Each certificate proven served by its own handshake; the proven ones finished in one transaction, their
    targets' older backups removed (server by server); one not proven is rolled back alone."""
    proven = []
    for m in group:
        try:
            prove_served(m.opened.job)
        except ConnectorError as exc:
            status = restore_alone(m.deployment_id, str(exc))
            out.failed[m.certificate_id] = f"target {m.target_id}: not proven served ({exc}): {status}"
            continue
        proven.append(m)
    if not proven:
        return
    stale = store.finish_group([m.deployment_id for m in proven])
    forget_in_flight([m.deployment_id for m in proven])
    out.deployed.update({m.certificate_id: m.deployment_id for m in proven})
    if not any(stale.values()):
        return
    servers: dict[int, list[_Member]] = {}
    for m in proven:
        if stale.get(m.deployment_id):
            servers.setdefault(m.server_id, []).append(m)
    removed: dict[int, list[StaleBackup]] = {}
    for on_server in servers.values():
        try:  # backups no rollback needs (private keys among them) do not stay on the server
            transport = build_transport(on_server[0].opened.job.server, store)
        except ConnectorError as exc:
            get_run_logger().warning("could not reach the server to remove old backups: %s", exc)
            continue
        removed.update({m.deployment_id: remove_files(transport, stale[m.deployment_id]) for m in on_server})
    if removed:
        store.forget_group(removed)


@task(cache_policy=NO_CACHE, task_run_name="deploy-group-server-{server_id}-from-cert-{first_certificate_id}")
def deploy_group(server_id: int, first_certificate_id: int, certificate_ids: list[int]) -> GroupOutcome:
    """Deploy the (issued) certificates to their targets on the server with one config test and one reload."""
    return _deploy([(server_id, certificate_ids)])


@task(cache_policy=NO_CACHE, task_run_name="deploy-groups-from-cert-{first_certificate_id}")
def deploy_groups(first_certificate_id: int, groups: list[tuple[int, list[int]]]) -> GroupOutcome:
    """Deploy the (issued) certificates of several servers, (server id, certificate ids) each, with one config
    test and one reload per server; each step journalled for all of them in one transaction."""
    return _deploy(groups)


def _deploy(groups: list[tuple[int, list[int]]]) -> GroupOutcome:
    store = current_group_store()
    out = GroupOutcome()
    servers: dict[int, list[_Member]] = {}
    for m in _install(store, _open(store, groups, out), out):
        servers.setdefault(m.server_id, []).append(m)
    for server_id, exc in _shared_step(store, servers, CONFIG_TEST).items():
        group = servers.pop(server_id)
        get_run_logger().warning("config test failed for a group of %d: deploying each alone: %s", len(group), exc)
        for m in group:
            restore_alone(m.deployment_id, f"the config test of a group of {len(group)} failed ({exc}): deployed alone")
            out.alone.append(m.certificate_id)
    if not servers:
        return out
    for server_id, exc in _shared_step(store, servers, RELOAD).items():
        for m in servers.pop(server_id):
            status = restore_alone(m.deployment_id, str(exc))
            out.failed[m.certificate_id] = f"target {m.target_id}: reload of the group failed ({exc}): {status}"
    if servers:
        _finish(store, [m for group in servers.values() for m in group], out)
    return out
