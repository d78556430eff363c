"""provision-certificate: issue a certificate (here, on the central host), then deploy it on the bots that
reach its servers, and wait for them."""

from __future__ import annotations

from prefect import flow, get_run_logger

from certfleet.bots.routing import start_deploy_runs
from certfleet.deployments.starts import describe, wait_for_runs
from certfleet.flows.deployment import DeploymentFailed
from certfleet.flows.issuance import issue_certificate


@flow(name="provision-certificate", flow_run_name="provision-certificate-{certificate_id}")
def provision_certificate(certificate_id: int) -> list[str]:
    """Issue a certificate on the central host, then deploy it on the bots that reach its servers."""
    issue_certificate(certificate_id)
    runs = wait_for_runs(start_deploy_runs(certificate_id))
    outcome = [describe(run) for run in runs]
    for line in outcome:
        get_run_logger().info("%s", line)
    failed = [
        line for run, line in zip(runs, outcome, strict=True) if run.state is None or not run.state.is_completed()
    ]
    if failed:
        raise DeploymentFailed("; ".join(failed))
    return outcome
