"""renew-expiring starts exactly the runs that keep certificates renewed and served, once per tick."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter, FlowRunFilterTags

from certfleet.deployments.names import CENTRAL, ON_BOTS, bot_queue
from certfleet.deployments.serve import register, runner_deployments
from certfleet.flows.deployment import deploy_certificate
from certfleet.flows.issuance import issue_certificate
from certfleet.flows.renewal import RenewalNotStarted, renew_expiring
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Certificate,
    CertificateStatus,
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    Server,
    ServerConnection,
    utcnow,
)
from certfleet.renewal.runs import last_completed
from certfleet.tasks.renewal import find_due
from tests.flows.conftest import Site


def _runs(ignore: frozenset[UUID] = frozenset()) -> dict[str, list[int]]:
    """Renewal runs in Prefect's (session-wide) test server, by flow, leaving out runs of earlier tests."""
    found: dict[str, list[int]] = {}
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[CENTRAL, ON_BOTS])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["renewal"])),
        ):
            if run.id in ignore:
                continue
            flow = client.read_flow(run.flow_id)
            found.setdefault(flow.name, []).append(run.parameters["certificate_id"])
    return {k: sorted(v) for k, v in found.items()}


def _cert(
    server: Server,
    name: str,
    status: CertificateStatus,
    expires_in: timedelta,
    *,
    targets: bool = True,
    failed_deployment_ago: timedelta | None = None,
) -> list[Certificate | Deployment]:
    """A managed certificate (and the failed deployment it had, if any), ready to be added to a session."""
    now = utcnow()
    # Issued long enough ago that the policy's fraction cap (a third of the lifetime) does not hold renewal back.
    cert = Certificate(common_name=name, status=status, expires_on=now + expires_in, issued_on=now - timedelta(days=80))
    if not targets:
        return [cert]
    target = DeploymentTarget(server=server, port=443, cert_path="/x/c.pem", key_path="/x/k.pem")
    cert.targets.append(target)
    if failed_deployment_ago is None:
        return [cert]
    failed = Deployment(
        certificate=cert,
        target=target,
        serial_number="01",
        status=DeploymentStatus.ROLLED_BACK,
        finished_at=now - failed_deployment_ago,
    )
    return [cert, failed]


def _run_ids() -> frozenset[UUID]:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["renewal"])))
        return frozenset(r.id for r in runs)


def test_renewal_starts_the_right_runs_once(boot: Bootstrapped) -> None:
    earlier = _run_ids()
    register(runner_deployments(bot_queue(boot.local_bot_id)))  # registered, not served: the runs wait
    with session_scope() as s:
        server = Server(
            description="web",
            host="127.0.0.1",
            connection=ServerConnection.LOCAL,
            server_type="generic",
            bot_id=boot.local_bot_id,
        )
        certs = {
            "due": _cert(server, "due.test", CertificateStatus.DEPLOYED, timedelta(days=10)),
            "fresh": _cert(server, "fresh.test", CertificateStatus.DEPLOYED, timedelta(days=60)),
            "failed-long-ago": _cert(
                server,
                "f1.test",
                CertificateStatus.ROLLED_BACK,
                timedelta(days=60),
                failed_deployment_ago=timedelta(hours=7),
            ),
            "failed-recently": _cert(
                server,
                "f2.test",
                CertificateStatus.ROLLED_BACK,
                timedelta(days=60),
                failed_deployment_ago=timedelta(hours=1),
            ),
            "expired": _cert(server, "old.test", CertificateStatus.DEPLOYED, -timedelta(days=1)),
            "ignored": _cert(server, "ign.test", CertificateStatus.IGNORED, timedelta(days=1)),
            "no-targets": _cert(server, "nt.test", CertificateStatus.ISSUED, timedelta(days=1), targets=False),
        }
        for rows in certs.values():
            rows[0].ca_connector_id = boot.ca_connector_id  # type: ignore[union-attr]
            s.add_all(rows)
        s.flush()
        ids = {k: rows[0].id for k, rows in certs.items()}

    assert renew_expiring() == 3
    expected = {
        "provision-certificate": sorted([ids["due"], ids["expired"]]),
        "deploy-certificate": [ids["failed-long-ago"]],
    }
    assert _runs(earlier) == expected
    with session_scope() as s:
        expired = repo.get(s, Certificate, ids["expired"])
        assert expired.status is CertificateStatus.EXPIRED
        assert "without a renewal deployed" in (expired.status_reason or "")
        assert repo.get(s, Certificate, ids["ignored"]).status is CertificateStatus.IGNORED

    # The next tick finds the re-deployment already started and leaves the renewals alone until their backoff
    # (an hour) says they may be tried again.
    assert renew_expiring() == 1
    assert _runs(earlier) == expected
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["renewal"]))):
            if run.id not in earlier and client.read_flow(run.flow_id).name == "deploy-certificate":
                assert run.work_queue_name == bot_queue(boot.local_bot_id)  # the bot that reaches the server


