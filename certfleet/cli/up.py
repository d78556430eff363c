"""`certfleet up`: everything on the embedded default, in the foreground, until Ctrl-C."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from certfleet.demo.fleet import load_fleet, plan_fleet, register_fleet
from certfleet.demo.listener import ListenerProcess
from certfleet.deployments.api import use_api
from certfleet.deployments.embedded import EmbeddedPrefect, port_in_use
from certfleet.deployments.names import BOT_POOL, CENTRAL_POOL, CENTRAL_QUEUE, bot_queue
from certfleet.deployments.workers import WorkerProcess
from certfleet.models.bootstrap import initialize
from certfleet.settings import get_settings

DEMO_FLEET_SIZE = 3


def run_up(*, demo_fleet: bool, say: Callable[[str], None]) -> None:
    settings = get_settings()
    boot = initialize()
    from certfleet.dashboard.server import DashboardThread, ensure_admin

    first_admin = ensure_admin()
    dashboard: DashboardThread | None = None
    if port_in_use(settings.host, settings.dashboard_port):
        say(
            f"[yellow]dashboard: port {settings.dashboard_port} is taken, not started; "
            "set CERTFLEET_DASHBOARD_PORT[/yellow]"
        )
    else:
        dashboard = DashboardThread(settings.host, settings.dashboard_port)
        dashboard.start()
    prefect = EmbeddedPrefect(settings.prefect_home, settings.host, settings.prefect_port)
    started_here = prefect.start()
    use_api(prefect.api_url)  # before Prefect is imported below
    from certfleet.deployments.serve import FLOWS, register, runner_deployments

    listeners: list[ListenerProcess] = []
    workers = central_workers(boot.local_bot_id, settings.home / "logs")
    try:
        root = settings.home / "demo-fleet"
        hosts = load_fleet(root)
        new_cert_ids: list[int] = []
        if demo_fleet and not hosts:
            hosts = plan_fleet(root, DEMO_FLEET_SIZE)
            new_cert_ids = register_fleet(hosts, ca_connector_id=boot.ca_connector_id, bot_id=boot.local_bot_id)
        for host in hosts:
            if port_in_use("127.0.0.1", host.port):
                say(f"[yellow]demo host {host.fqdn}: port {host.port} is taken, not started[/yellow]")
                continue
            listeners.append(host.listener())
            listeners[-1].launch()
        say(f"certfleet is up (data in {settings.home})")
        if dashboard is not None:
            say(f"  dashboard:    http://{settings.host}:{settings.dashboard_port} (API docs at /api/docs)")
        if first_admin is not None:
            shown = first_admin.password or "the value of CERTFLEET_ADMIN_PASSWORD"
            say(f"  first login:  user {first_admin.username}, password {shown} (shown once: change it)")
        say(f"  Prefect UI:   {prefect.ui_url}")
        say(f"  Prefect API:  {prefect.api_url}")
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
        if started_here:
            prefect.stop()


def central_workers(local_bot_id: int, log_dir: Path) -> list[WorkerProcess]:
    """The central host's worker (issuing, renewal, discovery) and its own bot's worker (deployments)."""
    return [
        WorkerProcess(CENTRAL_POOL, CENTRAL_QUEUE, name="certfleet-central", log_path=log_dir / "worker-central.log"),
        WorkerProcess(
            BOT_POOL,
            bot_queue(local_bot_id),
            name=f"certfleet-{bot_queue(local_bot_id)}",
            log_path=log_dir / "worker-local-bot.log",
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
