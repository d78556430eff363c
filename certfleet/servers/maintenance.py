"""A server's maintenance window: when deployments to it may run.

A window opens at each time its cron expression names (five fields, read in the server's time zone) and stays
open for its duration. A deployment to a server with a window runs at once when the window is open; otherwise
its deploy-certificate run is scheduled in Prefect for the next opening (no process sleeps until then). The
deadline overrides the window: when the certificate the server serves expires within the deadline
(`CERTFLEET_MAINTENANCE_DEADLINE_DAYS`), the deployment goes now, and a next opening later than the deadline is
brought forward to it. Pure functions of the window and the clock, so tests run them with any `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError

MAX_DURATION_MINUTES = 7 * 24 * 60  # a week: a longer window would always be open
DEFAULT_TIMEZONE = "UTC"


class WindowError(ValueError):
    """A maintenance-window setting that cannot be used; `field` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check(cron: str | None, duration_minutes: int | None, timezone: str | None) -> None:
    """Refuses, naming the field, a cron expression cronsim cannot read, a duration outside 1 minute to a week,
    an unknown IANA time zone, or a cron expression without a duration (and the other way round)."""
    for field, problem in (
        ("maintenance_timezone", timezone_problem(timezone)),
        ("maintenance_cron", cron_problem(cron)),
        ("maintenance_duration_minutes", duration_problem(duration_minutes)),
    ):
        if problem:
            raise WindowError(problem, field)
    if cron is not None and duration_minutes is None:
        raise WindowError(
            "a maintenance window needs a duration in minutes with its cron expression",
            "maintenance_duration_minutes",
        )
    if cron is None and duration_minutes is not None:
        raise WindowError("a maintenance window needs a cron expression with its duration", "maintenance_cron")


def cron_problem(cron: str | None) -> str | None:
    if cron is None:
        return None
    try:
        next(CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC)))
    except (CronSimError, StopIteration) as exc:
        return (
            f"maintenance_cron {cron!r} is not a cron expression of five fields "
            f"(minute hour day month weekday, e.g. '0 2 * * SAT'): {exc}"
        )
    return None


def duration_problem(minutes: int | None) -> str | None:
    if minutes is None or (not isinstance(minutes, bool) and 1 <= minutes <= MAX_DURATION_MINUTES):
        return None
    return f"maintenance_duration_minutes must be 1 to {MAX_DURATION_MINUTES} (a week), not {minutes}"


def timezone_problem(timezone: str | None) -> str | None:
    if timezone is None or timezone in _zones():
        return None
    return f"maintenance_timezone {timezone!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)"


@dataclass(frozen=True)
class Window:
    cron: str
    duration: timedelta
    timezone: str = DEFAULT_TIMEZONE

    @classmethod
    def of(cls, cron: str | None, duration_minutes: int | None, timezone: str | None) -> Window | None:
        """The server's window, None when it has none (deployments go at any time)."""
        if not cron or not duration_minutes:
            return None
        return cls(cron, timedelta(minutes=duration_minutes), timezone or DEFAULT_TIMEZONE)

    def opening(self, now: datetime) -> datetime | None:
        """None while a window is open at `now`; otherwise the start of the next one (UTC)."""
        local = now.astimezone(ZoneInfo(self.timezone))
        # cronsim's reverse walk yields times strictly before its start: a microsecond later counts `now` itself.
        last = next(CronSim(self.cron, local + timedelta(microseconds=1), reverse=True))
        if last <= local < last + self.duration:
            return None
        return next(CronSim(self.cron, local)).astimezone(UTC)

    def describe(self, at: datetime) -> str:
        """`2026-12-05 02:00 Europe/Berlin (01:00 UTC)`: the server's own time first, as its owners plan it."""
        local = at.astimezone(ZoneInfo(self.timezone))
        if self.timezone == "UTC":
            return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        return f"{local:%Y-%m-%d %H:%M} {self.timezone} ({at.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"


def deploy_at(
    window: Window | None, *, now: datetime, expires_on: datetime | None, deadline: timedelta
) -> datetime | None:
    """When a deployment to the server runs: None for now, or the time its run is scheduled for.

    `expires_on` is the expiry of what the server serves (unknown: the window alone decides).
    """
    if window is None:
        return None
    latest = expires_on - deadline if expires_on is not None else None
    if latest is not None and latest <= now:
        return None  # the deadline has come: the certificate must not run out waiting for a window
    opening = window.opening(now)
    if opening is None:
        return None
    return min(opening, latest) if latest is not None else opening
