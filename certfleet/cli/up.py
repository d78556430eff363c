"""`certfleet up`: everything on the embedded default, in the foreground, until Ctrl-C.

The Prefect API is chosen (started or attached to, with its auth string) before anything else runs, so
every Prefect client in this process and in the flow runs it starts talks to that one server.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from certfleet.demo.fleet import load_fleet, plan_fleet, register_fleet
from certfleet.demo.listener import ListenerProcess
from certfleet.deployments.api import use_api
from certfleet.deployments.auth_string import configured_auth_string, ensure_auth_string
from certfleet.deployments.embedded import Access, EmbeddedPrefect, api_access, healthy, port_in_use
from certfleet.deployments.names import BOT_POOL, CENTRAL_POOL, CENTRAL_QUEUE, bot_queue
from certfleet.deployments.workers import WorkerProcess, wake_socket
from certfleet.models.bootstrap import Bootstrapped, initialize
from certfleet.settings import Settings, get_settings

if TYPE_CHECKING:
    from certfleet.dashboard.server import DashboardThread
    from certfleet.demo.fleet import DemoHost

DEMO_FLEET_SIZE = 3
Say = Callable[[str], None]


@dataclass(frozen=True)
class PrefectApi:
    server: EmbeddedPrefect
    started_here: bool
    auth_string: str | None
    generated: bool  # the auth string was created by this start: shown once


def run_up(*, demo_fleet: bool, say: Say) -> None:
    settings = get_settings()
    boot = initialize()
    from certfleet.dashboard.server import ensure_admin

    first_admin = ensure_admin()
    prefect = _start_prefect(settings, say)
    dashboard = _start_dashboard(settings, say)
    from certfleet.deployments.serve import FLOWS, register, runner_deployments

    listeners: list[ListenerProcess] = []
    workers = central_workers(boot.local_bot_id, settings.home)
    try:
        hosts, new_cert_ids = _demo_fleet(settings, boot, demo_fleet)
        listeners = _start_listeners(hosts, say)
        say(f"certfleet is up (data in {settings.home})")
        if dashboard is not None:
            say(f"  dashboard:    http://{settings.host}:{settings.dashboard_port} (API docs at /api/docs)")
        if first_admin is not None:
            shown = first_admin.password or "the value of CERTFLEET_ADMIN_PASSWORD"
            say(f"  first login:  user {first_admin.username}, password {shown} (shown once: change it)")
        say(f"  Prefect UI:   {prefect.server.ui_url}")
        say(f"  Prefect API:  {prefect.server.api_url}")
        _say_prefect_login(prefect, say)
        say(f"  database:     {settings.sqlalchemy_url.split('@')[-1]}")
        for host in hosts:
            say(f"  demo server:  https://{host.fqdn}:{host.port} (127.0.0.1)")
        say(f"  flows:        {', '.join(f.name for f in FLOWS)}")
        say(f"  workers:      {', '.join(f'{w.pool}/{w.queue}' for w in workers)} (logs in {settings.home / 'logs'})")
        register(runner_deployments(bot_queue(boot.local_bot_id)))
        for worker in workers:
            worker.start()
        from certfleet.tasks.ca_runtime import ensure_rate_limits

        ensure_rate_limits()  # one Prefect rate limit per remote CA connector
        if new_cert_ids:
            say("  provisioning the demo fleet: watch the runs in the Prefect UI")
            _provision(new_cert_ids)
        say("Press Ctrl-C to stop.")

        with contextlib.suppress(KeyboardInterrupt):
            watch(workers)
    finally:
        for worker in workers:
            worker.stop()
        if dashboard is not None:
            dashboard.stop()
        for listener in listeners:
            listener.stop()
        if prefect.started_here:
            prefect.server.stop()


def _start_prefect(settings: Settings, say: Say) -> PrefectApi:
    """Start the embedded Prefect server with its auth string, or attach to the one on the port; then use it."""
    server = EmbeddedPrefect(settings.prefect_home, settings.host, settings.prefect_port)
    server.auth_string, generated = _auth_for(server.api_url)
    started_here = server.start()
    if not started_here and api_access(server.api_url, server.auth_string) is Access.OPEN:
        say(
            f"[yellow]Prefect: attached to the server on port {settings.prefect_port}, which has no auth string: "
            "anyone who reaches it can start runs[/yellow]"
        )
    use_api(server.api_url, server.auth_string)
    return PrefectApi(server, started_here, server.auth_string, generated)


def _auth_for(api_url: str) -> tuple[str | None, bool]:
    """(auth string, generated now). Attaching: the one we hold, if any; none is made for a server not ours."""
    if healthy(api_url):
        return configured_auth_string(), False
    auth = ensure_auth_string()
    return auth.value, auth.generated


def _say_prefect_login(prefect: PrefectApi, say: Say) -> None:
    if prefect.generated:
        say(
            f"  Prefect login: auth string {prefect.auth_string} (shown once; the Prefect UI asks for it; "
            "CERTFLEET_PREFECT_AUTH_STRING sets your own)"
        )


def _start_dashboard(settings: Settings, say: Say) -> DashboardThread | None:
    from certfleet.dashboard.server import DashboardThread

    if port_in_use(settings.host, settings.dashboard_port):
        say(
            f"[yellow]dashboard: port {settings.dashboard_port} is taken, not started; "
            "set CERTFLEET_DASHBOARD_PORT[/yellow]"
        )
        return None
    dashboard = DashboardThread(settings.host, settings.dashboard_port)
    dashboard.start()
    return dashboard


def _demo_fleet(settings: Settings, boot: Bootstrapped, wanted: bool) -> tuple[list[DemoHost], list[int]]:
    """The demo hosts (created on the first start when wanted) and the ids of certificates still to provision."""
    root = settings.home / "demo-fleet"
    hosts = load_fleet(root)
    new_cert_ids: list[int] = []
    if wanted and not hosts:
        hosts = plan_fleet(root, DEMO_FLEET_SIZE)
        new_cert_ids = register_fleet(hosts, ca_connector_id=boot.ca_connector_id, bot_id=boot.local_bot_id)
    return hosts, new_cert_ids


def _start_listeners(hosts: list[DemoHost], say: Say) -> list[ListenerProcess]:
    listeners = []
    for host in hosts:
        if port_in_use("127.0.0.1", host.port):
            say(f"[yellow]demo host {host.fqdn}: port {host.port} is taken, not started[/yellow]")
            continue
        listeners.append(host.listener())
        listeners[-1].launch()
    return listeners


def central_workers(local_bot_id: int, home: Path) -> list[WorkerProcess]:
    """The central host's worker (issuing, renewal, discovery) and its own bot's worker (deployments); both are
    woken when a run starts on this host (logs in home/logs, wake-up sockets in home/wake)."""
    log_dir = home / "logs"
    return [
        WorkerProcess(
            CENTRAL_POOL,
            CENTRAL_QUEUE,
            name="certfleet-central",
            log_path=log_dir / "worker-central.log",
            wake=wake_socket(home, CENTRAL_QUEUE),
        ),
        WorkerProcess(
            BOT_POOL,
            bot_queue(local_bot_id),
            name=f"certfleet-{bot_queue(local_bot_id)}",
            log_path=log_dir / "worker-local-bot.log",
            wake=wake_socket(home, bot_queue(local_bot_id)),
        ),
    ]


def watch(workers: list[WorkerProcess]) -> None:
    """Until Ctrl-C: a worker that died is started again (its log says why it died)."""
    while True:
        time.sleep(2)
        for worker in workers:
            if not worker.running:
                worker.start()


def _provision(cert_ids: list[int]) -> None:
    """Start a provision run per demo certificate; the central worker picks them up once it polls."""
    from certfleet.deployments.starts import start_flow_run

    for cert_id in cert_ids:
        start_flow_run("provision-certificate", {"certificate_id": cert_id})
