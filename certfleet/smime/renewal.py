"""S/MIME certificates renewed by the renewal schedule, with the TLS policy (certfleet.renewal.policy).

A user's certificate is due when its remaining lifetime falls below min(days, fraction x lifetime), shrunk by the
same stable jitter; days and fraction come from the issuing CA connector (else 30 days and one third, a TLS
certificate's defaults). renew-expiring then starts one smime-rollout run (renewal=True) for the due users: a new
key and CSR, the CA's certificate, delivery again, through the rollout's own steps. Each start counts an attempt
and sets the next allowed one (1 h, 2 h, 4 h ... 24 h); delivery resets both.

Never renewed: an ignored or revoked user, a user the directory lists disabled or no longer lists.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from certfleet.models.orm import CAConnector, SmimeOrder, SmimeStatus, SmimeUser
from certfleet.renewal import policy

DEFAULT_RENEW_BEFORE_DAYS = 30  # a TLS certificate's default (Certificate.renew_before_days)
# A renewal under way (or failed) leaves the user CSR Pending or Certificate Issued; it stays on the work list.
RENEWING = (SmimeStatus.CSR_PENDING, SmimeStatus.CERTIFICATE_ISSUED)


class DueUser(BaseModel):
    user_id: int
    email: str
    expires_on: datetime
    serial_number: str
    attempt: int


def renews_at(user: SmimeUser, current: SmimeOrder, connector: CAConnector) -> datetime | None:
    """When the user's current certificate (`current`, the newest order the CA issued) becomes due."""
    expires_on = current.expires_on or user.expires_on
    if expires_on is None:
        return None
    chosen = policy.resolve(
        connector.renew_before_days or DEFAULT_RENEW_BEFORE_DAYS, None, connector.renew_before_fraction
    )
    seed = policy.seed_for(user.id, f"smime:{current.serial_number or ''}")
    return policy.renew_at(chosen, expires_on=expires_on, not_before=current.not_before, seed=seed)


def find_due(session: Session, now: datetime) -> list[DueUser]:
    """Users to renew now, oldest expiry first; counts their attempt and sets the backoff before the next one."""
    current = (
        select(SmimeOrder.user_id, func.max(SmimeOrder.id).label("order_id"))
        .where(SmimeOrder.serial_number.is_not(None))
        .group_by(SmimeOrder.user_id)
        .subquery()
    )
    rows = session.execute(
        select(SmimeUser, SmimeOrder, CAConnector)
        .join(current, current.c.user_id == SmimeUser.id)
        .join(SmimeOrder, SmimeOrder.id == current.c.order_id)
        .join(CAConnector, CAConnector.id == SmimeOrder.ca_connector_id)
        .where(
            SmimeUser.directory_state.is_(None),
            or_(
                and_(
                    SmimeUser.status == SmimeStatus.CERTIFICATE_INSTALLED,
                    SmimeUser.expires_on <= now + timedelta(days=policy.MAX_DAYS),  # no window is longer
                ),
                and_(SmimeUser.status.in_(RENEWING), SmimeUser.renewal_attempts > 0),
            ),
        )
        .order_by(SmimeUser.expires_on, SmimeUser.id)
    ).all()
    due: list[DueUser] = []
    for user, order, connector in rows:
        if user.renewal_attempts and user.renewal_next_attempt_at and now < user.renewal_next_attempt_at:
            continue  # a failed renewal waits for its backoff
        if user.status is SmimeStatus.CERTIFICATE_INSTALLED:
            at = renews_at(user, order, connector)
            if at is None or now < at:
                continue
        user.renewal_attempts += 1
        user.renewal_next_attempt_at = now + policy.retry_delay(user.renewal_attempts)
        expires_on = order.expires_on or user.expires_on
        assert expires_on is not None  # an issued order has an expiry
        due.append(
            DueUser(
                user_id=user.id,
                email=user.email,
                expires_on=expires_on,
                serial_number=order.serial_number or "",
                attempt=user.renewal_attempts,
            )
        )
    return due


def idempotency_key(due: list[DueUser]) -> str:
    """Names the certificates being replaced and the attempts: a repeated tick starts nothing twice, a later
    attempt (after its backoff) starts again."""
    names = ",".join(f"{d.user_id}:{d.serial_number}:{d.attempt}" for d in sorted(due, key=lambda d: d.user_id))
    return "renew-smime-" + hashlib.sha256(names.encode()).hexdigest()[:40]
