"""Revoking a certificate: ask the connector that issued it, then record status Revoked with reason and time.

Both steps are idempotent, so a retried or re-run flow never fails on work already done: a certificate already
Revoked is left as it is, and a CA that answers "already revoked" (a retry after it did revoke) counts as done.
"""

from __future__ import annotations

from cryptography import x509
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from certfleet.connectors.errors import AlreadyRevoked, PermanentConnectorError
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector, Certificate, CertificateStatus, utcnow
from certfleet.revocation import issuing_order, parse_reason
from certfleet.settings import get_settings
from certfleet.tasks.build import build_ca
from certfleet.tasks.retry import backoff_with_jitter, retry_if_transient

ACTOR = "flow:revoke-certificate"
_BASE_DELAY = get_settings().retry_base_delay_s


@task(
    cache_policy=NO_CACHE,
    task_run_name="revoke-at-ca-cert-{certificate_id}",
    retries=4,
    retry_delay_seconds=backoff_with_jitter(_BASE_DELAY, 4),
    retry_condition_fn=retry_if_transient,
)
def revoke_at_ca(certificate_id: int, reason: str, serial_number: str | None = None) -> str:
    """Call the revoke of the connector that issued the serial (default: the current one); returns the serial."""
    flags = parse_reason(reason)
    with session_scope() as s:
        cert = repo.get(s, Certificate, certificate_id)
        serial = serial_number or cert.serial_number or ""
        if serial == cert.serial_number and cert.status is CertificateStatus.REVOKED:
            return serial
        order = issuing_order(s, cert, serial)
        if order is None:
            raise PermanentConnectorError(
                f"certificate {certificate_id}: serial {serial or '(none)'} was not issued through certfleet"
            )
        connector_id = order.ca_connector_id
    revoke_serial(connector_id, serial, flags)
    return serial


def revoke_serial(connector_id: int, serial: str, flags: x509.ReasonFlags) -> None:
    """The connector's revoke for a hex serial (TLS and S/MIME alike); a CA that says "already revoked" (a retry
    after it did revoke) counts as done."""
    try:
        with session_scope() as s:  # the built-in CA writes its revocation in the same unit of work
            build_ca(s, repo.get(s, CAConnector, connector_id)).revoke(int(serial, 16), flags)
    except AlreadyRevoked as exc:
        get_run_logger().info("the CA had revoked serial %s already: %s", serial, exc)


@task(cache_policy=NO_CACHE, task_run_name="record-revoked-cert-{certificate_id}")
def record_revoked(certificate_id: int, serial: str, reason: str) -> None:
    """The current serial: status Revoked with reason and time. A serial it replaced: an audit event."""
    with session_scope() as s:
        cert = repo.get(s, Certificate, certificate_id)
        if serial != cert.serial_number:
            repo.audit(s, actor=ACTOR, action="revoke", obj=cert, detail=f"previous serial {serial}; {reason}")
            return
        if cert.status is CertificateStatus.REVOKED:
            return  # recorded by an earlier run: keep its time
        cert.status = CertificateStatus.REVOKED
        cert.revocation_reason = reason
        cert.revoked_at = utcnow()
        cert.status_reason = f"revoked at its CA ({reason})"
        repo.audit(s, actor=ACTOR, action="revoke", obj=cert, detail=f"serial {serial}; {reason}")
