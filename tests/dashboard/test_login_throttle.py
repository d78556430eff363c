"""Login throttling (per username and per address, backoff then lockout, audited) and equal work for unknown
users, disabled users and wrong passwords (issue 12, hole 4). The throttle runs on a clock the test moves."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from certfleet.dashboard import login_throttle
from certfleet.dashboard import security as dashboard_security
from certfleet.dashboard.app import create_app
from certfleet.dashboard.services import users
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, User
from certfleet.settings import get_settings
from tests.dashboard.conftest import PASSWORD, Accounts, csrf_of

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # the throttle, not SQL


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(accounts: Accounts, clock: Clock) -> Any:
    app = create_app()
    login_throttle.for_app(app).clock = clock
    return app


def client_from(app: Any, address: str) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1", client=(address, 40000))


@pytest.fixture
def browser(app: Any) -> Iterator[TestClient]:
    with client_from(app, "198.51.100.10") as c:
        yield c


def try_login(client: TestClient, username: str, password: str) -> Response:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                       follow_redirects=False)  # fmt: skip


def audit(action: str) -> list[AuditEvent]:
    with session_scope() as s:
        rows = s.query(AuditEvent).filter_by(action=action).order_by(AuditEvent.id).all()
        s.expunge_all()
        return rows


def test_a_username_backs_off_then_locks_out_even_the_right_password(browser: TestClient, clock: Clock) -> None:
    assert try_login(browser, "admin", "wrong-guess-1").status_code == 401
    assert try_login(browser, "admin", "wrong-guess-2").status_code == 401
    early = try_login(browser, "admin", PASSWORD)  # the third try comes too soon: refused unchecked
    assert early.status_code == 429
    assert "too many failed logins for this username: wait 1 s" in early.text
    assert early.headers["retry-after"] == "1"
    clock.advance(1)
    assert try_login(browser, "admin", "wrong-guess-3").status_code == 401
    assert try_login(browser, "admin", "wrong-guess-4").status_code == 429  # now 2 s
    clock.advance(2)
    assert try_login(browser, "admin", "wrong-guess-4").status_code == 401
    clock.advance(4)
    assert try_login(browser, "admin", "wrong-guess-5").status_code == 401  # the 5th failure: locked
    locked = try_login(browser, "admin", PASSWORD)
    assert locked.status_code == 429
    assert "locked, try again in 15 min" in locked.text
    assert locked.headers["retry-after"] == "900"
    [event] = audit("login-lockout")
    assert "username 'admin' locked for 15 min after 5 failed logins" in (event.detail or "")
    assert "198.51.100.10" in (event.detail or "")
    assert len([e for e in audit("login") if e.outcome == "failure"]) == 5  # refused tries are not checked
    clock.advance(15 * 60)
    assert try_login(browser, "admin", PASSWORD).status_code == 303  # the lock ends by itself


def test_the_lock_is_per_username_not_for_everyone(app: Any, browser: TestClient, clock: Clock) -> None:
    for i in range(5):
        try_login(browser, "viewer", f"wrong-guess-{i}")
        clock.advance(60)
    assert try_login(browser, "viewer", PASSWORD).status_code == 429
    with client_from(app, "203.0.113.5") as elsewhere:  # the lock follows the username to any address
        assert try_login(elsewhere, "viewer", PASSWORD).status_code == 429
    assert try_login(browser, "operator", PASSWORD).status_code == 303  # other users log in as usual


def test_an_address_spraying_usernames_is_locked_out(
    app: Any, browser: TestClient, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(20):  # one guess per username: the per-username count never trips
        response = try_login(browser, f"guess{i}", "password-1234")
        assert response.status_code == 401, (i, response.text)
        clock.advance(61)  # past the longest backoff
    refused = try_login(browser, "admin", PASSWORD)
    assert refused.status_code == 429
    assert "too many failed logins for this address: locked" in refused.text
    assert any("address '198.51.100.10' locked" in (e.detail or "") for e in audit("login-lockout"))
    with client_from(app, "203.0.113.5") as other:
        assert try_login(other, "admin", PASSWORD).status_code == 303


def test_unknown_and_existing_usernames_get_the_same_refusal(app: Any, clock: Clock) -> None:
    with client_from(app, "198.51.100.1") as one, client_from(app, "198.51.100.2") as two:
        guessers = {"admin": one, "nobody-here": two}
        for i in range(5):
            for name, client in guessers.items():
                assert try_login(client, name, f"wrong-guess-{i}").status_code == 401
            clock.advance(60)
        answers = {name: try_login(client, name, "x" * 12) for name, client in guessers.items()}
    assert {r.status_code for r in answers.values()} == {429}
    shown = {name: re.sub(r'content="[0-9a-f]+"|value="[0-9a-f]{64}"', "CSRF", r.text.replace(name, "NAME"))
             for name, r in answers.items()}  # fmt: skip
    assert shown["admin"] == shown["nobody-here"]
    assert answers["admin"].headers["retry-after"] == answers["nobody-here"].headers["retry-after"]


@pytest.fixture
def scrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dashboard_security.hashlib, "scrypt", counting)
    return calls


def test_unknown_disabled_and_wrong_password_cost_one_password_check_each(
    accounts: Accounts, scrypt_calls: list[int]
) -> None:
    users.warm_up()  # the dummy hash is made once, before any login is checked
    with session_scope() as s:
        victim = users.create_user(s, username="leaver", password=PASSWORD, role="viewer", actor="test")
        victim.disabled = True
    work = {}
    for name, password in (("admin", "wrong-password"), ("no-such-user", "wrong-password"), ("leaver", PASSWORD)):
        scrypt_calls.clear()
        with session_scope() as s:
            assert users.authenticate(s, name, password) is None
        work[name] = len(scrypt_calls)
    assert work == {"admin": 1, "no-such-user": 1, "leaver": 1}


def test_a_throttled_try_checks_no_password(browser: TestClient, scrypt_calls: list[int]) -> None:
    for i in range(2):
        try_login(browser, "admin", f"wrong-guess-{i}")
    scrypt_calls.clear()
    assert try_login(browser, "admin", PASSWORD).status_code == 429
    assert scrypt_calls == []


def test_parallel_tries_for_one_username_wait_their_turn(accounts: Accounts, clock: Clock) -> None:
    throttle = login_throttle.LoginThrottle(clock)
    assert throttle.begin("admin", "198.51.100.1") is None
    second = throttle.begin("admin", "198.51.100.2")  # a guess sent while the first is still being checked
    assert second is not None
    assert "being checked" in second.message
    assert throttle.begin("operator", "198.51.100.1") is not None  # the address is busy too
    throttle.finish("admin", "198.51.100.1", ok=False)
    assert throttle.begin("admin", "198.51.100.2") is None


def test_lockout_settings_are_read(monkeypatch: pytest.MonkeyPatch, accounts: Accounts, clock: Clock) -> None:
    monkeypatch.setenv("CERTFLEET_LOGIN_MAX_FAILURES", "3")
    monkeypatch.setenv("CERTFLEET_LOGIN_LOCKOUT_MINUTES", "2")
    get_settings.cache_clear()
    throttle = login_throttle.LoginThrottle(clock)
    started: list[str] = []
    for _ in range(3):
        clock.advance(60)
        assert throttle.begin("admin", "192.0.2.1") is None
        started += throttle.finish("admin", "192.0.2.1", ok=False)
    assert started == ["username 'admin' locked for 2 min after 3 failed logins"]
    refusal = throttle.begin("admin", "192.0.2.1")
    assert refusal is not None
    assert refusal.retry_after_s == 120
    with session_scope() as s:
        assert s.query(User).filter_by(username="admin").one().disabled is False  # a lock is not a disable
