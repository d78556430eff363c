"""A bot that stops checking in becomes Inactive, so the dashboard shows which bots need attention.

A bot's heartbeat (`POST /api/v1/bots/heartbeat`) sets Last Bot Update and makes it Active again. The
`check-bots` flow, every five minutes, sets Active bots whose last heartbeat is older than
CERTFLEET_BOT_SILENCE_MINUTES to Inactive and audits each change. Stopped bots stay Stopped, bots that never
checked in stay Pending, and the local bot (it runs inside certfleet itself) is never silent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from certfleet.models import repo
from certfleet.models.bootstrap import LOCAL_BOT_NAME
from certfleet.models.orm import Bot, BotStatus


def mark_silent_bots(session: Session, *, now: datetime, silence: timedelta) -> list[str]:
    """Set Active bots silent for longer than `silence` to Inactive; returns their names."""
    cutoff = now - silence
    silent = session.scalars(
        select(Bot)
        .where(Bot.name != LOCAL_BOT_NAME)
        .where(
            or_(
                and_(Bot.status == BotStatus.ACTIVE, or_(Bot.last_update.is_(None), Bot.last_update < cutoff)),
                # Connected once, nothing to do yet, and now silent: just as gone as an Active bot.
                and_(Bot.status == BotStatus.PENDING, Bot.last_update < cutoff),
            )
        )
        .order_by(Bot.id)
    ).all()
    for bot in silent:
        bot.status = BotStatus.INACTIVE
        since = f"{bot.last_update:%Y-%m-%d %H:%M} UTC" if bot.last_update else "ever"
        repo.audit(
            session,
            actor="certfleet",
            action="bot-inactive",
            obj=bot,
            detail=f"no heartbeat since {since} (more than {silence.total_seconds() / 60:g} minutes)",
        )
    return [bot.name for bot in silent]
