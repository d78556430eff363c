"""First-run setup, idempotent: schema, key file, the built-in CA connector and the local bot."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from certfleet import __version__
from certfleet.deployments.names import bot_queue
from certfleet.models import encryption
from certfleet.models.db import migrate, session_scope
from certfleet.models.orm import Bot, BotPurpose, BotStatus, CAConnector, utcnow
from certfleet.settings import get_settings

BUILTIN_CA_NAME = "Built-in CA"
LOCAL_BOT_NAME = "local-bot"


@dataclass(frozen=True)
class Bootstrapped:
    ca_connector_id: int
    local_bot_id: int


def initialize() -> Bootstrapped:
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    encryption.get_sealer()  # creates the key file before anything secret is written
    migrate()
    with session_scope() as s:
        connector = s.scalar(select(CAConnector).where(CAConnector.kind == "local").order_by(CAConnector.id))
        if connector is None:
            connector = CAConnector(kind="local", name=BUILTIN_CA_NAME, default_validity_days=90, settings={})
            s.add(connector)
        bot = s.scalar(select(Bot).where(Bot.name == LOCAL_BOT_NAME))
        if bot is None:
            bot = Bot(
                name=LOCAL_BOT_NAME,
                ip_address=settings.host,
                description="Runs with certfleet itself and deploys through its own file system",
                purpose=BotPurpose.BOTH,
                work_queue="",  # set below, once the id is known
                os="Linux",
                created_by="certfleet",
            )
            s.add(bot)
        bot.status = BotStatus.ACTIVE
        bot.version = __version__
        bot.last_update = utcnow()
        s.flush()
        bot.work_queue = bot_queue(bot.id)
        return Bootstrapped(ca_connector_id=connector.id, local_bot_id=bot.id)
