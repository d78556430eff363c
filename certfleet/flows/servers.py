"""check-server: on the server's bot, log in and set the server Active, or Unreachable with the reason."""

from __future__ import annotations

from functools import partial

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from certfleet.jobs.store import current_store
from certfleet.servers.service import ConnectivityResult, probe_server


@task(cache_policy=NO_CACHE, task_run_name="check-server-{server_id}")
def check_server_task(server_id: int, actor: str) -> ConnectivityResult:
    """No retries: a wrong password must not be tried again (lockouts), and unreachable is an answer."""
    store = current_store()
    outcome = probe_server(store.server_access(server_id), pin=partial(store.pin_host_key, server_id))
    return store.record_check(server_id, actor, outcome)


@flow(name="check-server", flow_run_name="check-server-{server_id}")
def check_server(server_id: int, actor: str = "flow:check-server") -> ConnectivityResult:
    return check_server_task(server_id, actor)
