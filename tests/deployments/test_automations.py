"""The Prefect automation certfleet registers: a failed certificate run starts check-notifications at once."""

from __future__ import annotations

import time

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun

from certfleet.deployments.automations import AUTOMATION_NAME
from certfleet.deployments.names import bot_queue
from certfleet.deployments.serve import register, runner_deployments
from certfleet.models.bootstrap import initialize


@flow(name="provision-certificate")
def failing_provision() -> None:
    raise RuntimeError("the CA said no")


@flow(name="check-server")
def failing_check_server() -> None:
    raise RuntimeError("not a certificate run")


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
        assert len(client.read_automations_by_name(AUTOMATION_NAME)) == 1
        check = client.read_deployment_by_name("check-notifications/central")
    with pytest.raises(RuntimeError):
        failing_check_server()  # not watched: nothing starts
    time.sleep(3)
    assert _check_runs(check.id) == []
    with pytest.raises(RuntimeError):
        failing_provision()
    deadline = time.monotonic() + 60
    while not _check_runs(check.id) and time.monotonic() < deadline:
        time.sleep(0.5)
    [run] = _check_runs(check.id)  # one run, waiting for the central worker (none runs here)
    assert run.state_name == "Scheduled"
