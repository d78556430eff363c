"""Asking ACME CAs for their Renewal Information (RFC 9773) before renew-expiring decides what is due.

For each managed certificate issued by an ACME connector whose answer is stale (its Retry-After has passed, or
the serial changed), fetch its suggested window and store the renewal time chosen in it, the explanationURL and
when to ask again. No renewalInfo in the directory, or an answer that cannot be used: the certificate falls back
to the window rule (certfleet.renewal.policy) and the reason is kept in `ari_error`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol, cast

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_logger
from sqlalchemy import or_, select

from certfleet.connectors.errors import ConnectorError
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector, Certificate, utcnow
from certfleet.renewal import ari
from certfleet.renewal.schedule import MANAGED
from certfleet.tasks.build import build_ca

ACME_KIND = "acme"
_log = get_logger("certfleet.renewal_info")  # also outside a run (tests, a direct call)
NO_ARI_RECHECK = timedelta(days=1)  # a CA without renewalInfo is asked again a day later (it may add it)


class OffersRenewalInfo(Protocol):
    def renewal_info(self, pem_chain: str, now: datetime) -> ari.RenewalInfo | None: ...


@task(cache_policy=NO_CACHE, task_run_name="refresh-renewal-info")
def refresh_renewal_info(now: datetime | None = None) -> int:
    """Polls the certificates whose renewal information is due; returns how many were asked."""
    now = now or utcnow()
    with session_scope() as s:
        rows = s.execute(
            select(Certificate.id, Certificate.ca_connector_id)
            .join(CAConnector, CAConnector.id == Certificate.ca_connector_id)
            .where(
                CAConnector.kind == ACME_KIND,
                Certificate.status.in_(MANAGED),
                Certificate.pem_chain.is_not(None),
                Certificate.expires_on > now,  # RFC 9773 section 4.3: never for an expired certificate
                or_(
                    Certificate.ari_serial_number.is_(None),
                    Certificate.ari_serial_number != Certificate.serial_number,
                    Certificate.ari_next_poll_at.is_(None),
                    Certificate.ari_next_poll_at <= now,
                ),
            )
            .order_by(Certificate.ca_connector_id, Certificate.id)
        ).all()
    cas: dict[int, OffersRenewalInfo | None] = {}
    for cert_id, connector_id in rows:
        assert connector_id is not None  # joined on it above
        with session_scope() as s:
            if connector_id not in cas:
                built = build_ca(s, repo.get(s, CAConnector, connector_id))
                cas[connector_id] = cast(OffersRenewalInfo, built) if hasattr(built, "renewal_info") else None
            ca = cas[connector_id]
            cert = repo.get(s, Certificate, cert_id)
            pem, serial = cert.pem_chain, cert.serial_number
        if ca is None or pem is None:
            continue
        try:
            info = ca.renewal_info(pem, now)
        except (ari.AriError, ConnectorError, ValueError) as exc:
            _log.warning("renewal information for certificate %s: %s", cert_id, exc)
            _record(cert_id, serial, None, now + ari.DEFAULT_POLL, error=str(exc))
            continue
        if info is None:
            _record(cert_id, serial, None, now + NO_ARI_RECHECK, error=None)
        else:
            _record(cert_id, serial, info, now + info.poll_after, error=None)
    return len(rows)


def _record(
    cert_id: int, serial: str | None, info: ari.RenewalInfo | None, next_poll: datetime, *, error: str | None
) -> None:
    with session_scope() as s:
        cert = repo.get(s, Certificate, cert_id)
        if cert.serial_number != serial:
            return  # re-issued meanwhile: the answer was about the previous certificate
        previous = cert.ari_renew_at if cert.ari_serial_number == serial else None
        cert.ari_serial_number = serial
        cert.ari_next_poll_at = next_poll
        cert.ari_error = error
        if info is None:
            cert.ari_renew_at = cert.ari_explanation_url = None
            return
        cert.ari_renew_at = ari.choose(info, previous)
        cert.ari_explanation_url = info.explanation_url