def test_a_certificate_whose_server_has_no_bot_does_not_hold_up_the_others(boot: Bootstrapped) -> None:
    earlier = _run_ids()
    register(runner_deployments(bot_queue(boot.local_bot_id)))
    with session_scope() as s:
        orphan = Server(description="orphan", host="10.9.9.9", connection=ServerConnection.LOCAL, server_type="generic")
        mapped = Server(description="mapped", host="127.0.0.1", connection=ServerConnection.LOCAL,
                        server_type="generic", bot_id=boot.local_bot_id)  # fmt: skip
        stuck = _cert(orphan, "stuck.test", CertificateStatus.ROLLED_BACK, timedelta(days=60),
                      failed_deployment_ago=timedelta(hours=7))  # fmt: skip
        fine = _cert(mapped, "fine.test", CertificateStatus.ROLLED_BACK, timedelta(days=60),
                     failed_deployment_ago=timedelta(hours=7))  # fmt: skip
        for rows in (stuck, fine):
            rows[0].ca_connector_id = boot.ca_connector_id  # type: ignore[union-attr]
        s.add_all([*stuck, *fine])
        s.flush()
        stuck_id, fine_id = stuck[0].id, fine[0].id

    with session_scope() as s:
        assert last_completed(s) is None
    started = utcnow()
    with pytest.raises(RenewalNotStarted, match=r"stuck\.test: .*no bot is assigned to server orphan"):
        renew_expiring()
    assert _runs(earlier) == {"deploy-certificate": [fine_id]}
    with session_scope() as s:  # the schedule ran through every due certificate: /metrics shows it alive
        completed = last_completed(s)
    assert completed is not None
    assert completed >= started
    with session_scope() as s:
        reason = repo.get(s, Certificate, stuck_id).status_reason or ""
    assert reason.startswith("renewal could not start: no bot is assigned to server orphan (10.9.9.9)")


def test_a_just_issued_demo_certificate_is_not_renewed_until_its_last_third(site: Site) -> None:
    """The demo fleet (30-day certificates, 30-day window): right after `certfleet up` issued and deployed them,
    `certfleet renew` renews nothing; the certificate is due after 20 days (21 at most, with its jitter)."""
    issue_certificate(site.certificate_id)
    assert deploy_certificate(site.certificate_id) == {1: "Deployed"}
    assert find_due.fn() == []
    assert renew_expiring() == 0
    now = utcnow()
    assert find_due.fn(now + timedelta(days=19, hours=23)) == []
    (due,) = find_due.fn(now + timedelta(days=21))
    assert (due.certificate_id, due.action) == (site.certificate_id, "provision")


def test_a_failed_renewal_stays_on_the_work_list_and_is_retried_after_its_backoff(
    boot: Bootstrapped, site: Site
) -> None:
    earlier = _run_ids()
    register(runner_deployments(bot_queue(boot.local_bot_id)))  # registered, not served: the runs wait
    issue_certificate(site.certificate_id)
    with session_scope() as s:  # an old certificate, well inside its window
        cert = repo.get(s, Certificate, site.certificate_id)
        cert.not_before = utcnow() - timedelta(days=80)
        cert.expires_on = utcnow() + timedelta(days=10)
    start = utcnow()
    assert renew_expiring() == 1
    assert _runs(earlier) == {"provision-certificate": [site.certificate_id]}
    with session_scope() as s:  # the renewal failed: create_order left it Initiated, the order says why
        cert = repo.get(s, Certificate, site.certificate_id)
        assert cert.renewal_attempts == 1
        assert cert.renewal_next_attempt_at is not None
        assert start + timedelta(hours=1) <= cert.renewal_next_attempt_at <= utcnow() + timedelta(hours=1)
        first_retry = cert.renewal_next_attempt_at
        cert.status = CertificateStatus.INITIATED
        cert.status_reason = "order failed: rate limited"

    assert find_due.fn() == []  # not before the backoff
    assert find_due.fn(first_retry - timedelta(minutes=1)) == []
    (retry,) = find_due.fn(first_retry)
    assert retry.idempotency_key.endswith("-attempt-2")  # a new run, not the failed one found again
    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        assert cert.renewal_attempts == 2
        assert cert.renewal_next_attempt_at == first_retry + timedelta(hours=2)
    assert find_due.fn(first_retry + timedelta(hours=1)) == []
    assert len(find_due.fn(first_retry + timedelta(hours=2))) == 1

    issue_certificate(site.certificate_id)  # a renewal that issues resets the backoff
    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        assert (cert.renewal_attempts, cert.renewal_next_attempt_at) == (0, None)
