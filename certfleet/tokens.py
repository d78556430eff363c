"""Bearer tokens of users (`cfu_...`) and bots (`cfb_...`): 32 random bytes, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

USER_TOKEN_PREFIX = "cfu_"  # noqa: S105  # user API tokens (a prefix, not a secret)
BOT_TOKEN_PREFIX = "cfb_"  # noqa: S105  # bot tokens


@dataclass(frozen=True)
class NewToken:
    """A freshly made token: `token` is shown once; only `hash` is stored, `prefix` helps people tell them apart."""

    token: str
    hash: str
    prefix: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(kind_prefix: str) -> NewToken:
    token = kind_prefix + secrets.token_urlsafe(32)  # 32 random bytes
    return NewToken(token=token, hash=token_hash(token), prefix=token[: len(kind_prefix) + 6])
