"""The Prefect API's auth string: CERTFLEET_PREFECT_AUTH_STRING, else generated once and kept sealed.

Prefect's server refuses every API request (401) whose `Authorization: Basic` credentials do not decode to
PREFECT_SERVER_API_AUTH_STRING; its clients send PREFECT_API_AUTH_STRING and its UI asks for the value on a
login page. The generated value is sealed with certfleet's secret key (the key of every secret column), so
the data directory holds no plain-text copy.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from certfleet.models.encryption import seal, unseal
from certfleet.settings import get_settings

GENERATED_BYTES = 32  # 256 bits of randomness, 43 url-safe characters


class AuthStringError(RuntimeError):
    """The configured auth string cannot be used; the message says what to change."""


@dataclass(frozen=True)
class AuthString:
    value: str
    generated: bool  # created by this call: the caller shows it once


def configured_auth_string() -> str | None:
    """CERTFLEET_PREFECT_AUTH_STRING when set, else the stored one, else None (none generated yet)."""
    settings = get_settings()
    if settings.prefect_auth_string is not None:
        value = settings.prefect_auth_string.get_secret_value()
        if not value:
            # Prefect would switch authentication on and then never accept the empty value its clients omit.
            raise AuthStringError("CERTFLEET_PREFECT_AUTH_STRING is empty: set it to a long random value or unset it")
        return value
    try:
        token = settings.prefect_auth_file.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    return unseal(token.strip()).decode("utf-8")


def ensure_auth_string() -> AuthString:
    """The configured auth string, or a new random one sealed into the data directory (mode 0600)."""
    existing = configured_auth_string()
    if existing is not None:
        return AuthString(existing, generated=False)
    value = secrets.token_urlsafe(GENERATED_BYTES)
    path = get_settings().prefect_auth_file
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process generated it first: use theirs
        stored = configured_auth_string()
        assert stored is not None
        return AuthString(stored, generated=False)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(seal(value.encode("utf-8")) + "\n")
    return AuthString(value, generated=True)
