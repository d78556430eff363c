"""Starting flows on a running certfleet through Prefect, never by calling flow functions here.

Deploy and rollback runs go to the queue of the bot that reaches the server (`certfleet.bots.routing`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from certfleet.deployments.api import configured_api_url, prefect_auth_string, use_api
from certfleet.deployments.embedded import Access, api_access, healthy

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

    from certfleet.smime.selection import UserFilter


class NotRunning(RuntimeError):
    """No Prefect API answers where certfleet's runs would go."""


def _connect() -> None:
    url = configured_api_url()
    if not healthy(url):
        raise NotRunning(f"no Prefect API answers at {url}: start certfleet with `certfleet up`")
    auth_string = prefect_auth_string()
    if api_access(url, auth_string) is Access.REFUSED:
        raise NotRunning(
            f"the Prefect API at {url} refuses certfleet's auth string: "
            "set CERTFLEET_PREFECT_AUTH_STRING to the auth string of that server"
        )
    use_api(url, auth_string)


def start_run(flow_name: str, parameters: dict[str, Any], *, wait: bool) -> list[str]:
    """Starts the run(s); returns one line per run: its name and state (final when `wait`)."""
    _connect()
    from certfleet.bots.routing import rollback_route
    from certfleet.deployments.starts import describe, start_flow_run, wait_for_runs
    from certfleet.models.db import session_scope

    if flow_name == "deploy-certificate":
        return start_deploy(parameters["certificate_id"], actor=None, ignore_window=False, wait=wait)
    queue = None
    if flow_name == "rollback-deployment":
        with session_scope() as s:
            queue = rollback_route(s, parameters["deployment_id"]).queue
    runs = [start_flow_run(flow_name, parameters, queue=queue, as_subflow=False)]
    if wait:
        runs = wait_for_runs(runs)
    return [describe(run) for run in runs]


def start_deploy(certificate_id: int, *, actor: str | None, ignore_window: bool, wait: bool) -> list[str]:
    """deploy-certificate runs; one scheduled for a server's maintenance window is listed, not waited for.
    `ignore_window` (with the `actor` for the audit log): now, whatever the windows say."""
    _connect()
    from certfleet.bots.routing import start_deploy_runs, waits_for_window
    from certfleet.deployments.starts import describe, wait_for_runs
    from certfleet.models import repo
    from certfleet.models.db import session_scope
    from certfleet.models.orm import Certificate

    runs = start_deploy_runs(certificate_id, as_subflow=False, ignore_window=ignore_window)
    if ignore_window:
        with session_scope() as s:
            repo.audit(
                s,
                actor=actor or "cli",
                action="deploy-ignoring-maintenance-window",
                obj=repo.get(s, Certificate, certificate_id),
                detail=", ".join(run.name for run in runs),
            )
    later = [run for run in runs if waits_for_window(run)]
    now = [run for run in runs if run not in later]
    lines = [f"{describe(run)} (waits for its server's maintenance window)" for run in later]
    return [describe(run) for run in (wait_for_runs(now) if wait else now)] + lines


def start_revocation(certificate_id: int, reason: str, serial: str | None, *, actor: str, wait: bool) -> list[str]:
    """A revoke-certificate run after the checks the dashboard makes (certfleet.revocation), with an audit event.
    Returns the lines to print: a warning when the certificate is deployed, then the run and its state."""
    from certfleet.models.db import session_scope
    from certfleet.revocation import FLOW, check_revocable, parse_reason, record_start

    flags = parse_reason(reason, "--reason")
    with session_scope() as s:
        revocable = check_revocable(s, certificate_id, serial)
    _connect()
    from certfleet.deployments.starts import describe, start_flow_run, wait_for_runs

    parameters: dict[str, Any] = {"certificate_id": certificate_id, "reason": flags.value}
    if not revocable.current:
        parameters["serial_number"] = revocable.serial_number
    name = f"{FLOW}-{certificate_id}-{flags.value}"  # as the dashboard names it
    run = start_flow_run(FLOW, parameters, flow_run_name=name, as_subflow=False)
    with session_scope() as s:
        record_start(s, revocable, flags, actor, run.name)
    lines = []
    if revocable.served_on:
        where = ", ".join(revocable.served_on)
        lines.append(f"warning: {revocable.common_name} is deployed on {where}; those servers now serve a revoked one")
    return [*lines, describe(wait_for_runs([run])[0] if wait else run)]


