"""Starting certfleet's runs through Prefect (`run_deployment`), on the right pool and bot queue.

The one place that turns a flow name into its deployment (`certfleet.deployments.names`); the dashboard, the
CLI and the flows that start other flows (renewal, provisioning) all come through here. Prefect is imported
only when a run is started, after the caller pointed the process at its Prefect API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from certfleet.deployments.names import deployment_name

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

T = TypeVar("T")
BUSY_FIRST_PAUSE_S = 0.05
BUSY_FAST_RETRY_S = 3.0


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

    run = retry_busy_soon(
        lambda: run_deployment(
            deployment_name(flow_name),
            parameters=parameters,
            timeout=0,  # waited for below, after this host's workers were woken
            poll_interval=1,
            flow_run_name=flow_run_name,
            idempotency_key=idempotency_key,
            tags=tags,
            work_queue_name=queue,
            as_subflow=as_subflow,
            scheduled_time=scheduled_time,
        )
    )
    assert isinstance(run, FlowRun)  # sync call: not a coroutine
    if scheduled_time is None:  # due now: this host's workers take it at once instead of at their next poll
        from certfleet.deployments.workers import wake_local_workers

        wake_local_workers()
    if wait:
        return wait_for_runs([run])[0]
    return run


def retry_busy_soon(call: Callable[[], T]) -> T:
    """`call()` (Prefect client calls), tried again soon while the Prefect server answers 503.

    The embedded server on SQLite answers 503 when its database is busy (another request writing, e.g. the run
    that has just ended), and Prefect's client then waits 2 s before it asks again (4 s, 8 s... after that): that
    wait was most of a deploy's API call. Here the call is first made without the client's own retries and made
    again after BUSY_FIRST_PAUSE_S, doubling, for about BUSY_FAST_RETRY_S; any other failure, and a server still
    busy after that, gets one more call with Prefect's own retries, as before.
    """
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    pause = BUSY_FIRST_PAUSE_S
    deadline = time.monotonic() + BUSY_FAST_RETRY_S
    while time.monotonic() + pause < deadline:
        try:
            with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}):
                return call()
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 503:
                break
        except httpx.HTTPError:  # e.g. a connection error: Prefect's client knows which ones to retry
            break
        time.sleep(pause)
        pause *= 2
    return call()


def wait_for_runs(runs: list[FlowRun], poll_seconds: float = 1.0, timeout: float | None = None) -> list[FlowRun]:
    """Polls until every run is in a final state; returns them as they ended. TimeoutError after `timeout` s."""

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
