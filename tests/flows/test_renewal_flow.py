"""renew-expiring starts exactly the runs that keep certificates renewed and served, once per tick."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter, FlowRunFilterTags

from certfleet.deployments.names import CENTRAL, ON_BOTS, bot_queue
from certfleet.deployments.serve import register, runner_deployments
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
    cert = Certificate(common_name=name, status=status, expires_on=now + expires_in, issued_on=now - timedelta(days=1))
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

    assert renew_expiring() == 3  # the next tick finds the same work already started
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

    with pytest.raises(RenewalNotStarted, match=r"stuck\.test: .*no bot is assigned to server orphan"):
        renew_expiring()
    assert _runs(earlier) == {"deploy-certificate": [fine_id]}
    with session_scope() as s:
        reason = repo.get(s, Certificate, stuck_id).status_reason or ""
    assert reason.startswith("renewal could not start: no bot is assigned to server orphan (10.9.9.9)")
