"""A stored certificate's renewal point: its settings (or its CA connector's) through the policy."""

from __future__ import annotations

from datetime import datetime

from certfleet.models.orm import Certificate
from certfleet.renewal import policy


def renews_at(cert: Certificate) -> datetime | None:
    """When the certificate becomes due for renewal; None while it has no expiry (not issued yet)."""
    if cert.expires_on is None:
        return None
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
