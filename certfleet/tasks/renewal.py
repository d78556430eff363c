"""Finding what needs renewing or re-deploying, and starting those runs through Prefect."""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel
from sqlalchemy import and_, func, or_, select

from certfleet.bots.routing import NoRoute, start_deploy_runs
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.deployments.starts import start_flow_run
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, CertificateStatus, Deployment, DeploymentTarget, utcnow
from certfleet.renewal import policy
from certfleet.renewal.schedule import MANAGED, RENEWING, renews_at
from certfleet.tasks.retry import backoff_with_jitter, retry_if_transient

ACTOR = "flow:renew-expiring"
# A certificate whose last deployment failed is tried again, but not on every schedule tick.
REDEPLOY_AFTER = timedelta(hours=6)
NOT_SERVED_YET = (CertificateStatus.ISSUED, CertificateStatus.ROLLED_BACK, CertificateStatus.DEPLOYMENT_FAILED)


class Due(BaseModel):
    certificate_id: int
    common_name: str
    expires_on: datetime
    action: str  # "provision" (issue + deploy) or "deploy" (the issued certificate is not served yet)
    idempotency_key: str


@task(cache_policy=NO_CACHE, task_run_name="find-due-certificates")
def find_due(now: datetime | None = None) -> list[Due]:
    """Certificates to renew (inside their renewal window) or to deploy again, oldest expiry first.

    Also marks managed certificates that have run out as Expired, so no dashboard shows them as fine.
    """
    now = now or utcnow()
    last_deployment = (
        select(Deployment.certificate_id, func.max(Deployment.id).label("deployment_id"))
        .group_by(Deployment.certificate_id)
        .subquery()
    )
    has_targets = select(DeploymentTarget.id).where(DeploymentTarget.certificate_id == Certificate.id).exists()
    due: list[Due] = []
    with session_scope() as s:
        rows = s.execute(
            select(Certificate, Deployment)
            .outerjoin(last_deployment, last_deployment.c.certificate_id == Certificate.id)
            .outerjoin(Deployment, Deployment.id == last_deployment.c.deployment_id)
            .where(
                or_(
                    Certificate.status.in_(MANAGED),
                    and_(Certificate.status.in_(RENEWING), Certificate.renewal_attempts > 0),
                ),
                Certificate.ca_connector_id.is_not(None),
                Certificate.expires_on.is_not(None),
                has_targets,
            )
            .order_by(Certificate.expires_on)
        ).all()
        for cert, deployment in rows:
            assert cert.expires_on is not None  # filtered above
            if cert.expires_on <= now and cert.status is not CertificateStatus.EXPIRED:
                cert.status = CertificateStatus.EXPIRED
                cert.status_reason = f"expired on {cert.expires_on:%Y-%m-%d %H:%M} UTC without a renewal deployed"
                repo.audit(s, actor=ACTOR, action="expire", obj=cert, outcome="failure", detail=cert.status_reason)
            if cert.renewal_attempts and cert.renewal_next_attempt_at and now < cert.renewal_next_attempt_at:
                continue  # a failed renewal waits for its backoff, then is tried again
            if _renewal_due(cert, now):
                # Names the certificate being replaced and the attempt, so a wiped database or a shared Prefect
                # server cannot match an old run and silently skip a renewal, and a failed one is tried again.
                attempt = cert.renewal_attempts + 1
                key = (
                    f"renew-cert-{cert.id}-{cert.serial_number or 'none'}-{cert.expires_on:%Y%m%d%H%M%S}"
                    f"-attempt-{attempt}"
                )
                cert.renewal_attempts = attempt
                cert.renewal_next_attempt_at = now + policy.retry_delay(attempt)
                due.append(
                    Due(
                        certificate_id=cert.id,
                        common_name=cert.common_name,
                        expires_on=cert.expires_on,
                        action="provision",
                        idempotency_key=key,
                    )
                )
            elif cert.status in NOT_SERVED_YET and not _waits_for_window(cert, now):
                since = deployment.finished_at if deployment and deployment.finished_at else cert.issued_on
                if since is None or since + REDEPLOY_AFTER <= now:
                    after = f"{deployment.id}-{deployment.finished_at or 'running'}" if deployment else "none"
                    key = f"redeploy-cert-{cert.id}-{cert.serial_number or 'none'}-after-{after}"
                    due.append(
                        Due(
                            certificate_id=cert.id,
                            common_name=cert.common_name,
                            expires_on=cert.expires_on,
                            action="deploy",
                            idempotency_key=key,
                        )
                    )
    return due


def _waits_for_window(cert: Certificate, now: datetime) -> bool:
    """A deploy run is already scheduled for a target's maintenance window: starting another would deploy twice."""
    return any(t.deploy_waits_until is not None and t.deploy_waits_until > now for t in cert.targets)


def _renewal_due(cert: Certificate, now: datetime) -> bool:
    at = renews_at(cert)
    return at is not None and at <= now


@task(
    cache_policy=NO_CACHE,
    task_run_name="start-{due.action}-cert-{due.certificate_id}",
    retries=3,
    retry_delay_seconds=backoff_with_jitter(2.0, 3),
    retry_condition_fn=retry_if_transient,
)
def start_run(due: Due) -> str:
    """Starts the run(s); the idempotency key makes a repeated tick a no-op. Deploy runs go to the bots'
    queues (one per bot that reaches the certificate's servers); a renewal is one central provision run."""
    tags = ["certfleet", "renewal"]
    if due.action == "deploy":
        try:
            runs = start_deploy_runs(due.certificate_id, idempotency_key=due.idempotency_key, tags=tags)
        except NoRoute as exc:
            note_not_started(due.certificate_id, str(exc))
            raise PermanentConnectorError(str(exc)) from None
        return ", ".join(str(run.id) for run in runs)
    run = start_flow_run(
        "provision-certificate",
        {"certificate_id": due.certificate_id},
        idempotency_key=due.idempotency_key,
        tags=tags,
    )
    return str(run.id)


def note_not_started(certificate_id: int, reason: str) -> None:
    """The certificate says why its renewal did not start (the dashboard shows it), and the audit log too."""
    with session_scope() as s:
        cert = repo.get(s, Certificate, certificate_id)
        cert.status_reason = f"renewal could not start: {reason}"
        repo.audit(s, actor=ACTOR, action="renewal-not-started", obj=cert, outcome="failure", detail=reason)
