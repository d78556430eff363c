"""A bot proves itself with its token (`cfb_...`, shown once, stored as a SHA-256 hash)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet import tokens
from certfleet.models.orm import Bot


class BotTokenRefused(PermissionError):
    """Unknown, revoked or replaced bot token: the bot must be given a new one."""


def bearer_token(authorization: str) -> str:
    return authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""


def bot_for_token(session: Session, token: str) -> Bot:
    if not token.startswith(tokens.BOT_TOKEN_PREFIX):
        raise BotTokenRefused("not a bot token (bot tokens start with cfb_)")
    bot = session.scalar(select(Bot).where(Bot.token_hash == tokens.token_hash(token)))
    if bot is None:
        raise BotTokenRefused("the bot token is unknown or was revoked: create a new token for this bot")
    return bot
