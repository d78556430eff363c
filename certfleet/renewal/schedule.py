"""A stored certificate's renewal point: its settings (or its CA connector's) through the policy."""

from __future__ import annotations

from datetime import datetime

from certfleet.models.orm import Certificate, CertificateStatus
from certfleet.renewal import policy

# What renew-expiring renews (with a CA connector, an expiry and a deployment target).
MANAGED = (
    CertificateStatus.ISSUED,
    CertificateStatus.DEPLOYED,
    CertificateStatus.ROLLED_BACK,
    CertificateStatus.DEPLOYMENT_FAILED,
    CertificateStatus.EXPIRED,
)
# A renewal under way (or failed) leaves the certificate Initiated or Order Pending; it stays on the work list.
RENEWING = (CertificateStatus.INITIATED, CertificateStatus.ORDER_PENDING)


def renews_at(cert: Certificate) -> datetime | None:
    """When the certificate becomes due for renewal; None while it has no expiry (not issued yet).

    The time chosen in its ACME CA's suggested window (RFC 9773) when the CA gave one for the current serial;
    otherwise the window rule of the policy."""
    if cert.expires_on is None:
        return None
    ari_time = ari_renews_at(cert)
    if ari_time is not None:
        return ari_time
    connector = cert.ca_connector
    chosen = policy.resolve(
        cert.renew_before_days, cert.renew_before_fraction, connector.renew_before_fraction if connector else None
    )
    return policy.renew_at(
        chosen,
        expires_on=cert.expires_on,
        not_before=cert.not_before or cert.issued_on,
        seed=policy.seed_for(cert.id, cert.serial_number),
    )


def ari_renews_at(cert: Certificate) -> datetime | None:
    """The ARI renewal time, if it is about the current certificate (not one it replaced)."""
    if cert.ari_renew_at is None or cert.ari_serial_number != cert.serial_number:
        return None
    return cert.ari_renew_at


def next_renewal(cert: Certificate) -> datetime | None:
    """renews_at for a certificate renew-expiring looks after; None for one it leaves alone (discovered, ignored,
    revoked, without a CA connector or a target), so no page promises a renewal that will not happen."""
    managed = cert.status in MANAGED or (cert.status in RENEWING and cert.renewal_attempts > 0)
    if not managed or cert.ca_connector_id is None or not cert.targets:
        return None
    return renews_at(cert)
