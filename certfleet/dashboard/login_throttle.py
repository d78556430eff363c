"""Login throttling: per-username and per-address backoff, then a lockout (issue 12, hole 4).

After a failed login the next try for the same username, or from the same address, must wait: nothing for the
first FREE_FAILURES failures, then 1 s, 2 s, 4 s ... up to BACKOFF_CAP_S. CERTFLEET_LOGIN_MAX_FAILURES failures
for one username (CERTFLEET_LOGIN_ADDRESS_MAX_FAILURES from one address) lock it for CERTFLEET_LOGIN_LOCKOUT_MINUTES;
failures older than that are forgotten, a successful login forgets the username's. While throttled, a try is
refused without looking at the password, with the same answer whether the user exists or not, and one try per
username and per address runs at a time (parallel guesses cannot slip past the count).

The counts live in the dashboard process (one per `certfleet up`/`certfleet dashboard`): a restart forgets them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI

from certfleet.settings import get_settings

FREE_FAILURES = 2
BACKOFF_CAP_S = 60.0
_PRUNE_AT = 10_000  # records kept before expired ones are dropped (memory stays bounded under a spray)
_KEY_CHARS = 121  # usernames have at most 120 characters: a longer name is no user, and no bigger key is kept


@dataclass(frozen=True)
class Refusal:
    message: str
    retry_after_s: int


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0
    busy: bool = False


@dataclass(frozen=True)
class _Kind:
    label: str  # "username" / "address"
    max_failures: int


class LoginThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        s = get_settings()
        self.clock = clock
        self.lockout_s = s.login_lockout_minutes * 60
        self._kinds = {
            "user": _Kind("username", s.login_max_failures),
            "addr": _Kind("address", s.login_address_max_failures),
        }
        self._records: dict[tuple[str, str], _Record] = {}
        self._lock = threading.Lock()

    def _record(self, kind: str, key: str, now: float) -> _Record:
        record = self._records.get((kind, key))
        if record is None:
            if len(self._records) >= _PRUNE_AT:
                self._prune(now)
            record = self._records[(kind, key)] = _Record()
        elif not record.busy and now - record.last_failure > self.lockout_s and now >= record.locked_until:
            record.failures = 0  # old failures are forgotten
        return record

    def _prune(self, now: float) -> None:
        for key, r in list(self._records.items()):
            if not r.busy and now - r.last_failure > self.lockout_s and now >= r.locked_until:
                del self._records[key]

    def _wait(self, record: _Record, now: float) -> float:
        if now < record.locked_until:
            return record.locked_until - now
        if record.failures >= FREE_FAILURES:
            backoff = min(2.0 ** (record.failures - FREE_FAILURES), BACKOFF_CAP_S)
            return max(0.0, record.last_failure + backoff - now)
        return 0.0

    def begin(self, username: str, address: str) -> Refusal | None:
        """Call before checking a password: a Refusal to answer (HTTP 429), or None and then `finish()`."""
        now = self.clock()
        username, address = username[:_KEY_CHARS], address[:_KEY_CHARS]
        with self._lock:
            records = [("user", self._record("user", username, now)), ("addr", self._record("addr", address, now))]
            for kind, record in records:
                label = self._kinds[kind].label
                if now < record.locked_until:
                    wait = record.locked_until - now
                    return Refusal(f"too many failed logins for this {label}: locked, try again in "
                                   f"{_duration(wait)}", math.ceil(wait))  # fmt: skip
                wait = self._wait(record, now)
                if wait > 0:
                    return Refusal(f"too many failed logins for this {label}: wait {_duration(wait)} before "
                                   "trying again", math.ceil(wait))  # fmt: skip
                if record.busy:
                    return Refusal(f"a login for this {label} is being checked: try again in a second", 1)
            for _, record in records:
                record.busy = True
        return None

    def finish(self, username: str, address: str, ok: bool | None) -> list[str]:
        """After `begin()` returned None: ok=True success, False wrong password, None neither (an error).
        Returns a sentence for each lockout this failure started (to audit)."""
        now = self.clock()
        username, address = username[:_KEY_CHARS], address[:_KEY_CHARS]
        started: list[str] = []
        with self._lock:
            for kind, key in (("user", username), ("addr", address)):
                record = self._record(kind, key, now)
                record.busy = False
                if ok is True and kind == "user":
                    record.failures = 0
                elif ok is False:
                    record.failures += 1
                    record.last_failure = now
                    spec = self._kinds[kind]
                    if record.failures >= spec.max_failures:
                        record.locked_until = now + self.lockout_s
                        record.failures = 0
                        started.append(f"{spec.label} {key!r} locked for {_duration(self.lockout_s)} after "
                                       f"{spec.max_failures} failed logins")  # fmt: skip
        return started


def _duration(seconds: float) -> str:
    whole = math.ceil(seconds)
    if whole < 120:
        return f"{whole} s"
    return f"{math.ceil(whole / 60)} min"


_app_lock = threading.Lock()


def for_app(app: FastAPI) -> LoginThrottle:
    """The app's throttle, made on first use (each app, so each test's app, counts on its own)."""
    with _app_lock:
        throttle = getattr(app.state, "login_throttle", None)
        if not isinstance(throttle, LoginThrottle):
            throttle = app.state.login_throttle = LoginThrottle()
        return throttle
