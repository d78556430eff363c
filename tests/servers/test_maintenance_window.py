"""Maintenance windows with a controlled clock: open now, the next opening, the deadline, time zones, input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certfleet.servers.maintenance import Window, WindowError, check, deploy_at

# Saturdays 02:00 Berlin time for 4 h. 2026-12-05 is a Saturday; Berlin is UTC+1 in December.
SAT = Window("0 2 * * SAT", timedelta(hours=4), "Europe/Berlin")
WEEK = timedelta(days=7)
FAR = datetime(2027, 6, 1, tzinfo=UTC)  # an expiry far away: the window alone decides


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_inside_the_window_deploys_now() -> None:
    for now in ("2026-12-05T01:00:00", "2026-12-05T02:30:00", "2026-12-05T04:59:59"):
        assert SAT.opening(at(now)) is None
        assert deploy_at(SAT, now=at(now), expires_on=FAR, deadline=WEEK) is None


def test_outside_the_window_waits_for_the_next_start_in_the_servers_time_zone() -> None:
    assert deploy_at(SAT, now=at("2026-12-04T20:00:00"), expires_on=FAR, deadline=WEEK) == at("2026-12-05T01:00:00")
    # just after it closed (05:00 UTC = 06:00 Berlin): the next Saturday
    assert deploy_at(SAT, now=at("2026-12-05T05:00:00"), expires_on=FAR, deadline=WEEK) == at("2026-12-12T01:00:00")
    # in summer Berlin is UTC+2: the same local 02:00 is 00:00 UTC
    assert SAT.opening(at("2027-07-01T12:00:00")) == at("2027-07-03T00:00:00")
    utc = Window("30 22 * * *", timedelta(minutes=30))
    assert utc.opening(at("2026-12-04T22:59:59")) is None
    assert utc.opening(at("2026-12-04T23:00:00")) == at("2026-12-05T22:30:00")


def test_the_deadline_forces_now_and_brings_a_late_window_forward() -> None:
    now = at("2026-12-04T20:00:00")  # Friday; the window opens Saturday 01:00 UTC
    assert deploy_at(SAT, now=now, expires_on=now + timedelta(days=6, hours=23), deadline=WEEK) is None
    assert deploy_at(SAT, now=now, expires_on=now - timedelta(days=1), deadline=WEEK) is None
    # expiry in 7 days 2 hours: the deadline (expiry - 7 days) comes before Saturday's opening
    assert deploy_at(SAT, now=now, expires_on=now + WEEK + timedelta(hours=2), deadline=WEEK) == now + timedelta(
        hours=2
    )
    # no window: always now; unknown expiry: the window alone
    assert deploy_at(None, now=now, expires_on=FAR, deadline=WEEK) is None
    assert deploy_at(SAT, now=now, expires_on=None, deadline=WEEK) == at("2026-12-05T01:00:00")


def test_describe_names_the_servers_time_and_utc() -> None:
    assert SAT.describe(at("2026-12-05T01:00:00")) == "2026-12-05 02:00 Europe/Berlin (2026-12-05 01:00 UTC)"
    assert Window("0 2 * * *", timedelta(hours=1)).describe(at("2026-12-05T02:00:00")) == "2026-12-05 02:00 UTC"


@pytest.mark.parametrize(
    ("cron", "minutes", "zone", "field"),
    [
        ("0 2 * * FOO", 240, "UTC", "maintenance_cron"),
        ("0 2 * *", 240, "UTC", "maintenance_cron"),
        ("@daily", 240, "UTC", "maintenance_cron"),
        ("0 0 30 2 *", 60, "UTC", "maintenance_cron"),
        ("0 2 * * SAT", 0, "UTC", "maintenance_duration_minutes"),
        ("0 2 * * SAT", 10081, "UTC", "maintenance_duration_minutes"),
        ("0 2 * * SAT", None, "UTC", "maintenance_duration_minutes"),
        (None, 240, "UTC", "maintenance_cron"),
        ("0 2 * * SAT", 240, "Mars/Olympus", "maintenance_timezone"),
        ("0 2 * * SAT", 240, "europe/berlin", "maintenance_timezone"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(
    cron: str | None, minutes: int | None, zone: str, field: str
) -> None:
    with pytest.raises(WindowError) as refused:
        check(cron, minutes, zone)
    assert refused.value.field == field


def test_good_settings_pass() -> None:
    check("0 2 * * SAT", 240, "Europe/Berlin")
    check("*/15 1-3 * * 1-5", 10080, "UTC")
    check(None, None, "UTC")
