"""HTML pages over HTTP: login and CSRF, every page renders for each role, forms save and say what to fix."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, Bot, Server
from tests.dashboard.conftest import PASSWORD, Accounts, csrf_of, login

PAGES = ["/", "/bots", "/bots/new", "/certificates", "/certificates/new", "/servers", "/servers/new", "/smime",
         "/smime/import", "/smime/profiles", "/orders", "/ca-connectors", "/ca-connectors/new?kind=emca",
         "/audit", "/users", "/account/tokens", "/discovery", "/discovery-runs", "/discovery/import",
         "/private-roots", "/notifications", "/notifications/channels/new?kind=email",
         "/notifications/channels/new?kind=webhook"]  # fmt: skip


def test_pages_need_login(client: TestClient) -> None:
    response = client.get("/bots?filter=status:eq:Active", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/bots%3Ffilter%3Dstatus%3Aeq%3AActive"


def test_wrong_password_is_refused_and_audited(client: TestClient, accounts: Accounts) -> None:
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"username": "admin", "password": "nope-nope-nope", "csrf_token": token})
    assert response.status_code == 401
    assert "wrong username or password" in response.text
    with session_scope() as s:
        assert s.query(AuditEvent).filter_by(action="login", outcome="failure").count() == 1


def test_every_page_renders_for_admin(client: TestClient, accounts: Accounts) -> None:
    login(client, "admin")
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:500]}"
        assert "<h1>" in response.text


def test_roles_limit_pages_and_actions(client: TestClient, accounts: Accounts) -> None:
    login(client, "viewer")
    assert client.get("/bots").status_code == 200
    assert "Create Bot" not in client.get("/bots").text
    assert client.get("/users").status_code == 403
    assert client.get("/audit").status_code == 403
    token = csrf_of(client.get("/bots").text)
    assert client.post("/bots", data={"name": "x", "csrf_token": token}).status_code == 403


def test_form_post_without_csrf_token_is_refused(client: TestClient, accounts: Accounts) -> None:
    login(client, "operator")
    response = client.post("/bots", data={"name": "sneaky"})
    assert response.status_code == 403
    assert "CSRF" in response.text
    with session_scope() as s:
        assert s.query(Bot).filter_by(name="sneaky").count() == 0


def test_create_bot_shows_token_once_and_records_created_by(client: TestClient, accounts: Accounts) -> None:
    token = login(client, "operator")
    response = client.post("/bots", data={"name": "dc-east", "purpose": "Provisioning", "csrf_token": token})
    assert response.status_code == 200
    shown = re.search(r'data-testid="bot-token">(cfb_[^<]+)<', response.text)
    assert shown, response.text
    listing = client.get("/bots").text
    assert "dc-east" in listing
    assert shown.group(1) not in listing
    with session_scope() as s:
        bot = s.query(Bot).filter_by(name="dc-east").one()
        assert bot.created_by == "operator"


def test_add_server_form_validates_and_saves_type_path(client: TestClient, accounts: Accounts) -> None:
    token = login(client, "operator")
    bad = client.post("/servers", data={"description": "web", "ip_address": "10.0.0.9", "server_type": "iis",
                                        "username": "u", "password": "p", "ports": "443",
                                        "csrf_token": token})  # fmt: skip
    assert bad.status_code == 422
    assert "IIS is reached over SMB: choose the connection Windows (SMB)" in bad.text
    ok = client.post(
        "/servers",
        data={
            "description": "tomcat-1",
            "ip_address": "10.0.0.10",
            "server_type": "tomcat",
            "username": "deploy",
            "password": "s3cret-pass",
            "ports": "8443, 443",
            "tomcat_path": "/opt/tomcat",
            "service_name": "tomcat9",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert ok.status_code == 303, ok.text
    with session_scope() as s:
        server = s.query(Server).filter_by(description="tomcat-1").one()
        assert (server.server_type, server.app_path, server.ports, server.created_by) == (
            "tomcat", "/opt/tomcat", [8443, 443], "operator"
        )  # fmt: skip
    page = client.get(f"/servers/{server.id}").text
    assert "s3cret-pass" not in page


def test_ca_connector_secrets_are_write_only(client: TestClient, accounts: Accounts) -> None:
    token = login(client, "admin")
    response = client.post(
        "/ca-connectors",
        data={
            "kind": "digicert",
            "name": "DigiCert prod",
            "api_base_url": "https://www.digicert.com/services/v2",
            "api_key": "dc-api-key-123",
            "organization_id": "112233",
            "payment_type": "Balance",
            "certificate_validity": "397",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    listing = client.get("/ca-connectors?kind=digicert").text
    assert "DigiCert prod" in listing
    with session_scope() as s:
        from certfleet.models.orm import CAConnector

        c = s.query(CAConnector).filter_by(name="DigiCert prod").one()
        assert c.settings["organization_id"] == 112233
        assert c.default_validity_days == 397
        assert "dc-api-key-123" not in str(c.settings)
    edit = client.get(f"/ca-connectors/{c.id}").text
    assert "dc-api-key-123" not in edit
    assert "stored; leave empty to keep it" in edit


def test_login_password_is_never_in_the_audit_log(client: TestClient, accounts: Accounts) -> None:
    login(client, "admin")
    with session_scope() as s:
        assert all(PASSWORD not in (e.detail or "") for e in s.query(AuditEvent))
