"""Secrets at rest: every secret column is Fernet-encrypted with a key kept outside the database.

The key comes from `CERTFLEET_SECRET_KEY` or from a key file (mode 0600) created on first run. The key
file may hold several keys, one per line: the first encrypts, all decrypt, so a key can be rotated.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from certfleet.settings import Settings, ensure_private_dir, get_settings


class SecretKeyError(RuntimeError):
    """The key for secrets at rest is missing, malformed or does not match the stored data."""


_lock = threading.Lock()
_sealer: MultiFernet | None = None


def _parse_keys(text: str, origin: str) -> MultiFernet:
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not keys:
        raise SecretKeyError(f"{origin} holds no key")
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError as exc:
        raise SecretKeyError(f"{origin} is not a valid Fernet key (32 url-safe base64 bytes): {exc}") from exc


def create_key_file(path: Path) -> None:
    """Write a new key with mode 0600; never overwrites an existing file."""
    ensure_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(Fernet.generate_key().decode() + "\n")


def load_sealer(settings: Settings) -> MultiFernet:
    if settings.secret_key is not None:
        return _parse_keys(settings.secret_key.get_secret_value(), "CERTFLEET_SECRET_KEY")
    path = settings.key_file
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process created it first
            create_key_file(path)
    if path.stat().st_mode & 0o077:
        raise SecretKeyError(f"{path} is readable by others; run: chmod 600 {path}")
    return _parse_keys(path.read_text(), str(path))


def get_sealer() -> MultiFernet:
    global _sealer
    with _lock:
        if _sealer is None:
            _sealer = load_sealer(get_settings())
        return _sealer


def reset_sealer() -> None:
    """Forget the loaded key (tests and `certfleet` commands that change the data directory)."""
    global _sealer
    with _lock:
        _sealer = None


def seal(plain: bytes) -> str:
    return get_sealer().encrypt(plain).decode("ascii")


def unseal(token: str) -> bytes:
    try:
        return get_sealer().decrypt(token.encode("ascii"))
    except InvalidToken as exc:
        raise SecretKeyError(
            "a stored secret cannot be decrypted with the configured key: was the key file replaced?"
        ) from exc


class EncryptedText(TypeDecorator[str]):
    """A str column stored as a Fernet token."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else seal(value.encode("utf-8"))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else unseal(value).decode("utf-8")


class EncryptedBytes(TypeDecorator[bytes]):
    """A bytes column (private keys, keystores) stored as a Fernet token."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> str | None:
        return None if value is None else seal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> bytes | None:
        return None if value is None else unseal(value)
