"""Dashboard fixtures: a migrated database with certfleet bootstrapped, users of each role, an HTTP client."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from certfleet.dashboard.app import create_app
from certfleet.dashboard.services import users
from certfleet.models.bootstrap import Bootstrapped, initialize
from certfleet.models.db import session_scope
from tests.discovery.fixtures import fleet, pki  # noqa: F401 - fixtures: test certificates under a throwaway PKI

PASSWORD = "correct horse battery"


@dataclass
class Accounts:
    boot: Bootstrapped
    tokens: dict[str, str]  # role -> API token


@pytest.fixture
def accounts(database: str) -> Accounts:
    boot = initialize()
    tokens: dict[str, str] = {}
    with session_scope() as s:
        users.ensure_first_admin(s, PASSWORD)
        for role in ("viewer", "operator"):
            users.create_user(s, username=role, password=PASSWORD, role=role, actor="test")
        s.flush()
        for user in s.scalars(users.select(users.User)):
            tokens[user.role.value] = users.create_api_token(s, user.id, "tests", "test").token
    return Accounts(boot, tokens)


@pytest.fixture
def client(accounts: Accounts) -> Iterator[TestClient]:
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c


def auth(accounts: Accounts, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {accounts.tokens[role]}"}


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([0-9a-f]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Logs the client in through the form; returns the CSRF token of the new session."""
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/").text)


@pytest.fixture
def prefect_api(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from prefect.settings import PREFECT_API_URL

    url = str(PREFECT_API_URL.value())
    monkeypatch.setenv("PREFECT_API_URL", url)
    from certfleet.deployments.serve import register, runner_deployments

    register(runner_deployments("bot-1"))  # registered, not served: the runs wait as Scheduled
    yield url
    os.environ.pop("PREFECT_API_URL", None)
