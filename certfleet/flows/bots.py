"""check-bots: bots that stopped checking in become Inactive (see `certfleet.bots.liveness`)."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select

from certfleet.bots import queue_state
from certfleet.bots.liveness import mark_silent_bots
from certfleet.deployments.api import this_process_api
from certfleet.models.db import session_scope
from certfleet.models.orm import Bot, utcnow
from certfleet.models.repo import NotFound
from certfleet.settings import get_settings


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def mark_silent_bots_task() -> list[str]:
    """One transaction; re-running it changes nothing more."""
    silence = timedelta(minutes=get_settings().bot_silence_minutes)
    with session_scope() as s:
        return mark_silent_bots(s, now=utcnow(), silence=silence)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def keep_queues_paused_as_bots_task() -> list[str]:
    """A Stopped bot's queue is paused, every other bot's queue is not (also when a pause was missed).

    One bot at a time, each with its row locked (`queue_state`): a Stop or Start meanwhile waits, then writes."""
    with session_scope() as s:
        ids = list(s.scalars(select(Bot.id).order_by(Bot.id)))
    api, auth = this_process_api()
    done = []
    for bot_id in ids:
        with session_scope() as s:
            try:
                bot = queue_state.locked_bot(s, bot_id)
            except NotFound:  # deleted meanwhile
                continue
            wrote = queue_state.apply(api, auth, bot)
        if wrote.changed:
            done.append(wrote.detail)
    return done


@flow(name="check-bots")
def check_bots() -> list[str]:
    """Mark bots silent for CERTFLEET_BOT_SILENCE_MINUTES Inactive; keep Stopped bots' queues paused.

    Every other bot's queue is resumed, so a pause or resume that failed at the click is made good here.
    """
    silent = mark_silent_bots_task()
    if silent:
        get_run_logger().warning("no heartbeat from %s: now Inactive", ", ".join(silent))
    changed = keep_queues_paused_as_bots_task()
    if changed:
        get_run_logger().info("queues: %s", ", ".join(changed))
    return silent
