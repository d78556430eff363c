"""Rolling back a stopped rotate-batch's deployments a server at a time: one config check and one reload per group.

Rolled back one by one, each deployment of a stopped batch would test and reload its server again (a thousand
reloads for a thousand certificates). Here the deployments of one server (of the kinds `deploy_group` groups) are
rolled back together, in the steps of `restore_target`: every file put back from its backup (newest deployment
first) and its step marked restored, then the server's config check once (a disagreement is noted, not obeyed) and
one reload, then each target proven to serve its previous serial again and each deployment closed. A deployment
that cannot be rolled back (refused, its files not restorable) is reported with its reason and does not stop the
others. Deployments of other kinds, or with journalled changes besides files, go through `restore_target` alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from certfleet.connectors.base import ServerHandler
from certfleet.connectors.errors import ConnectorError
from certfleet.connectors.servers.probe import ProbeError
from certfleet.jobs.models import RestorePlan
from certfleet.jobs.store import GroupStore, current_group_store
from certfleet.models.orm import DeploymentStatus, StepState
from certfleet.tasks.build import build_handler, build_transport
from certfleet.tasks.deploy_group import GROUP, GROUPED_KINDS, restore_alone
from certfleet.tasks.deployment import (
    check_restored,
    forget_in_flight,
    nothing_changed,
    prove_previous,
    remove_files,
    rolled_back,
)


@dataclass
class _Member:
    deployment_id: int
    plan: RestorePlan
    handler: ServerHandler


def roll_back_deployments(deployment_ids: list[int], reason: str) -> dict[int, str]:
    """The deployments (newest first) rolled back, grouped per server; per deployment its outcome: a status value
    (Rolled Back, Failed) or why it was not rolled back."""
    servers = current_group_store().deployment_servers(deployment_ids)
    per_server: dict[int, list[int]] = {}
    for deployment_id in deployment_ids:
        per_server.setdefault(servers.get(deployment_id, 0), []).append(deployment_id)
    outcomes: dict[int, str] = {}
    for server_id, ids in per_server.items():
        for first in range(0, len(ids), GROUP):
            part = ids[first : first + GROUP]
            outcomes.update(restore_group(server_id, part[0], part, reason) if len(part) > 1 else {})
            for deployment_id in part:
                if deployment_id not in outcomes:
                    outcomes[deployment_id] = restore_alone(deployment_id, reason)
    return outcomes


def _members(store: GroupStore, deployment_ids: list[int], outcomes: dict[int, str]) -> list[_Member]:
    """The deployments that can be rolled back together; refusals are outcomes, the others are left for alone."""
    plans = store.restore_plans(deployment_ids)
    members = []
    for deployment_id in deployment_ids:
        plan = plans.get(deployment_id)
        if plan is None:
            continue
        if plan.refusal:  # refused before anything is touched: the deployment keeps its status
            outcomes[deployment_id] = f"deployment {deployment_id} not rolled back: {plan.refusal}"
            continue
        if any(item.undo is not None for item in plan.items):
            continue
        try:
            handler = build_handler(plan.job, store)
        except ConnectorError:
            continue  # restore_target reports it
        if type(handler) in GROUPED_KINDS:
            members.append(_Member(deployment_id, plan, handler))
    return members


@task(cache_policy=NO_CACHE, task_run_name="restore-group-server-{server_id}-from-deployment-{first_deployment_id}")
def restore_group(server_id: int, first_deployment_id: int, deployment_ids: list[int], reason: str) -> dict[int, str]:
    """Roll back one server's deployments with one config check and one reload; per deployment rolled back (or
    refused) here, its outcome. Deployments left out of the result are for `restore_target`."""
    store = current_group_store()
    outcomes: dict[int, str] = {}
    closing: dict[int, tuple[DeploymentStatus, str]] = {}
    members = _members(store, deployment_ids, outcomes)
    restored: list[int] = []
    for m in members:
        try:
            for item in m.plan.items:
                m.handler.restore(item.backup())
                restored.append(item.step_id)
        except ConnectorError as exc:
            closing[m.deployment_id] = (DeploymentStatus.FAILED, f"{reason}; rollback failed: {exc}")
    store.update_steps(restored, state=StepState.RESTORED)
    forget_in_flight([m.deployment_id for m in members])
    back = [m for m in members if m.deployment_id not in closing]
    reloaded = [m for m in back if m.plan.reloaded]
    check_note = ""
    if reloaded:
        try:
            check_note = check_restored(reloaded[-1].handler)
            reloaded[-1].handler.activate()
        except ConnectorError as exc:
            for m in reloaded:
                closing[m.deployment_id] = (DeploymentStatus.FAILED, f"{reason}; rollback failed: {exc}")
    for m in back:
        if m.deployment_id in closing:
            continue
        if not m.plan.touched:
            closing[m.deployment_id] = (DeploymentStatus.FAILED, nothing_changed(reason))
            continue
        try:
            prove_previous(m.plan.job)
        except (ConnectorError, ProbeError) as exc:
            closing[m.deployment_id] = (DeploymentStatus.FAILED, f"{reason}; rollback failed: {exc}")
            continue
        note = check_note if m.plan.reloaded else ""
        closing[m.deployment_id] = (DeploymentStatus.ROLLED_BACK, rolled_back(reason, m.plan.job, note))
    stale = store.close_group(closing) if closing else {}
    outcomes.update({deployment_id: status.value for deployment_id, (status, _) in closing.items()})
    if any(stale.values()):  # the files are back: their copies are not needed any more
        try:
            transport = build_transport(members[0].plan.job.server, store)
            store.forget_group({d: remove_files(transport, items) for d, items in stale.items() if items})
        except ConnectorError as exc:
            get_run_logger().warning("could not reach the server to remove the rolled-back backups: %s", exc)
    return outcomes
