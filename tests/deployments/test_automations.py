"""The Prefect automation certfleet registers: a failed certificate run starts check-notifications at once."""

from __future__ import annotations

import time

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun

from certfleet.deployments.automations import AUTOMATION_NAME, WATCHED_FLOWS
from certfleet.deployments.names import bot_queue
from certfleet.deployments.serve import register, runner_deployments
from certfleet.models.bootstrap import initialize


@flow(name="provision-certificate")
def failing_provision() -> None:
    raise RuntimeError("the CA said no")


def _check_runs(deployment_id: object) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


@pytest.mark.usefixtures("prefect_harness")
def test_a_failed_certificate_run_starts_check_notifications(database: str) -> None:
    boot = initialize()
    deployments = runner_deployments(bot_queue(boot.local_bot_id))
    register(deployments)
    register(deployments)  # registering again (each `certfleet up`) leaves one automation
    with get_client(sync_client=True) as client:
        [automation] = client.read_automations_by_name(AUTOMATION_NAME)
        check = client.read_deployment_by_name("check-notifications/central")
    # Only certificate runs are watched (check-server, discovery... are not).
    assert automation.trigger.match_related.root == {
        "prefect.resource.role": "flow",
        "prefect.resource.name": WATCHED_FLOWS,
    }
    assert [a.deployment_id for a in automation.actions] == [check.id]
    # The harness is shared by the session: runs that earlier tests' failures started are not this one's.
    time.sleep(3)
    before = {run.id for run in _check_runs(check.id)}
    with pytest.raises(RuntimeError):
        failing_provision()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ({run.id for run in _check_runs(check.id)} - before):
        time.sleep(0.5)
    started = [run for run in _check_runs(check.id) if run.id not in before]
    assert len(started) >= 1
    assert started[0].state_name == "Scheduled"  # waiting for the central worker (none runs here)
