"""A bot's Prefect queue follows its status (Stopped: paused), written only by certfleet's server side.

Three places write the queue's paused flag: Stop/Start (`service.set_running`), every heartbeat (which also makes
the queue exist before the bot's worker asks for it) and `check-bots`. Each one first takes the bot's row lock (an
UPDATE of the row: a row lock on PostgreSQL, the write lock on SQLite), then reads the status and writes the
queue, and holds the lock until its transaction commits. So the writes happen in the order of the status
changes, and the last one always carries the current status: a heartbeat that read the bot just before an
operator's Stop can no longer resume the queue after Stop paused it. (The bot agent used to apply the paused
flag of its last check-in answer itself, which did exactly that.)
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import update
from sqlalchemy.orm import Session

from certfleet.bots.queues import QueueError, set_paused
from certfleet.deployments.names import bot_queue
from certfleet.models import repo
from certfleet.models.orm import Bot, BotStatus

# The queue is written with the bot's row locked: a Prefect API that hangs must not hold other writers long.
PREFECT_TIMEOUT_S = 5.0


def locked_bot(session: Session, bot_id: int) -> Bot:
    """The bot, read after its row is locked for this transaction (so its status is the committed one)."""
    session.flush()
    session.execute(update(Bot).where(Bot.id == bot_id).values(status=Bot.status))
    bot = session.get(Bot, bot_id, populate_existing=True)
    if bot is None:
        raise repo.NotFound(f"Bot {bot_id} does not exist")
    return bot


class QueueWrite(NamedTuple):
    changed: bool
    detail: str  # for the audit trail and the heartbeat's answer


def apply(api_url: str, auth_string: str | None, bot: Bot) -> QueueWrite:
    """Writes the queue's paused flag from the status of `bot`, which must come from `locked_bot`.

    A Prefect that does not answer is said, not raised: the next heartbeat or check-bots writes it."""
    queue, paused = bot_queue(bot.id), bot.status is BotStatus.STOPPED
    try:
        changed = set_paused(api_url, auth_string, queue, paused, timeout=PREFECT_TIMEOUT_S)
    except QueueError as exc:
        return QueueWrite(False, f"queue {queue} not changed yet ({exc})")
    return QueueWrite(changed, f"queue {queue} {'paused' if paused else 'resumed'}" + ("" if changed else " already"))
