"""The Prefect automation certfleet registers: a run of a flow that renews, issues or deploys certificates that
ends Failed or Crashed starts `check-notifications/central` at once, so its failure is notified without waiting
for the 5-minute schedule. Prefect's own events (emitted by its server on each state change) trigger it.

The schedule and the dashboard's timer stay: an automation cannot fire when the Prefect server is what stopped.
"""

from __future__ import annotations

from uuid import UUID

from prefect.automations import Automation, EventTrigger, Posture, RunDeployment
from prefect.client.orchestration import get_client

AUTOMATION_NAME = "certfleet: notify on failed runs"
WATCHED_FLOWS = [
    "issue-certificate",
    "provision-certificate",
    "deploy-certificate",
    "rollback-deployment",
    "renew-expiring",
]


def failure_automation(check_deployment_id: UUID) -> Automation:
    return Automation(
        name=AUTOMATION_NAME,
        description="A failed or crashed certificate run starts check-notifications at once.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": WATCHED_FLOWS},
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=[RunDeployment(source="selected", deployment_id=check_deployment_id, parameters={})],
    )


def ensure_failure_automation(check_deployment_id: UUID) -> UUID:
    """Create the automation, replacing any of the same name (registering again leaves exactly one)."""
    with get_client(sync_client=True) as client:
        for existing in client.read_automations_by_name(AUTOMATION_NAME):
            client.delete_automation(existing.id)
    created = failure_automation(check_deployment_id).create()
    assert isinstance(created, Automation)  # sync call, so not a coroutine
    assert created.id is not None  # the server gave it one
    return created.id
