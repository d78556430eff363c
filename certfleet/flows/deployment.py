"""deploy-certificate: install a certificate on each of its targets, prove it is served, or roll back."""

from __future__ import annotations

from prefect import flow, get_run_logger

from certfleet.connectors.errors import ConnectorError
from certfleet.jobs.store import current_store
from certfleet.tasks.build import release_connections
from certfleet.tasks.deployment import (
    finish_deployment,
    install_on_target,
    restore_target,
    start_deployment,
    verify_served,
)


class DeploymentFailed(RuntimeError):
    """At least one target did not end up serving the new certificate."""


@flow(name="deploy-to-target", flow_run_name="deploy-cert-{certificate_id}-target-{target_id}")
def deploy_to_target(certificate_id: int, target_id: int) -> str:
    """One target, all or nothing: on any failure the journal restores what was changed."""
    return deploy_steps(certificate_id, target_id)[0]


def deploy_steps(certificate_id: int, target_id: int) -> tuple[str, int]:
    """The steps of one target's deployment (in a flow or a task): returns its final status and its id."""
    deployment_id = start_deployment(certificate_id, target_id)
    try:
        install_on_target(deployment_id)
        verify_served(deployment_id)
    except Exception as exc:  # whatever went wrong, the server must not keep an unproven change
        get_run_logger().warning("deployment %s failed, rolling back: %s", deployment_id, exc)
        status = restore_target(deployment_id, str(exc) if isinstance(exc, ConnectorError) else repr(exc))
        if not isinstance(exc, ConnectorError):
            raise
        return status, deployment_id
    finish_deployment(deployment_id)
    return "Deployed", deployment_id


@flow(name="deploy-certificate", flow_run_name="deploy-certificate-{certificate_id}")
def deploy_certificate(certificate_id: int, target_ids: list[int] | None = None) -> dict[int, str]:
    """Deploys to the given targets (all of the certificate's when none are named), one after another, each in a
    deploy-to-target run of its own; a single target's tasks run in this flow run itself.

    Fails when any target did not end Deployed, so the Prefect UI and the dashboard show it red.
    """
    chosen = current_store().certificate_targets(certificate_id) if target_ids is None else target_ids
    if not chosen:
        raise DeploymentFailed(f"certificate {certificate_id} has no deployment targets here")
    try:  # one SSH connection per server serves all targets of this run, then is closed
        if len(chosen) == 1:  # one target: its steps are this run's own tasks, no per-target flow run to start
            outcome = {chosen[0]: deploy_steps(certificate_id, chosen[0])[0]}
        else:
            outcome = {target_id: deploy_to_target(certificate_id, target_id) for target_id in chosen}
    finally:
        release_connections()
    failed = {t: o for t, o in outcome.items() if o != "Deployed"}
    if failed:
        raise DeploymentFailed(
            f"{len(failed)} of {len(outcome)} targets not deployed: "
            + ", ".join(f"target {t}: {o}" for t, o in failed.items())
        )
    return outcome
