"""rollback-deployment: undo a deployment from its journal. Re-runnable, from any worker."""

from __future__ import annotations

from prefect import flow

from certfleet.models.orm import DeploymentStatus
from certfleet.tasks.build import release_connections
from certfleet.tasks.deployment import restore_target


class RollbackFailed(RuntimeError):
    """The journal could not be undone, or the previous certificate is not served again."""


@flow(name="rollback-deployment", flow_run_name="rollback-deployment-{deployment_id}")
def rollback_deployment(deployment_id: int, reason: str = "rolled back on request") -> str:
    """Restores the files the deployment replaced, reloads, and proves the previous certificate is served."""
    try:
        status = restore_target(deployment_id, reason)
    finally:
        release_connections()  # the SSH connection of this run
    if status != DeploymentStatus.ROLLED_BACK.value:
        raise RollbackFailed(f"deployment {deployment_id} could not be rolled back; see its reason")
    return status