def start_rotation(request: dict[str, Any], *, actor: str, wait: bool) -> list[str]:
    """A rotate-batch run after the checks the API makes (certfleet.rotation.service), with an audit event.
    Returns the lines to print: the batch key, then the run and its state (final when `wait`)."""
    from certfleet.models.db import session_scope
    from certfleet.rotation import service

    with session_scope() as s:
        checked, count = service.prepare(s, service.parse_request(request))
    key = checked.batch_key
    assert key is not None  # prepare gives every batch a key
    _connect()
    from certfleet.deployments.starts import describe, start_flow_run, wait_for_runs

    name = f"{service.FLOW}-{key}"  # as the API names it
    run = start_flow_run(service.FLOW, checked.flow_parameters(), flow_run_name=name, as_subflow=False)
    with session_scope() as s:
        service.audit_start(s, key, count, actor, run.name, ignore_windows=checked.ignore_maintenance_windows)
    lines = [f"batch {key}: {count} certificate(s); re-run with --batch-key {key} to continue it if it stops"]
    return [*lines, describe(wait_for_runs([run])[0] if wait else run)]


def start_smime_sync(profile_id: int | None, *, actor: str, wait: bool) -> str:
    """A sync-directory run after the checks the dashboard makes (certfleet.smime.starts), with an audit event."""
    from certfleet.models.db import session_scope
    from certfleet.smime import starts

    with session_scope() as s:
        parameters = starts.sync_parameters(s, profile_id)
    run = _start_one(starts.SYNC_FLOW, parameters)
    with session_scope() as s:
        starts.record_sync_start(s, profile_id, actor, run.name)
    return _describe(run, wait)


def start_smime_rollout(
    user_ids: list[int] | None,
    *,
    actor: str,
    wait: bool,
    ca_connector_id: int | None = None,
    user_filter: UserFilter | None = None,
    delivery: str | None = None,
) -> str:
    """An smime-rollout run after the checks the dashboard makes (certfleet.smime.starts), with an audit event."""
    from certfleet.models.db import session_scope
    from certfleet.smime import starts

    with session_scope() as s:
        parameters = starts.rollout_parameters(s, user_ids, ca_connector_id, user_filter, delivery)
    run = _start_one(starts.ROLLOUT_FLOW, parameters)
    with session_scope() as s:
        starts.record_rollout_start(s, actor, run.name, user_ids, user_filter, delivery)
    return _describe(run, wait)


def start_smime_revocation(user_id: int, reason: str, serial: str | None, *, actor: str, wait: bool) -> str:
    """A revoke-smime-user run after the checks the dashboard makes (certfleet.smime.revocation), with an audit."""
    from certfleet.models.db import session_scope
    from certfleet.smime import revocation

    with session_scope() as s:
        parameters = revocation.flow_parameters(s, user_id, reason, serial)
    run = _start_one(revocation.FLOW, parameters)
    with session_scope() as s:
        revocation.record_start(s, user_id, str(parameters["reason"]), actor, run.name)
    return _describe(run, wait)


def _start_one(flow_name: str, parameters: dict[str, Any]) -> FlowRun:
    _connect()
    from certfleet.deployments.starts import start_flow_run

    return start_flow_run(flow_name, parameters, as_subflow=False)


def _describe(run: FlowRun, wait: bool) -> str:
    from certfleet.deployments.starts import describe, wait_for_runs

    return describe(wait_for_runs([run])[0] if wait else run)
