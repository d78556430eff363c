"""Deployments to a server with a maintenance window: scheduled in Prefect for the window, not held in a process.

A real demo TLS listener (local bot, built-in CA); the deploy-certificate deployments are registered but not
served, so a run stays where Prefect put it (Scheduled for its time) and the test reads it back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

from certfleet.bots.routing import plan_deploys, start_deploy_runs, waits_for_window
from certfleet.deployments.names import bot_queue
from certfleet.deployments.serve import register, runner_deployments
from certfleet.flows.deployment import deploy_certificate
from certfleet.flows.issuance import issue_certificate
from certfleet.flows.provisioning import provision_certificate
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, CertificateStatus, DeploymentTarget, Server, ServerConnection, utcnow
from certfleet.servers.maintenance import Window
from certfleet.tasks.renewal import find_due
from tests.flows.conftest import Site


def _window_away_from(now: datetime) -> tuple[str, datetime]:
    """A daily one-hour window opening 12 hours from now (on the hour): the test runs outside it."""
    start = (now + timedelta(hours=12)).replace(minute=0, second=0, microsecond=0)
    return f"0 {start.hour} * * *", start


def _set_window(server_id: int, cron: str | None, minutes: int | None = 60, zone: str = "UTC") -> None:
    with session_scope() as s:
        server = repo.get(s, Server, server_id)
        server.maintenance_cron, server.maintenance_duration_minutes, server.maintenance_timezone = cron, minutes, zone


def _server_of(site: Site) -> int:
    with session_scope() as s:
        return repo.get(s, Certificate, site.certificate_id).targets[0].server_id


def test_a_deployment_outside_the_window_is_scheduled_for_its_start_and_runs_then(
    boot: Bootstrapped, site: Site
) -> None:
    register(runner_deployments(bot_queue(boot.local_bot_id)))  # registered, not served
    cron, opening = _window_away_from(utcnow())
    _set_window(_server_of(site), cron)
    started = utcnow()  # the session's Prefect server also holds earlier tests' runs for certificate 1

    # provision issues, then does not wait for the deployment that waits for the window: it returns.
    outcome = provision_certificate(site.certificate_id)
    assert len(outcome) == 1, outcome
    assert "waits for its server's maintenance window" in outcome[0], outcome
    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        assert cert.status is CertificateStatus.ISSUED
        assert cert.targets[0].deploy_waits_until == opening
        assert f"waiting for maintenance window at {opening:%Y-%m-%d %H:%M} UTC" in (cert.status_reason or "")
        issued_serial = cert.serial_number
    with get_client(sync_client=True) as client:
        # filtered by name on the server: an unfiltered read returns only Prefect's default page of 200 runs
        name = f"deploy-certificate-{site.certificate_id}-on-{bot_queue(boot.local_bot_id)}-at-{opening:%Y%m%d%H%M}"
        (run,) = [
            r
            for r in client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
            if r.created is not None and r.created >= started
        ]
        assert run.state is not None
        assert run.state.is_scheduled()
        assert run.state.state_details.scheduled_time == opening
        assert run.work_queue_name == bot_queue(boot.local_bot_id)
    assert site.served_serial() != issued_serial

    # renew-expiring does not start a second deployment while one waits for the window; once the window has
    # passed without the run (cancelled, say), the not-served certificate is deployed again as before.
    assert find_due.fn(utcnow() + timedelta(hours=7)) == []  # 6 h after issue, but the run waits until `opening`
    (again,) = find_due.fn(opening + timedelta(hours=7))
    assert again.action == "deploy"

    # The window has come: the run Prefect starts then is deploy-certificate; it deploys and the wait is over.
    assert deploy_certificate(site.certificate_id) == {run.parameters["target_ids"][0]: "Deployed"}
    assert site.served_serial() == issued_serial
    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        assert cert.status is CertificateStatus.DEPLOYED
        assert cert.targets[0].deploy_waits_until is None


def test_ignore_window_deploys_now(boot: Bootstrapped, site: Site) -> None:
    register(runner_deployments(bot_queue(boot.local_bot_id)))
    cron, _ = _window_away_from(utcnow())
    _set_window(_server_of(site), cron)
    issue_certificate(site.certificate_id)
    (waiting,) = start_deploy_runs(site.certificate_id, as_subflow=False)
    assert waits_for_window(waiting)
    (now,) = start_deploy_runs(site.certificate_id, as_subflow=False, ignore_window=True)
    assert not waits_for_window(now)
    with get_client(sync_client=True) as client:  # the waiting run would deploy again at the window: cancelled
        cancelled = client.read_flow_run(waiting.id)
        assert cancelled.state is not None
        assert cancelled.state.is_cancelled()
        assert cancelled.state.message == "deployed now, ignoring the maintenance window"
        started = client.read_flow_run(now.id)
        assert started.state is not None
        assert not started.state.is_cancelled()
    with session_scope() as s:
        assert repo.get(s, Certificate, site.certificate_id).targets[0].deploy_waits_until is None


def test_plans_with_a_controlled_clock_inside_outside_and_past_the_deadline(boot: Bootstrapped, site: Site) -> None:
    issue_certificate(site.certificate_id)
    server_id = _server_of(site)
    _set_window(server_id, "0 2 * * SAT", 240, "Europe/Berlin")  # Saturdays 01:00-05:00 UTC in winter
    with session_scope() as s:  # a second server on the same bot, without a window
        cert = repo.get(s, Certificate, site.certificate_id)
        other = Server(
            description="no-window",
            host="127.0.0.1",
            connection=ServerConnection.LOCAL,
            server_type="generic",
            bot_id=boot.local_bot_id,
        )
        cert.targets.append(DeploymentTarget(server=other, port=8443, cert_path="/x/c.pem", key_path="/x/k.pem"))
        s.flush()
        windowed = cert.targets[0].id
        plain = cert.targets[1].id

    def plan(now: datetime, expires_in: timedelta = timedelta(days=60), **kw: bool) -> dict[int, datetime | None]:
        with session_scope() as s:
            cert = repo.get(s, Certificate, site.certificate_id)
            cert.expires_on = now + expires_in
            cert.served_serial_number = cert.serial_number
            s.flush()
            return {t: p.at for p in plan_deploys(s, site.certificate_id, now=now, **kw) for t in p.target_ids}

    friday = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
    saturday_open = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
    assert plan(friday) == {windowed: saturday_open, plain: None}  # two runs: one now, one at the window
    assert plan(saturday_open + timedelta(hours=1)) == {windowed: None, plain: None}  # inside: now
    assert plan(friday, timedelta(days=6)) == {windowed: None, plain: None}  # the deadline: now
    assert plan(friday, timedelta(days=7, hours=2)) == {windowed: friday + timedelta(hours=2), plain: None}
    assert plan(friday, ignore_window=True) == {windowed: None, plain: None}
    assert Window.of(None, None, "UTC") is None
