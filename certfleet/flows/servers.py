"""check-server: log in to a registered server and set it Active, or Unreachable with the reason."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from certfleet.servers.service import ConnectivityResult, check_connectivity


@task(cache_policy=NO_CACHE, task_run_name="check-server-{server_id}")
def check_server_task(server_id: int, actor: str) -> ConnectivityResult:
    """No retries: a wrong password must not be tried again (lockouts), and unreachable is an answer."""
    return check_connectivity(server_id, actor=actor)


@flow(name="check-server", flow_run_name="check-server-{server_id}")
def check_server(server_id: int, actor: str = "flow:check-server") -> ConnectivityResult:
    return check_server_task(server_id, actor)
