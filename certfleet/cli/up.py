"""`certfleet up`: everything on the embedded default, in the foreground, until Ctrl-C."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from certfleet.demo.fleet import load_fleet, plan_fleet, register_fleet
from certfleet.demo.listener import ListenerProcess
from certfleet.deployments.api import use_api
from certfleet.deployments.embedded import EmbeddedPrefect, port_in_use
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
    from certfleet.deployments.serve import FLOWS, register, runner_deployments, serve_flows

    listeners: list[ListenerProcess] = []
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
        say(f"  flows served: {', '.join(f.name for f in FLOWS)}")
        deployments = runner_deployments()
        register(deployments)
        from certfleet.tasks.ca_runtime import ensure_rate_limits

        ensure_rate_limits()  # one Prefect rate limit per remote CA connector
        if new_cert_ids:
            say("  provisioning the demo fleet: watch the runs in the Prefect UI")
            _provision(new_cert_ids)
        say("Press Ctrl-C to stop.")

        with contextlib.suppress(KeyboardInterrupt):
            serve_flows(deployments)
    finally:
        if dashboard is not None:
            dashboard.stop()
        for listener in listeners:
            listener.stop()
        if started_here:
            prefect.stop()


def _provision(cert_ids: list[int]) -> None:
    """Schedule a provision run per demo certificate; the runner picks them up as soon as serving begins."""
    from prefect.deployments import run_deployment

    for cert_id in cert_ids:
        run_deployment("provision-certificate/certfleet", parameters={"certificate_id": cert_id}, timeout=0)
