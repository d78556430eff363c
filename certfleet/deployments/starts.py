"""Starting certfleet's runs through Prefect (`run_deployment`), on the right pool and bot queue.

The one place that turns a flow name into its deployment (`certfleet.deployments.names`); the dashboard, the
CLI and the flows that start other flows (renewal, provisioning) all come through here. Prefect is imported
only when a run is started, after the caller pointed the process at its Prefect API.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from certfleet.deployments.names import deployment_name

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun


def start_flow_run(
    flow_name: str,
    parameters: dict[str, Any],
    *,
    queue: str | None = None,
    wait: bool = False,
    flow_run_name: str | None = None,
    idempotency_key: str | None = None,
    tags: Iterable[str] | None = None,
    as_subflow: bool = True,
    scheduled_time: datetime | None = None,
) -> FlowRun:
    """`queue` is a bot's queue for the flows that run on bots (None: the deployment's default queue);
    `scheduled_time` makes the run wait in Prefect (state Scheduled) until then (None: now)."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    run = run_deployment(
        deployment_name(flow_name),
        parameters=parameters,
        timeout=None if wait else 0,
        poll_interval=1,
        flow_run_name=flow_run_name,
        idempotency_key=idempotency_key,
        tags=tags,
        work_queue_name=queue,
        as_subflow=as_subflow,
        scheduled_time=scheduled_time,
    )
    assert isinstance(run, FlowRun)  # sync call: not a coroutine
    return run


def wait_for_runs(runs: list[FlowRun], poll_seconds: float = 1.0, timeout: float | None = None) -> list[FlowRun]:
    """Polls until every run is in a final state; returns them as they ended. TimeoutError after `timeout` s."""
    import time

    from prefect.client.orchestration import get_client

    ended: dict[str, FlowRun] = {}
    deadline = None if timeout is None else time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while len(ended) < len(runs):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(runs) - len(ended)} of {len(runs)} runs did not end within {timeout:g} s")
            for run in runs:
                if str(run.id) in ended:
                    continue
                now = client.read_flow_run(run.id)
                if now.state is not None and now.state.is_final():
                    ended[str(run.id)] = now
            if len(ended) < len(runs):
                time.sleep(poll_seconds)
    return [ended[str(run.id)] for run in runs]


def describe(run: FlowRun) -> str:
    """`name: State - message`, as the CLI and flow logs print a run."""
    if run.state is None:
        return f"{run.name}: submitted"
    message = f" - {run.state.message}" if run.state.message else ""
    return f"{run.name}: {run.state.name}{message}"
