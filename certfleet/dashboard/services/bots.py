"""Provisioning bots: the list, create (token shown once), configure, stop/start, tokens, delete, heartbeat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from certfleet.bots.checkin import has_work
from certfleet.bots.queues import QueueError, set_paused
from certfleet.dashboard import listing, security
from certfleet.dashboard.errors import InputError
from certfleet.dashboard.listing import ColType, Column, ListSpec
from certfleet.dashboard.services import common
from certfleet.deployments.api import configured_api_url, prefect_auth_string
from certfleet.deployments.names import bot_queue
from certfleet.models import repo
from certfleet.models.bootstrap import LOCAL_BOT_NAME
from certfleet.models.orm import Bot, BotPurpose, BotStatus, Certificate, Server, utcnow

BOTS = ListSpec(
    name="bots",
    title="Provisioning Bots",
    base=lambda: select(Bot.id),
    pk=Bot.id,
    default_sort="name",
    columns=(
        Column("name", "Bot Name", Bot.name, default=True, width=22),
        Column("ip_address", "IP Address", Bot.ip_address, default=True, width=16),
        Column("description", "Description", Bot.description, default=True, width=30),
        Column("status", "Status", Bot.status, ColType.ENUM, default=True, choices=tuple(BotStatus), width=16),
        Column("last_update", "Last Bot Update", Bot.last_update, ColType.DATE, default=True),
        Column("version", "Bot Version", Bot.version, default=True, width=12),
        Column("purpose", "Purpose", Bot.purpose, ColType.ENUM, choices=tuple(BotPurpose), width=24),
        Column("group", "Group", Bot.group_name),
        Column("token", "Bot Token", Bot.token_prefix, render=lambda v: f"{v}…" if v else "none", width=14),
        Column("os", "OS", Bot.os, width=16),
        Column("created_at", "Created Date", Bot.created_at, ColType.DATE),
        Column("created_by", "Created By", Bot.created_by),
        Column("tags", "Tags", Bot.tags, ColType.TAGS, width=24),
    ),
)


@dataclass(frozen=True)
class BotFields:
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
    name = common.text(f.name, "name", required=True, max_len=120)
    assert name is not None
    clash = session.scalar(select(Bot.id).where(func.lower(Bot.name) == name.lower(), Bot.id != (bot.id or -1)))
    if clash is not None:
        raise InputError(f"a bot named {name!r} already exists; choose another name", field="name")
    bot.name = name
    bot.ip_address = common.host(f.ip_address, "ip_address", required=False)
    bot.description = common.text(f.description, "description", max_len=2000)
    bot.purpose = common.label(BotPurpose, f.purpose or BotPurpose.PROVISIONING.value, "purpose")
    bot.group_name = common.text(f.group, "group", max_len=120)
    bot.os = common.text(f.os, "os", max_len=80)
    bot.tags = common.tags(f.tags)


def create_bot(session: Session, fields: BotFields, actor: str) -> CreatedBot:
    bot = Bot(status=BotStatus.PENDING_ACTIVATION, created_by=actor, created_at=utcnow())
    _apply(session, bot, fields)
    bot.work_queue = ""  # its id names it, once known
    made = security.new_token(security.BOT_TOKEN_PREFIX)
    bot.token_hash, bot.token_prefix = made.hash, made.prefix
    session.add(bot)
    session.flush()
    bot.work_queue = bot_queue(bot.id)
    repo.audit(session, actor=actor, action="create-bot", obj=bot, detail=bot.name)
    return CreatedBot(bot, made.token)


def configure_bot(session: Session, bot_id: int, fields: BotFields, actor: str) -> Bot:
    bot = repo.get(session, Bot, bot_id)
    _apply(session, bot, fields)
    repo.audit(session, actor=actor, action="configure-bot", obj=bot, detail=bot.name)
    return bot


def new_token(session: Session, bot_id: int, actor: str) -> CreatedBot:
    """A new token replaces the old one at once (the old one stops working)."""
    bot = repo.get(session, Bot, bot_id)
    made = security.new_token(security.BOT_TOKEN_PREFIX)
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
    resumes it. The queue is (un)paused at once when Prefect answers, else by check-bots and the bot agent."""
    bot = repo.get(session, Bot, bot_id)
    if running and bot.status is BotStatus.STOPPED:
        if bot.last_update is None:
            bot.status = BotStatus.PENDING_ACTIVATION
        else:
            bot.status = BotStatus.ACTIVE if has_work(session, bot) else BotStatus.PENDING
    elif not running:
        bot.status = BotStatus.STOPPED
    try:
        set_paused(configured_api_url(), prefect_auth_string(), bot_queue(bot.id), not running)
        queue = f"queue {bot_queue(bot.id)} {'resumed' if running else 'paused'}"
    except QueueError as exc:
        queue = f"queue {bot_queue(bot.id)} not changed yet ({exc}); check-bots will"
    detail = f"{bot.status.value}; {queue}"
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


__all__ = ["BOTS", "BotFields", "CreatedBot", "listing"]
