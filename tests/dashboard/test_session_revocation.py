"""Logout and password changes end sessions on the server, so a copied session cookie stops working
(issue 12, hole 6). Runs on SQLite and PostgreSQL: the check reads users.session_generation on every request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from certfleet.dashboard.deps import SESSION_COOKIE
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, User
from tests.dashboard.conftest import PASSWORD, Accounts, auth, csrf_of, login

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def second(client: TestClient) -> Iterator[TestClient]:
    """Another browser, for a copied cookie."""
    with TestClient(client.app, base_url="http://127.0.0.1") as other:
        yield other


def copy_session(source: TestClient, target: TestClient) -> None:
    cookie = source.cookies.get(SESSION_COOKIE)
    assert cookie
    target.cookies.set(SESSION_COOKIE, cookie)


def logged_in(client: TestClient) -> bool:
    response = client.get("/bots", follow_redirects=False)
    assert response.status_code in (200, 303), response.status_code
    return response.status_code == 200


def user_id(name: str) -> int:
    with session_scope() as s:
        return s.query(User).filter_by(username=name).one().id


def test_logout_ends_a_copied_session_cookie(client: TestClient, second: TestClient, accounts: Accounts) -> None:
    token = login(client, "operator")
    copy_session(client, second)
    assert logged_in(second)  # the copy works while the session lives
    response = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert not logged_in(client)
    assert not logged_in(second)  # the server forgot the session, not just this browser
    with session_scope() as s:
        assert s.query(AuditEvent).filter_by(action="logout", actor="operator").count() == 1
    assert client.get("/api/v1/me", headers=auth(accounts, "operator")).status_code == 200  # tokens stay
    login(client, "operator")  # and the user can log in again
    assert logged_in(client)


def test_an_admin_setting_a_password_logs_the_user_out_everywhere(
    client: TestClient, second: TestClient, accounts: Accounts
) -> None:
    login(second, "viewer")
    assert logged_in(second)
    token = login(client, "admin")
    response = client.post(f"/users/{user_id('viewer')}", data={"password": NEW_PASSWORD, "csrf_token": token},
                           follow_redirects=False)  # fmt: skip
    assert response.status_code == 303
    assert not logged_in(second)
    assert logged_in(client)  # the admin changed someone else's password: their own session goes on
    login(second, "viewer", NEW_PASSWORD)
    assert logged_in(second)


def test_a_password_set_through_the_api_ends_sessions_too(
    client: TestClient, second: TestClient, accounts: Accounts
) -> None:
    login(second, "operator")
    response = client.patch(f"/api/v1/users/{user_id('operator')}", json={"password": NEW_PASSWORD},
                            headers=auth(accounts, "admin"))  # fmt: skip
    assert response.status_code == 200, response.text
    assert not logged_in(second)


def test_changing_my_own_password_keeps_this_browser_and_ends_the_others(
    client: TestClient, second: TestClient, accounts: Accounts
) -> None:
    token = login(client, "admin")
    copy_session(client, second)
    response = client.post(f"/users/{user_id('admin')}", data={"password": NEW_PASSWORD, "csrf_token": token},
                           follow_redirects=False)  # fmt: skip
    assert response.status_code == 303
    assert logged_in(client)
    assert not logged_in(second)
    csrf_of(client.get("/users").text)  # the page still works with the new session


def test_a_disabled_user_is_logged_out(client: TestClient, second: TestClient, accounts: Accounts) -> None:
    login(second, "viewer")
    response = client.patch(f"/api/v1/users/{user_id('viewer')}", json={"disabled": True},
                            headers=auth(accounts, "admin"))  # fmt: skip
    assert response.status_code == 200
    assert not logged_in(second)
    token = csrf_of(second.get("/login").text)
    refused = second.post("/login", data={"username": "viewer", "password": PASSWORD, "csrf_token": token})
    assert refused.status_code == 401
