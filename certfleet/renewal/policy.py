"""The renewal policy: when a certificate is due, spread over a fleet, and how failed renewals back off.

Pure functions of the certificate's dates and settings, so every caller (the renew-expiring task, the dashboard)
tells the same story. A certificate is renewed when its remaining lifetime falls below its window:

    window = min(renew_before_days, fraction * lifetime)      (fraction defaults to 1/3, as cert-manager does)

so no setting renews a certificate before (1 - fraction) of its lifetime has passed: a 30-day certificate with
the default 30-day window is renewed after 20 days, not at every run. Each certificate's window is then shrunk by
a stable jitter (up to 10 % of it, seeded by the certificate's id and serial) so a fleet issued together does not
renew together; shrinking, not growing, keeps the fraction a hard limit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_FRACTION = 1 / 3
JITTER_SHARE = 0.10  # at most this share of the window is given up, per certificate
FIRST_RETRY = timedelta(hours=1)
LAST_RETRY = timedelta(hours=24)
# Bounds the field rules enforce; the fraction is open on both ends: 0 never renews, 1 renews at issue.
MIN_DAYS, MAX_DAYS = 1, 365


@dataclass(frozen=True)
class Policy:
    renew_before_days: int
    fraction: float = DEFAULT_FRACTION


def resolve(renew_before_days: int, fraction: float | None, connector_fraction: float | None = None) -> Policy:
    """The certificate's own fraction wins, then its CA connector's default, then one third."""
    chosen = fraction if fraction is not None else connector_fraction
    return Policy(renew_before_days, DEFAULT_FRACTION if chosen is None else chosen)


def window(policy: Policy, lifetime: timedelta | None) -> timedelta:
    """How long before expiry renewal starts, before jitter. Without a known lifetime only the days apply."""
    days = timedelta(days=policy.renew_before_days)
    if lifetime is None or lifetime <= timedelta(0):
        return days
    return min(days, lifetime * policy.fraction)


def jitter_share(seed: str) -> float:
    """A share in [0, JITTER_SHARE) that depends only on the seed: the same certificate gets the same one on
    every run (no random state to keep), different certificates get different ones."""
    digest = hashlib.sha256(seed.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * JITTER_SHARE


def renew_at(policy: Policy, *, expires_on: datetime, not_before: datetime | None, seed: str) -> datetime:
    """The moment the certificate becomes due."""
    lifetime = expires_on - not_before if not_before is not None else None
    full = window(policy, lifetime)
    return expires_on - full * (1 - jitter_share(seed))


def is_due(policy: Policy, *, now: datetime, expires_on: datetime, not_before: datetime | None, seed: str) -> bool:
    return renew_at(policy, expires_on=expires_on, not_before=not_before, seed=seed) <= now


def retry_delay(attempts: int) -> timedelta:
    """Wait after the attempts-th failed renewal: 1 h, 2 h, 4 h, ... at most 24 h."""
    if attempts < 1:
        return timedelta(0)
    return min(FIRST_RETRY * (1 << min(attempts - 1, 16)), LAST_RETRY)


def seed_for(certificate_id: int, serial_number: str | None) -> str:
    return f"{certificate_id}:{serial_number or ''}"
