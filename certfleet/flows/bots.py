"""check-bots: bots that stopped checking in become Inactive (see `certfleet.bots.liveness`)."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from certfleet.bots.liveness import mark_silent_bots
from certfleet.models.db import session_scope
from certfleet.models.orm import utcnow
from certfleet.settings import get_settings


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def mark_silent_bots_task() -> list[str]:
    """One transaction; re-running it changes nothing more."""
    silence = timedelta(minutes=get_settings().bot_silence_minutes)
    with session_scope() as s:
        return mark_silent_bots(s, now=utcnow(), silence=silence)


@flow(name="check-bots")
def check_bots() -> list[str]:
    """Set bots whose last heartbeat is older than CERTFLEET_BOT_SILENCE_MINUTES to Inactive."""
    silent = mark_silent_bots_task()
    if silent:
        get_run_logger().warning("no heartbeat from %s: now Inactive", ", ".join(silent))
    return silent
