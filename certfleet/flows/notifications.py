"""check-notifications: find notification events in the tables and send the outbox (see `certfleet.notifications`).

The same check also runs on a timer inside the dashboard process, so a stopped Prefect worker does not silence
the dead man's switch; the outbox's unique (event, channel) key makes the two send each notification once.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from certfleet.notifications.checks import run_check


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def check_notifications_task() -> dict[str, int]:
    """Idempotent: events already in the outbox are not queued again; a claimed row is not sent twice."""
    return run_check()


@flow(name="check-notifications")
def check_notifications() -> dict[str, int]:
    """Queue notifications for new events (failures, expiry thresholds, inactive bots, a stale renewal
    schedule) and send those due; a failed send stays in the outbox for its next attempt."""
    counts = check_notifications_task()
    get_run_logger().info(
        "%d event(s) seen, %d notification(s) queued, %d sent, %d failed",
        counts["events"],
        counts["queued"],
        counts["sent"],
        counts["failed"],
    )
    return counts
