"""Passwords, tokens, the signed session cookie and CSRF tokens. Nothing here touches the database."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from certfleet.settings import get_settings

# scrypt parameters (RFC 7914): n=2**14, r=8, p=1 is ~16 MiB and ~50 ms here; stored with the hash.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1

# Tokens are made in one place for users and bots (certfleet.tokens).
from certfleet.tokens import BOT_TOKEN_PREFIX as BOT_TOKEN_PREFIX  # noqa: E402
from certfleet.tokens import USER_TOKEN_PREFIX as USER_TOKEN_PREFIX  # noqa: E402
from certfleet.tokens import NewToken as NewToken  # noqa: E402
from certfleet.tokens import new_token as new_token  # noqa: E402
from certfleet.tokens import token_hash as token_hash  # noqa: E402


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def _secret_file() -> Path:
    return get_settings().home / "dashboard-session.key"


_secret_cache: dict[Path, bytes] = {}


def signing_secret() -> bytes:
    """The key that signs session cookies and CSRF tokens: a 0600 file in the data directory, made on first use."""
    path = _secret_file()
    cached = _secret_cache.get(path)
    if cached is not None:
        return cached
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process made it first
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    value = path.read_text().strip().encode()
    _secret_cache[path] = value
    return value


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(signing_secret(), salt="certfleet-session")


@dataclass(frozen=True)
class SessionData:
    sid: str  # random per login (and per anonymous visitor): CSRF tokens derive from it
    user_id: int | None
    generation: int = 0  # the user's session_generation at login: the session ends when it changes


def new_session(user_id: int | None, generation: int = 0) -> SessionData:
    return SessionData(sid=secrets.token_urlsafe(18), user_id=user_id, generation=generation)


def dump_session(data: SessionData) -> str:
    return _serializer().dumps({"s": data.sid, "u": data.user_id, "g": data.generation})


def load_session(cookie: str | None) -> SessionData | None:
    if not cookie:
        return None
    try:
        raw = _serializer().loads(cookie, max_age=int(get_settings().session_hours * 3600))
    except BadSignature:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("s"), str):
        return None
    user_id, generation = raw.get("u"), raw.get("g")
    if not isinstance(user_id, int) or not isinstance(generation, int):
        return SessionData(sid=raw["s"], user_id=None)  # anonymous (or from before generations: log in again)
    return SessionData(sid=raw["s"], user_id=user_id, generation=generation)


def csrf_token(sid: str) -> str:
    return hmac.new(signing_secret(), f"csrf:{sid}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(sid: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(sid), presented or "")
