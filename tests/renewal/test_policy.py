"""The renewal policy: due dates, the fraction cap, stable bounded jitter, and the retry backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certfleet.renewal import policy
from certfleet.renewal.policy import Policy

ISSUED = datetime(2026, 1, 1, tzinfo=UTC)


def _renews_after(
    lifetime_days: int, days: int, fraction: float = policy.DEFAULT_FRACTION, seed: str = "1:ab"
) -> float:
    """Days after issue at which the certificate becomes due."""
    expires = ISSUED + timedelta(days=lifetime_days)
    at = policy.renew_at(Policy(days, fraction), expires_on=expires, not_before=ISSUED, seed=seed)
    return (at - ISSUED) / timedelta(days=1)


def test_a_30_day_certificate_with_a_30_day_window_is_due_only_after_20_days() -> None:
    expires = ISSUED + timedelta(days=30)
    p = Policy(30)
    for seed in (f"{n}:serial" for n in range(200)):
        assert not policy.is_due(p, now=ISSUED, expires_on=expires, not_before=ISSUED, seed=seed)
        assert not policy.is_due(p, now=ISSUED + timedelta(days=20), expires_on=expires, not_before=ISSUED, seed=seed)
        # jitter gives up at most 10 % of the 10-day window: due by day 21
        assert policy.is_due(p, now=ISSUED + timedelta(days=21), expires_on=expires, not_before=ISSUED, seed=seed)


def test_a_90_day_certificate_renews_at_its_days_or_its_fraction_whichever_is_later() -> None:
    assert 60 <= _renews_after(90, 30) < 63  # window 30 days = a third: due after 60 days (+ jitter)
    assert 80 <= _renews_after(90, 10) < 81  # a shorter day window wins
    assert 60 <= _renews_after(90, 45) < 63  # a longer one is capped at a third


def test_a_7_day_certificate_renews_in_its_last_third() -> None:
    renews = _renews_after(7, 30)
    assert 7 * 2 / 3 <= renews < 7 * 2 / 3 + 0.1 * 7 / 3 + 1e-9


def test_a_fraction_override_moves_the_point() -> None:
    assert 45 <= _renews_after(90, 60, fraction=0.5) < 49.5


def test_no_lifetime_known_means_the_days_alone() -> None:
    expires = ISSUED + timedelta(days=100)
    at = policy.renew_at(Policy(30), expires_on=expires, not_before=None, seed="x")
    assert expires - timedelta(days=30) <= at < expires - timedelta(days=27)


def test_jitter_is_stable_bounded_and_spreads_a_fleet() -> None:
    shares = [policy.jitter_share(policy.seed_for(n, "0a1b")) for n in range(500)]
    assert shares == [policy.jitter_share(policy.seed_for(n, "0a1b")) for n in range(500)]
    assert all(0 <= s < policy.JITTER_SHARE for s in shares)
    assert len({round(s, 6) for s in shares}) > 490  # a fleet issued together does not renew together
    assert min(shares) < 0.01  # uses the whole range
    assert max(shares) > 0.09
    assert policy.jitter_share("7:aa") != policy.jitter_share("7:ab")  # a new serial, a new point


def test_the_fraction_is_a_hard_limit_whatever_the_jitter() -> None:
    for n in range(300):
        assert _renews_after(30, 365, seed=str(n)) >= 20


@pytest.mark.parametrize(("attempts", "hours"), [(0, 0), (1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 24), (50, 24)])
def test_backoff_doubles_to_a_day(attempts: int, hours: int) -> None:
    assert policy.retry_delay(attempts) == timedelta(hours=hours)


def test_resolve_prefers_the_certificate_then_the_connector() -> None:
    assert policy.resolve(30, None) == Policy(30, policy.DEFAULT_FRACTION)
    assert policy.resolve(30, None, 0.5) == Policy(30, 0.5)
    assert policy.resolve(30, 0.25, 0.5) == Policy(30, 0.25)
