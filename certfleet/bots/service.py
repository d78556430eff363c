"""Bots, the domain side: create (token shown once), configure, stop/start (pausing the bot's Prefect queue),
tokens, delete, counts. The dashboard's pages and API adapt HTTP to these; check-in is `checkin`, routing
`routing`, liveness `liveness`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from certfleet import fields, tokens
from certfleet.bots import queue_state
from certfleet.bots.checkin import has_work
from certfleet.deployments.api import configured_api_url, prefect_auth_string
from certfleet.deployments.names import bot_queue
from certfleet.fields import InputError
from certfleet.models import repo
from certfleet.models.bootstrap import LOCAL_BOT_NAME
from certfleet.models.orm import Bot, BotPurpose, BotStatus, Certificate, Server, utcnow

DESCRIPTION_MAX = 2000  # the column is TEXT; a description longer than a page is a paste mistake


@dataclass(frozen=True)
class BotFields:
    """None is "no value"; any string obeys its `certfleet.fields` rule and is stored exactly."""

    name: str
    ip_address: str | None = None
    description: str | None = None
    purpose: str = BotPurpose.PROVISIONING.value
    group: str | None = None
    os: str | None = None
    tags: str | list[str] | None = None


@dataclass(frozen=True)
class CreatedBot:
    bot: Bot
    token: str  # shown once, never stored


def _apply(session: Session, bot: Bot, f: BotFields) -> None:
    name = fields.Name(120).check(f.name, "name")
    clash = session.scalar(
        select(Bot.id).where(or_(Bot.name == name, func.lower(Bot.name) == name.lower()), Bot.id != (bot.id or -1))
    )
    if clash is not None:
        raise InputError(f"a bot named {name!r} already exists; choose another name", field="name")
    bot.name = name
    bot.ip_address = fields.Host(64).check_optional(f.ip_address, "ip_address")
    bot.description = fields.Description(DESCRIPTION_MAX).check_optional(f.description, "description")
    bot.purpose = fields.choice(BotPurpose, f.purpose or BotPurpose.PROVISIONING.value, "purpose")
    bot.group_name = fields.Name(120).check_optional(f.group, "group")
    bot.os = fields.Name(80).check_optional(f.os, "os")
    bot.tags = fields.tag_input(f.tags)


def create_bot(session: Session, values: BotFields, actor: str) -> CreatedBot:
    bot = Bot(status=BotStatus.PENDING_ACTIVATION, created_by=actor, created_at=utcnow())
    _apply(session, bot, values)
    bot.work_queue = ""  # its id names it, once known
    made = tokens.new_token(tokens.BOT_TOKEN_PREFIX)
    bot.token_hash, bot.token_prefix = made.hash, made.prefix
    session.add(bot)
    session.flush()
    bot.work_queue = bot_queue(bot.id)
    repo.audit(session, actor=actor, action="create-bot", obj=bot, detail=bot.name)
    return CreatedBot(bot, made.token)


def configure_bot(session: Session, bot_id: int, values: BotFields, actor: str) -> Bot:
    bot = repo.get(session, Bot, bot_id)
    _apply(session, bot, values)
    repo.audit(session, actor=actor, action="configure-bot", obj=bot, detail=bot.name)
    return bot


def new_token(session: Session, bot_id: int, actor: str) -> CreatedBot:
    """A new token replaces the old one at once (the old one stops working)."""
    bot = repo.get(session, Bot, bot_id)
    made = tokens.new_token(tokens.BOT_TOKEN_PREFIX)
    bot.token_hash, bot.token_prefix = made.hash, made.prefix
    repo.audit(session, actor=actor, action="regenerate-bot-token", obj=bot, detail=made.prefix + "…")
    return CreatedBot(bot, made.token)


def revoke_token(session: Session, bot_id: int, actor: str) -> Bot:
    bot = repo.get(session, Bot, bot_id)
    bot.token_hash = bot.token_prefix = None
    repo.audit(session, actor=actor, action="revoke-bot-token", obj=bot)
    return bot


def set_running(session: Session, bot_id: int, running: bool, actor: str) -> Bot:
    """Stop pauses the bot's Prefect queue (its runs wait there; its heartbeats are answered 'Stopped'); Start
    resumes it. The queue is (un)paused at once when Prefect answers, else by the next heartbeat or check-bots;
    the bot's row stays locked until the caller commits, so no heartbeat writes the queue in between
    (`queue_state`)."""
    bot = queue_state.locked_bot(session, bot_id)
    if running and bot.status is BotStatus.STOPPED:
        if bot.last_update is None:
            bot.status = BotStatus.PENDING_ACTIVATION
        else:
            bot.status = BotStatus.ACTIVE if has_work(session, bot) else BotStatus.PENDING
    elif not running:
        bot.status = BotStatus.STOPPED
    queue = queue_state.apply(configured_api_url(), prefect_auth_string(), bot)
    detail = f"{bot.status.value}; {queue.detail}"
    repo.audit(session, actor=actor, action="start-bot" if running else "stop-bot", obj=bot, detail=detail)
    return bot


def _updated(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def delete_bot(session: Session, bot_id: int, actor: str) -> str:
    bot = repo.get(session, Bot, bot_id)
    if bot.name == LOCAL_BOT_NAME:
        raise InputError("the local bot runs inside certfleet itself and cannot be deleted; stop it instead")
    servers = _updated(session.execute(update(Server).where(Server.bot_id == bot.id).values(bot_id=None)))
    certs = _updated(
        session.execute(
            update(Certificate).where(Certificate.provisioning_bot_id == bot.id).values(provisioning_bot_id=None)
        )
    )
    session.execute(update(Certificate).where(Certificate.discovery_bot_id == bot.id).values(discovery_bot_id=None))
    detail = f"{bot.name}; unmapped {servers} servers and {certs} certificates"
    repo.audit(session, actor=actor, action="delete-bot", obj=bot, detail=detail)
    session.delete(bot)
    return detail


def counts(session: Session) -> dict[str, int]:
    rows = dict(session.execute(select(Bot.status, func.count(Bot.id)).group_by(Bot.status)).all())
    total = sum(rows.values())
    return {
        "total": total,
        "active": rows.get(BotStatus.ACTIVE, 0),
        "pending": rows.get(BotStatus.PENDING, 0) + rows.get(BotStatus.PENDING_ACTIVATION, 0),
        "stopped": rows.get(BotStatus.STOPPED, 0),
    }


def choices(session: Session) -> list[tuple[int, str]]:
    """(id, name) of every bot, for the 'map to bot' selects."""
    return [(i, n) for i, n in session.execute(select(Bot.id, Bot.name).order_by(Bot.name)).all()]
