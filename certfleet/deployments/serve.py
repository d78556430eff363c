"""Serve certfleet's flows from this process, so the Prefect UI (and `run_deployment`) can start them."""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from certfleet.flows.bots import check_bots
from certfleet.flows.deployment import deploy_certificate
from certfleet.flows.discovery import discover_endpoints, discover_server_files
from certfleet.flows.issuance import issue_certificate
from certfleet.flows.provisioning import provision_certificate
from certfleet.flows.renewal import renew_expiring
from certfleet.flows.rollback import rollback_deployment
from certfleet.flows.servers import check_server

DEPLOYMENT = "certfleet"  # each flow is served as "<flow name>/certfleet"
FLOWS = (
    issue_certificate,
    deploy_certificate,
    provision_certificate,
    rollback_deployment,
    renew_expiring,
    discover_endpoints,
    discover_server_files,
    check_server,
    check_bots,
)
# Flow name -> cron schedule (UTC). prefect.yaml declares the same schedules for the scaled-out setup.
SCHEDULES = {
    "renew-expiring": "17 * * * *",
    "discover-endpoints": "41 2 * * *",
    "discover-server-files": "53 2 * * *",
    "check-bots": "*/5 * * * *",
}


def runner_deployments() -> list[RunnerDeployment]:
    deployments = []
    for f in FLOWS:
        summary = (f.description or f.name).strip().splitlines()[0]
        deployment = f.to_deployment(
            name=DEPLOYMENT, description=summary, tags=["certfleet"], cron=SCHEDULES.get(f.name)
        )
        assert isinstance(deployment, RunnerDeployment)  # sync call, so not a coroutine
        deployments.append(deployment)
    return deployments


def register(deployments: list[RunnerDeployment]) -> None:
    """Create or update the deployments in the Prefect API, so runs can be started before serving begins."""
    for deployment in deployments:
        deployment.apply()


def serve_flows(deployments: list[RunnerDeployment], limit: int = 8) -> None:
    """Blocks until interrupted. `limit` bounds concurrent runs on this machine (2 cores)."""
    serve(*deployments, limit=limit, print_starting_message=False, pause_on_shutdown=False)
