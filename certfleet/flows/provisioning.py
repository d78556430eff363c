"""provision-certificate: issue a certificate (here, on the central host), then deploy it on the bots that
reach its servers, and wait for them. A deployment scheduled for a server's maintenance window is not waited for
(its run sits Scheduled in Prefect until then); the flow logs when it will run."""

from __future__ import annotations

from prefect import flow, get_run_logger

from certfleet.bots.routing import start_deploy_runs, waits_for_window
from certfleet.deployments.starts import describe, wait_for_runs
from certfleet.flows.deployment import DeploymentFailed
from certfleet.flows.issuance import issue_certificate


@flow(name="provision-certificate", flow_run_name="provision-certificate-{certificate_id}")
def provision_certificate(certificate_id: int) -> list[str]:
    """Issue a certificate on the central host, then deploy it on the bots that reach its servers."""
    issue_certificate(certificate_id)
    started = start_deploy_runs(certificate_id)
    waiting = {run.id for run in started if waits_for_window(run)}
    later = [f"{describe(run)} (waits for its server's maintenance window)" for run in started if run.id in waiting]
    runs = wait_for_runs([run for run in started if run.id not in waiting])
    outcome = [describe(run) for run in runs]
    for line in outcome:
        get_run_logger().info("%s", line)
    failed = [
        line for run, line in zip(runs, outcome, strict=True) if run.state is None or not run.state.is_completed()
    ]
    if failed:
        raise DeploymentFailed("; ".join(failed))
    for line in later:
        get_run_logger().info("%s", line)
    return outcome + later
