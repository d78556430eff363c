"""Starting flows on a running certfleet through Prefect, never by calling flow functions here."""

from __future__ import annotations

from certfleet.deployments.api import configured_api_url, prefect_auth_string, use_api
from certfleet.deployments.embedded import Access, api_access, healthy


class NotRunning(RuntimeError):
    """No Prefect API answers where certfleet's runs would go."""


def start_run(flow_name: str, parameters: dict[str, int], *, wait: bool) -> str:
    url = configured_api_url()
    if not healthy(url):
        raise NotRunning(f"no Prefect API answers at {url}: start certfleet with `certfleet up`")
    auth_string = prefect_auth_string()
    if api_access(url, auth_string) is Access.REFUSED:
        raise NotRunning(
            f"the Prefect API at {url} refuses certfleet's auth string: "
            "set CERTFLEET_PREFECT_AUTH_STRING to the auth string of that server"
        )
    use_api(url, auth_string)
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    run = run_deployment(f"{flow_name}/certfleet", parameters=parameters, timeout=None if wait else 0)
    assert isinstance(run, FlowRun)  # called from sync code, so not a coroutine
    state = run.state
    if state is None:
        return f"{run.name}: submitted"
    message = f" - {state.message}" if state.message else ""
    return f"{run.name}: {state.name}{message}"
