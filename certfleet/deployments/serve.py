"""Register certfleet's deployments in Prefect: every flow on its work pool (see `certfleet.deployments.names`).

`certfleet up` registers them and runs the workers; `prefect deploy --all` with prefect.yaml registers the same
deployments (same names, pools and schedules), so either can be used and neither undoes the other.
"""

from __future__ import annotations

import contextlib
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentUpdate, WorkPoolCreate
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectAlreadyExists
from prefect.types.entrypoint import EntrypointType

from certfleet.deployments.automations import ensure_failure_automation
from certfleet.deployments.names import (
    BOT_POOL,
    CENTRAL,
    CENTRAL_POOL,
    CENTRAL_QUEUE,
    DESCRIPTIONS,
    ON_BOTS,
    PULL_STEPS,
    SCHEDULES,
    pool_of,
)
from certfleet.flows.bots import check_bots
from certfleet.flows.deployment import deploy_certificate
from certfleet.flows.discovery import discover_endpoints, discover_fleet, discover_server_files
from certfleet.flows.issuance import issue_certificate
from certfleet.flows.notifications import check_notifications
from certfleet.flows.provisioning import provision_certificate
from certfleet.flows.renewal import renew_expiring
from certfleet.flows.revocation import revoke_certificate
from certfleet.flows.rollback import rollback_deployment
from certfleet.flows.rotation import rotate_batch
from certfleet.flows.rotation_bot import rotate_on_bot
from certfleet.flows.servers import check_server
from certfleet.flows.smime import smime_rollout, sync_directory
from certfleet.flows.smime_revocation import revoke_smime_user

FLOWS: tuple[Flow[..., Any], ...] = (
    issue_certificate,
    deploy_certificate,
    provision_certificate,
    rollback_deployment,
    renew_expiring,
    discover_endpoints,
    discover_server_files,
    discover_fleet,
    check_server,
    check_bots,
    revoke_certificate,
    sync_directory,
    smime_rollout,
    revoke_smime_user,
    rotate_batch,
    rotate_on_bot,
    check_notifications,
)


def runner_deployments(local_bot_queue: str) -> list[RunnerDeployment]:
    """Bot-pool deployments default to the central host's bot queue: a run started without a route runs here."""
    deployments = []
    for f in FLOWS:
        on_bots = pool_of(f.name) == BOT_POOL
        deployment = f.to_deployment(
            name=ON_BOTS if on_bots else CENTRAL,
            description=DESCRIPTIONS[f.name],
            tags=["certfleet"],
            cron=SCHEDULES.get(f.name),
            work_pool_name=BOT_POOL if on_bots else CENTRAL_POOL,
            work_queue_name=local_bot_queue if on_bots else CENTRAL_QUEUE,
            entrypoint_type=EntrypointType.MODULE_PATH,  # imported from the installed package: no code to pull
        )
        assert isinstance(deployment, RunnerDeployment)  # sync call, so not a coroutine
        deployments.append(deployment)
    return deployments


def ensure_pools() -> None:
    """The two process work pools, created once (a pool that exists is left as the operator set it)."""
    with get_client(sync_client=True) as client:
        for name, what in ((CENTRAL_POOL, "central host"), (BOT_POOL, "bots, one queue per bot")):
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_work_pool(
                    WorkPoolCreate(name=name, type="process", description=f"certfleet: flows of the {what}")
                )


def register(deployments: list[RunnerDeployment]) -> None:
    """Create or update the deployments in the Prefect API, so runs can be started before any worker polls."""
    ensure_pools()
    ids: dict[str, UUID] = {}
    with get_client(sync_client=True) as client:
        for deployment in deployments:
            deployment_id = deployment.apply()
            assert isinstance(deployment_id, UUID)  # sync call, so not a coroutine
            # Without a pull step a worker copies the registering process's working directory into every
            # flow run's workspace (a whole checkout, .venv included). The code is the installed package.
            client.update_deployment(deployment_id, DeploymentUpdate(pull_steps=PULL_STEPS))
            ids[str(deployment.flow_name)] = deployment_id
    if "check-notifications" in ids:  # a failed certificate run is notified at once (see deployments.automations)
        ensure_failure_automation(ids["check-notifications"])
