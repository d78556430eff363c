"""Every route's access decision, exercised for real (issue 12, "Access").

ROUTES below is the decision for each route of the app: who may call it (anonymous, a bot with its token, or the
lowest user role). The test calls every route as nobody, as each role (session cookie with its CSRF token, and
API token), and as a bot, and checks the answer is a refusal (401 / login redirect, or 403) exactly when the
table says so; it calls every state-changing route with a session but without the CSRF token and expects 403.
A route added without a line here fails the test: decide who may call it, then add the line.

Calls carry no body and name ids that do not exist, so an allowed call ends in 404/422 (or a form error)
without changing anything it should not.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import params
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from httpx import Response
from starlette.routing import Mount

from certfleet.dashboard import security
from certfleet.dashboard.app import create_app
from certfleet.dashboard.deps import CSRF_HEADER, SESSION_COOKIE
from certfleet.dashboard.limits import UPLOAD_ROLE
from certfleet.models.db import session_scope
from certfleet.models.orm import User
from tests.dashboard.conftest import Accounts, auth

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # the decisions, not the SQL

ANONYMOUS, BOT, VIEWER, OPERATOR, ADMIN = "anonymous", "bot", "viewer", "operator", "admin"
METRICS_TOKEN = "metrics token"
RANK = {VIEWER: 0, OPERATOR: 1, ADMIN: 2}

# (method, path) -> who may call it. Keep in step with the app: the test fails on any difference.
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/openapi.json"): VIEWER,
    ("GET", "/api/docs"): VIEWER,
    ("GET", "/api/v1/me"): VIEWER,
    ("GET", "/api/v1/tokens"): VIEWER,
    ("POST", "/api/v1/tokens"): VIEWER,
    ("DELETE", "/api/v1/tokens/{token_id}"): VIEWER,
    ("PUT", "/api/v1/preferences/columns/{list_name}"): VIEWER,
    ("GET", "/api/v1/dashboard"): VIEWER,
    ("GET", "/api/v1/dashboard/runs"): VIEWER,
    ("GET", "/api/v1/bots"): VIEWER,
    ("GET", "/api/v1/bots/export"): VIEWER,
    ("GET", "/api/v1/bots/columns"): VIEWER,
    ("GET", "/api/v1/bots/{bot_id}"): VIEWER,
    ("POST", "/api/v1/bots"): OPERATOR,
    ("PUT", "/api/v1/bots/{bot_id}"): OPERATOR,
    ("POST", "/api/v1/bots/{bot_id}/stop"): OPERATOR,
    ("POST", "/api/v1/bots/{bot_id}/start"): OPERATOR,
    ("POST", "/api/v1/bots/{bot_id}/token"): OPERATOR,
    ("DELETE", "/api/v1/bots/{bot_id}/token"): OPERATOR,
    ("DELETE", "/api/v1/bots/{bot_id}"): OPERATOR,
    ("POST", "/api/v1/bots/heartbeat"): BOT,
    ("GET", "/api/v1/certificates"): VIEWER,
    ("GET", "/api/v1/certificates/export"): VIEWER,
    ("GET", "/api/v1/certificates/columns"): VIEWER,
    ("POST", "/api/v1/certificates"): OPERATOR,
    ("POST", "/api/v1/certificate-requests/import"): OPERATOR,
    ("POST", "/api/v1/certificates/import"): OPERATOR,
    ("GET", "/api/v1/certificates/{cert_id}"): VIEWER,
    ("GET", "/api/v1/certificates/{cert_id}/configuration"): VIEWER,
    ("PUT", "/api/v1/certificates/{cert_id}"): OPERATOR,
    ("POST", "/api/v1/certificates/{cert_id}/configuration/check"): VIEWER,
    ("POST", "/api/v1/certificates/{cert_id}/targets"): OPERATOR,
    ("DELETE", "/api/v1/certificates/{cert_id}/targets/{target_id}"): OPERATOR,
    ("GET", "/api/v1/certificates/{cert_id}/download"): VIEWER,
    ("POST", "/api/v1/certificates/{cert_id}/download"): VIEWER,
    ("GET", "/api/v1/certificates/{cert_id}/details"): VIEWER,
    ("GET", "/api/v1/certificates/{cert_id}/text"): VIEWER,
    ("POST", "/api/v1/certificates/{cert_id}/ignore"): OPERATOR,
    ("POST", "/api/v1/certificates/{cert_id}/unignore"): OPERATOR,
    ("POST", "/api/v1/certificates/{cert_id}/revoke"): OPERATOR,
    ("POST", "/api/v1/rotations"): OPERATOR,
    ("GET", "/api/v1/rotations/{batch_key}"): VIEWER,
    ("DELETE", "/api/v1/certificates/{cert_id}"): OPERATOR,
    ("POST", "/api/v1/certificates/{cert_id}/{action}"): OPERATOR,
    ("GET", "/api/v1/certificates/{cert_id}/deployments"): VIEWER,
    ("POST", "/api/v1/deployments/{deployment_id}/rollback"): OPERATOR,
    ("GET", "/api/v1/discovery-runs"): VIEWER,
    ("GET", "/api/v1/discovery-runs/export"): VIEWER,
    ("GET", "/api/v1/discovery-runs/columns"): VIEWER,
    ("POST", "/api/v1/discovery/endpoints"): OPERATOR,
    ("POST", "/api/v1/servers/{server_id}/scan-files"): OPERATOR,
    ("GET", "/api/v1/private-roots"): VIEWER,
    ("POST", "/api/v1/private-roots"): OPERATOR,
    ("DELETE", "/api/v1/private-roots/{root_id}"): OPERATOR,
    ("PUT", "/api/v1/private-roots/{root_id}/public-rules"): ADMIN,
    ("GET", "/api/v1/servers"): VIEWER,
    ("GET", "/api/v1/servers/export"): VIEWER,
    ("GET", "/api/v1/servers/columns"): VIEWER,
    ("GET", "/api/v1/server-types"): VIEWER,
    ("GET", "/api/v1/servers/{server_id}"): VIEWER,
    ("POST", "/api/v1/servers"): OPERATOR,
    ("PUT", "/api/v1/servers/{server_id}"): OPERATOR,
    ("POST", "/api/v1/servers/{server_id}/check"): OPERATOR,
    ("DELETE", "/api/v1/servers/{server_id}"): OPERATOR,
    ("GET", "/api/v1/smime-users"): VIEWER,
    ("GET", "/api/v1/smime-users/export"): VIEWER,
    ("GET", "/api/v1/smime-users/columns"): VIEWER,
    ("POST", "/api/v1/smime-users"): OPERATOR,
    ("POST", "/api/v1/smime-users/import"): OPERATOR,
    ("POST", "/api/v1/smime-users/rollout"): OPERATOR,
    ("POST", "/api/v1/smime-users/{user_id}/ignore"): OPERATOR,
    ("GET", "/api/v1/smime-users/{user_id}"): VIEWER,
    ("POST", "/api/v1/smime-users/{user_id}/revoke"): OPERATOR,
    ("POST", "/api/v1/smime-users/{user_id}/reenroll"): OPERATOR,
    ("GET", "/api/v1/smime-delivery"): VIEWER,
    ("PUT", "/api/v1/smime-delivery"): ADMIN,
    ("GET", "/api/v1/directory-profiles"): VIEWER,
    ("POST", "/api/v1/directory-profiles"): ADMIN,
    ("DELETE", "/api/v1/directory-profiles/{profile_id}"): ADMIN,
    ("PUT", "/api/v1/directory-profiles/{profile_id}"): ADMIN,
    ("POST", "/api/v1/directory-profiles/{profile_id}/sync"): OPERATOR,
    ("PUT", "/api/v1/directory-profiles/{profile_id}/delivery"): ADMIN,
    ("DELETE", "/api/v1/directory-profiles/{profile_id}/delivery"): ADMIN,
    ("GET", "/api/v1/ca-connectors"): VIEWER,
    ("GET", "/api/v1/ca-connectors/export"): VIEWER,
    ("GET", "/api/v1/ca-connectors/columns"): VIEWER,
    ("GET", "/api/v1/ca-connector-kinds"): VIEWER,
    ("GET", "/api/v1/ca-connectors/{connector_id}"): VIEWER,
    ("POST", "/api/v1/ca-connectors"): ADMIN,
    ("PUT", "/api/v1/ca-connectors/{connector_id}"): ADMIN,
    ("POST", "/api/v1/ca-connectors/{connector_id}/disable"): ADMIN,
    ("POST", "/api/v1/ca-connectors/{connector_id}/enable"): ADMIN,
    ("DELETE", "/api/v1/ca-connectors/{connector_id}"): ADMIN,
    ("POST", "/api/v1/ca-connectors/{connector_id}/test"): ADMIN,
    ("GET", "/api/v1/notifications"): VIEWER,
    ("GET", "/api/v1/notifications/kinds"): VIEWER,
    ("GET", "/api/v1/notifications/channels"): VIEWER,
    ("GET", "/api/v1/notifications/channels/{channel_id}"): VIEWER,
    ("POST", "/api/v1/notifications/channels"): ADMIN,
    ("PUT", "/api/v1/notifications/channels/{channel_id}"): ADMIN,
    ("DELETE", "/api/v1/notifications/channels/{channel_id}"): ADMIN,
    ("POST", "/api/v1/notifications/channels/{channel_id}/test"): ADMIN,
    ("GET", "/api/v1/notifications/rules"): VIEWER,
    ("POST", "/api/v1/notifications/rules"): ADMIN,
    ("PUT", "/api/v1/notifications/rules/{rule_id}"): ADMIN,
    ("DELETE", "/api/v1/notifications/rules/{rule_id}"): ADMIN,
    ("GET", "/api/v1/orders"): VIEWER,
    ("GET", "/api/v1/orders/export"): VIEWER,
    ("GET", "/api/v1/orders/columns"): VIEWER,
    ("GET", "/api/v1/orders/{order_id}"): VIEWER,
    ("GET", "/api/v1/audit"): OPERATOR,
    ("GET", "/api/v1/audit/export"): OPERATOR,
    ("GET", "/api/v1/audit/columns"): OPERATOR,
    ("GET", "/api/v1/users"): ADMIN,
    ("GET", "/api/v1/users/export"): ADMIN,
    ("GET", "/api/v1/users/columns"): ADMIN,
    ("POST", "/api/v1/users"): ADMIN,
    ("PATCH", "/api/v1/users/{user_id}"): ADMIN,
    ("GET", "/login"): ANONYMOUS,
    ("POST", "/login"): ANONYMOUS,
    ("POST", "/logout"): VIEWER,
    ("GET", "/account/tokens"): VIEWER,
    ("POST", "/account/tokens"): VIEWER,
    ("POST", "/account/tokens/{token_id}/revoke"): VIEWER,
    ("POST", "/prefs/columns/{list_name}"): VIEWER,
    ("GET", "/"): VIEWER,
    ("GET", "/bots/export.{fmt}"): VIEWER,
    ("GET", "/bots"): VIEWER,
    ("GET", "/bots/new"): OPERATOR,
    ("POST", "/bots"): OPERATOR,
    ("GET", "/bots/{bot_id}"): VIEWER,
    ("POST", "/bots/{bot_id}"): OPERATOR,
    ("POST", "/bots/{bot_id}/stop"): OPERATOR,
    ("POST", "/bots/{bot_id}/start"): OPERATOR,
    ("POST", "/bots/{bot_id}/token"): OPERATOR,
    ("POST", "/bots/{bot_id}/revoke-token"): OPERATOR,
    ("POST", "/bots/{bot_id}/delete"): OPERATOR,
    ("GET", "/certificates/export.{fmt}"): VIEWER,
    ("GET", "/certificates"): VIEWER,
    ("GET", "/certificates/new"): OPERATOR,
    ("POST", "/certificates"): OPERATOR,
    ("POST", "/certificates/requests/file"): OPERATOR,
    ("GET", "/certificates/{cert_id}"): VIEWER,
    ("POST", "/certificates/{cert_id}"): OPERATOR,
    ("POST", "/certificates/{cert_id}/targets"): OPERATOR,
    ("POST", "/certificates/{cert_id}/targets/{target_id}/delete"): OPERATOR,
    ("GET", "/certificates/{cert_id}/download/{fmt}"): VIEWER,
    ("POST", "/certificates/{cert_id}/download"): OPERATOR,
    ("POST", "/certificates/{cert_id}/ignore"): OPERATOR,
    ("POST", "/certificates/{cert_id}/unignore"): OPERATOR,
    ("POST", "/certificates/{cert_id}/revoke"): OPERATOR,
    ("POST", "/rotations"): OPERATOR,
    ("POST", "/certificates/{cert_id}/delete"): OPERATOR,
    ("POST", "/certificates/{cert_id}/run/{action}"): OPERATOR,
    ("POST", "/deployments/{deployment_id}/rollback"): OPERATOR,
    ("GET", "/discovery-runs/export.{fmt}"): VIEWER,
    ("GET", "/discovery"): VIEWER,
    ("POST", "/discovery"): OPERATOR,
    ("GET", "/discovery-runs"): VIEWER,
    ("GET", "/discovery/import"): OPERATOR,
    ("POST", "/discovery/import"): OPERATOR,
    ("POST", "/servers/{server_id}/scan-files"): OPERATOR,
    ("GET", "/private-roots"): VIEWER,
    ("POST", "/private-roots"): OPERATOR,
    ("POST", "/private-roots/{root_id}/delete"): OPERATOR,
    ("POST", "/private-roots/{root_id}/public-rules"): ADMIN,
    ("GET", "/servers/export.{fmt}"): VIEWER,
    ("GET", "/servers"): VIEWER,
    ("GET", "/servers/new"): OPERATOR,
    ("POST", "/servers"): OPERATOR,
    ("GET", "/servers/{server_id}"): VIEWER,
    ("POST", "/servers/{server_id}"): OPERATOR,
    ("POST", "/servers/{server_id}/check"): OPERATOR,
    ("POST", "/servers/{server_id}/delete"): OPERATOR,
    ("GET", "/smime-users/export.{fmt}"): VIEWER,
    ("GET", "/smime"): VIEWER,
    ("GET", "/smime/import"): OPERATOR,
    ("POST", "/smime/import"): OPERATOR,
    ("POST", "/smime/import/file"): OPERATOR,
    ("POST", "/smime/rollout"): OPERATOR,
    ("POST", "/smime/{user_id}/ignore"): OPERATOR,
    ("GET", "/smime/{user_id:int}"): VIEWER,
    ("POST", "/smime/{user_id:int}/revoke"): OPERATOR,
    ("POST", "/smime/{user_id:int}/reenroll"): OPERATOR,
    ("GET", "/smime/profiles"): VIEWER,
    ("POST", "/smime/profiles"): ADMIN,
    ("POST", "/smime/profiles/{profile_id}/delete"): ADMIN,
    ("POST", "/smime/profiles/{profile_id}/sync"): OPERATOR,
    ("GET", "/smime/profiles/{profile_id:int}/delivery"): VIEWER,
    ("POST", "/smime/profiles/{profile_id:int}/delivery"): ADMIN,
    ("GET", "/smime/delivery"): VIEWER,
    ("POST", "/smime/delivery"): ADMIN,
    ("GET", "/ca-connectors/export.{fmt}"): VIEWER,
    ("GET", "/ca-connectors"): VIEWER,
    ("GET", "/ca-connectors/new"): ADMIN,
    ("POST", "/ca-connectors"): ADMIN,
    ("GET", "/ca-connectors/{connector_id}"): VIEWER,
    ("POST", "/ca-connectors/{connector_id}"): ADMIN,
    ("POST", "/ca-connectors/{connector_id}/disable"): ADMIN,
    ("POST", "/ca-connectors/{connector_id}/enable"): ADMIN,
    ("POST", "/ca-connectors/{connector_id}/delete"): ADMIN,
    ("POST", "/ca-connectors/{connector_id}/test"): ADMIN,
    ("GET", "/notifications"): VIEWER,
    ("GET", "/notifications/channels/new"): ADMIN,
    ("POST", "/notifications/channels"): ADMIN,
    ("GET", "/notifications/channels/{channel_id}"): VIEWER,
    ("POST", "/notifications/channels/{channel_id}"): ADMIN,
    ("POST", "/notifications/channels/{channel_id}/test"): ADMIN,
    ("POST", "/notifications/channels/{channel_id}/delete"): ADMIN,
    ("POST", "/notifications/rules"): ADMIN,
    ("POST", "/notifications/rules/{rule_id}/delete"): ADMIN,
    ("GET", "/orders/export.{fmt}"): VIEWER,
    ("GET", "/orders"): VIEWER,
    ("GET", "/audit/export.{fmt}"): OPERATOR,
    ("GET", "/audit"): OPERATOR,
    ("GET", "/users/export.{fmt}"): ADMIN,
    ("GET", "/users"): ADMIN,
    ("POST", "/users"): ADMIN,
    ("POST", "/users/{user_id}"): ADMIN,
    ("GET", "/healthz"): ANONYMOUS,
    ("GET", "/crl/{connector_id}.crl"): ANONYMOUS,  # relying parties fetch the built-in CA's CRL
    ("GET", "/metrics"): VIEWER,  # Prometheus scrapes with an API token; a metrics-only token works too
}
# The one route a metrics-only API token (scope "metrics") may call; everywhere else it gets 403.
METRICS_ROUTES = {("GET", "/metrics")}
# Routes that change state without the session's CSRF token: the login form checks its own token; bots
# authenticate with a bearer token, which a browser never sends on its own.
# What a bot's flow runs read and record, with the bot token (certfleet.dashboard.api.agent).
AGENT_ROUTES = {
    ("GET", "/api/v1/agent/certificates/{certificate_id}/targets"),
    ("GET", "/api/v1/agent/certificates/{certificate_id}/targets/{target_id}/job"),
    ("GET", "/api/v1/agent/deployments/{deployment_id}/bundle"),
    ("GET", "/api/v1/agent/deployments/{deployment_id}/job"),
    ("GET", "/api/v1/agent/deployments/{deployment_id}/restore-plan"),
    ("PATCH", "/api/v1/agent/steps/{step_id}"),
    ("POST", "/api/v1/agent/deployments"),
    ("POST", "/api/v1/agent/deployments/{deployment_id}/close"),
    ("POST", "/api/v1/agent/deployments/{deployment_id}/finish"),
    ("POST", "/api/v1/agent/deployments/{deployment_id}/forget-backups"),
    ("POST", "/api/v1/agent/deployments/{deployment_id}/steps"),
    ("POST", "/api/v1/agent/servers/{server_id}/host-key"),
    ("GET", "/api/v1/agent/servers/{server_id}/access"),
    ("POST", "/api/v1/agent/servers/{server_id}/check"),
    ("POST", "/api/v1/agent/groups/targets"),
    ("POST", "/api/v1/agent/groups/open"),
    ("POST", "/api/v1/agent/groups/steps"),
    ("POST", "/api/v1/agent/groups/steps/update"),
    ("POST", "/api/v1/agent/groups/finish"),
    ("POST", "/api/v1/agent/groups/forget-backups"),
    ("POST", "/api/v1/agent/groups/servers"),
    ("POST", "/api/v1/agent/groups/restore-plans"),
    ("POST", "/api/v1/agent/groups/close"),
    ("POST", "/api/v1/agent/discovery/endpoint-runs"),
    ("POST", "/api/v1/agent/discovery/file-runs"),
    ("POST", "/api/v1/agent/discovery/runs/{run_id}/plan"),
    ("POST", "/api/v1/agent/discovery/runs/{run_id}/file-job"),
    ("POST", "/api/v1/agent/discovery/runs/{run_id}/record"),
    ("POST", "/api/v1/agent/discovery/runs/{run_id}/counts"),
    ("POST", "/api/v1/agent/discovery/runs/{run_id}/finish"),
}
ROUTES.update(dict.fromkeys(AGENT_ROUTES, BOT))
# Bot-token routes take no cookie, so there is no CSRF to check.
NO_CSRF = {("POST", "/login"), ("POST", "/api/v1/bots/heartbeat")} | AGENT_ROUTES
# Static files: public.
MOUNTS = {"/static", "/vendor/swagger-ui"}

PATH_VALUES = {"fmt": "xlsx", "list_name": "bots", "action": "provision"}  # other path parameters: 999999
SAFE = {"GET", "HEAD", "OPTIONS"}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: PATH_VALUES.get(m[1], "999999"), path)  # {id} or {id:int}


def is_api(path: str) -> bool:  # token-authenticated routes: also called with each role's API token
    return (path.startswith("/api/") and path != "/api/docs") or path == "/metrics"


@dataclass
class Caller:
    name: str
    kind: str  # ANONYMOUS, BOT, or the user role
    headers: dict[str, str]


@pytest.fixture
def app_client(accounts: Accounts) -> Iterator[TestClient]:
    # A 500 is reported with the route (not raised), so one run lists every wrong answer.
    with TestClient(create_app(), base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        yield c


def session_headers(username: str, with_csrf: bool = True) -> dict[str, str]:
    """A logged-in session cookie as the login form makes it (the user's current session generation)."""
    with session_scope() as s:
        user = s.query(User).filter_by(username=username).one()
        data = security.SessionData(secrets.token_urlsafe(18), user.id, user.session_generation)
    headers = {"cookie": f"{SESSION_COOKIE}={security.dump_session(data)}"}
    if with_csrf:
        headers[CSRF_HEADER] = security.csrf_token(data.sid)
    return headers


def send(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Response:
    client.cookies.clear()  # only the cookie this call names
    return client.request(method, concrete(path), headers=headers, follow_redirects=False)


def refusal(response: Response) -> str | None:
    """'login' (401, or a page's redirect to the login form), 'forbidden' (403), or None (let through)."""
    if response.status_code == 401 or (
        response.status_code == 303 and response.headers["location"].startswith("/login?next=")
    ):  # (logging out also ends on /login, without next=)
        return "login"
    if response.status_code == 403:
        return "forbidden"
    return None


def expected(decision: str, caller: Caller, route: tuple[str, str]) -> str | None:
    if decision == ANONYMOUS:
        return None
    if decision == BOT:
        return None if caller.kind == BOT else "login"
    if caller.kind == METRICS_TOKEN:
        return None if route in METRICS_ROUTES else "forbidden"
    if caller.kind in (ANONYMOUS, BOT):
        return "login"
    return None if RANK[caller.kind] >= RANK[decision] else "forbidden"


def app_routes(app: object) -> tuple[set[tuple[str, str]], set[str], dict[tuple[str, str], bool]]:
    routes: set[tuple[str, str]] = set()
    mounts: set[str] = set()
    takes_files: dict[tuple[str, str], bool] = {}
    for rc in iter_route_contexts(app.routes):  # type: ignore[attr-defined]
        if isinstance(rc.original_route, Mount):
            mounts.add(rc.path)
            continue
        dependant = rc.dependant if hasattr(rc, "dependant") else None
        files = bool(dependant) and any(isinstance(p.field_info, params.File) for p in dependant.body_params)
        for method in rc.methods - {"HEAD"}:
            routes.add((method, rc.path))
            takes_files[(method, rc.path)] = files
    return routes, mounts, takes_files


def test_every_route_has_an_access_decision(app_client: TestClient) -> None:
    routes, mounts, takes_files = app_routes(app_client.app)
    assert sorted(routes - ROUTES.keys()) == [], "new routes: decide who may call them and add them to ROUTES"
    assert sorted(ROUTES.keys() - routes) == [], "ROUTES names routes the app no longer has"
    assert mounts == MOUNTS
    uploads = sorted(route for route, files in takes_files.items() if files)
    assert ("POST", "/api/v1/certificates/import") in uploads  # the check below looks at real file parameters
    for route in uploads:  # limits.py reads uploads only from UPLOAD_ROLE and above
        assert ROUTES[route] in RANK, route
        assert RANK[ROUTES[route]] >= RANK[UPLOAD_ROLE.value], route


def test_every_route_lets_in_exactly_the_callers_its_decision_names(app_client: TestClient, accounts: Accounts) -> None:
    bot = app_client.post("/api/v1/bots", json={"name": "access-bot", "purpose": "Provisioning"},
                          headers=auth(accounts, "operator"))  # fmt: skip
    assert bot.status_code == 201, bot.text
    bot_token = bot.json()["token"]
    scraper = app_client.post("/api/v1/tokens", json={"name": "prometheus", "scope": "metrics"},
                              headers=auth(accounts, "admin"))  # fmt: skip
    assert scraper.status_code == 201, scraper.text
    metrics_token = scraper.json()["token"]
    wrong: list[str] = []
    for (method, path), decision in sorted(ROUTES.items()):
        callers = [
            Caller("nobody", ANONYMOUS, {}),
            Caller("bot token", BOT, {"authorization": f"Bearer {bot_token}"}),
            *(Caller(f"{role} session", role, session_headers(role)) for role in RANK),
        ]
        if is_api(path):
            callers += [Caller(f"{role} API token", role, auth(accounts, role)) for role in RANK]
            # An admin's metrics-only token: the role would allow everything, the scope only /metrics.
            callers.append(Caller("admin metrics-only token", METRICS_TOKEN,
                                  {"authorization": f"Bearer {metrics_token}"}))  # fmt: skip
        for caller in callers:
            response = send(app_client, method, path, caller.headers)
            got, want = refusal(response), expected(decision, caller, (method, path))
            if got != want or response.status_code >= 500:
                wrong.append(f"{method} {path} as {caller.name}: {response.status_code} (expected {want or 'let in'})")
    assert not wrong, "\n".join(wrong)


def test_every_state_changing_route_needs_the_csrf_token_with_a_session(
    app_client: TestClient, accounts: Accounts
) -> None:
    wrong: list[str] = []
    for (method, path), decision in sorted(ROUTES.items()):
        if method in SAFE or (method, path) in NO_CSRF:
            continue
        assert decision in RANK, f"{method} {path}: a state-changing route for {decision} must be listed in NO_CSRF"
        response = send(app_client, method, path, session_headers("admin", with_csrf=False))
        if response.status_code != 403 or "CSRF" not in response.text:
            wrong.append(f"{method} {path}: {response.status_code} without the CSRF token")
    assert not wrong, "\n".join(wrong)


def test_the_login_form_checks_its_own_csrf_token(app_client: TestClient, accounts: Accounts) -> None:
    response = send(app_client, "POST", "/login", {"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 303  # no fields at all: back to the form, with the reason (a page form error)
    app_client.cookies.clear()
    answer = app_client.post("/login", data={"username": "admin", "password": "correct horse battery"})
    assert answer.status_code == 400
    assert "the form expired" in answer.text
