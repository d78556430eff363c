"""A bot checks in: Last Bot Update, version, OS and address are recorded, and its status follows reality.

Pending Activation: created, never connected. Pending: connected, but nothing to do yet (no server mapped
and no Discovery purpose). Active: connected with work. Inactive: silent for too long (`liveness`).
Stopped: set by an operator; the bot keeps checking in, its queue stays paused, the status stays Stopped.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certfleet import fields
from certfleet.bots.auth import bot_for_token
from certfleet.bots.queue_state import locked_bot
from certfleet.models import repo
from certfleet.models.orm import Bot, BotPurpose, BotStatus, Server, utcnow


def has_work(session: Session, bot: Bot) -> bool:
    if bot.purpose in (BotPurpose.DISCOVERY, BotPurpose.BOTH):
        return True
    return bool(session.scalar(select(func.count(Server.id)).where(Server.bot_id == bot.id)))


def check_in(session: Session, token: str, *, version: str | None, ip_address: str | None, os: str | None) -> Bot:
    """Raises `BotTokenRefused` for an unknown, revoked or replaced token."""
    bot = locked_bot(session, bot_for_token(session, token).id)  # the status as Stop/Start last committed it
    first = bot.last_update is None
    bot.last_update = utcnow()
    if version:
        bot.version = fields.Name(40).check(version, "version")  # the column sizes of Bot
    if ip_address:
        bot.ip_address = fields.Host(64).check(ip_address, "ip_address")
    if os:
        bot.os = fields.Name(80).check(os, "os")
    if bot.status is not BotStatus.STOPPED:
        before = bot.status
        bot.status = BotStatus.ACTIVE if has_work(session, bot) else BotStatus.PENDING
        if first or before is not bot.status:
            detail = f"{before.value} -> {bot.status.value}" + (" (first check-in)" if first else "")
            repo.audit(session, actor=f"bot:{bot.name}", action="bot-check-in", obj=bot, detail=detail)
    return bot
