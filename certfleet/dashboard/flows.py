"""Starting flows from the web process: through Prefect (`run_deployment(..., timeout=0)`), never by calling them.

The run is created on the Prefect server and picked up by whoever serves the deployment (`certfleet up`, or a bot's
worker); the dashboard only links to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from certfleet.dashboard.errors import InputError
from certfleet.dashboard.templating import flow_run_url
from certfleet.deployments.api import auth_headers, configured_api_url, prefect_auth_string, use_api
from certfleet.deployments.embedded import healthy
from certfleet.deployments.names import deployment_name
from certfleet.deployments.starts import start_flow_run


@dataclass(frozen=True)
class FlowRunRef:
    id: str
    name: str
    url: str  # the run in the Prefect UI


def start_flow(
    flow_name: str,
    parameters: dict[str, Any],
    *,
    queue: str | None = None,
    flow_run_name: str | None = None,
    scheduled_time: datetime | None = None,
) -> FlowRunRef:
    """`queue`: the bot queue of a flow that runs on bots (certfleet.bots.routing); `scheduled_time`: the run
    waits in Prefect until then (a server's maintenance window)."""
    api = configured_api_url()
    if not healthy(api):
        raise InputError(f"Prefect does not answer at {api}: start certfleet with `certfleet up`, then try again")
    use_api(api, prefect_auth_string())  # a no-op when `certfleet up` already chose this API
    from prefect.exceptions import ObjectNotFound

    # The name carries the object id (as the flow's own run name does), so the Prefect UI shows what it is about.
    name = flow_run_name or "-".join([flow_name, *(str(v) for v in parameters.values() if isinstance(v, int | str))])
    if queue:
        name += f"-on-{queue}"
    if scheduled_time:
        name += f"-at-{scheduled_time:%Y%m%d%H%M}"
    try:
        run = start_flow_run(
            flow_name, parameters, queue=queue, flow_run_name=name, as_subflow=False, scheduled_time=scheduled_time
        )
    except ObjectNotFound:
        raise InputError(
            f"the deployment {deployment_name(flow_name)} is not registered in Prefect: is `certfleet up` running?"
        ) from None
    return FlowRunRef(str(run.id), run.name, flow_run_url(str(run.id)))


def count_runs(flow_name: str, states: list[str]) -> int | None:
    """How many runs of a flow are in the given Prefect state types (e.g. RUNNING, FAILED); None if unknown."""
    import httpx

    body = {"flows": {"name": {"any_": [flow_name]}}, "flow_runs": {"state": {"type": {"any_": states}}}}
    try:
        with httpx.Client(timeout=2.0, trust_env=False, headers=auth_headers(prefect_auth_string())) as client:
            response = client.post(f"{configured_api_url()}/flow_runs/count", json=body)
        return int(response.json()) if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
