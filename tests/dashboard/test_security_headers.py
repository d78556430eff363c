"""Security headers, Secure cookies under TLS, API docs from certfleet's own files behind login, Users export for
Admins only (issue 12, hole 6)."""

from __future__ import annotations

import http.client
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from certfleet.dashboard.app import create_app
from certfleet.dashboard.server import DashboardThread
from certfleet.demo.listener import free_port
from certfleet.settings import get_settings
from tests.dashboard.conftest import Accounts, auth, login

SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # HTTP handling, not SQL

TEMPLATES = Path(__file__).resolve().parents[2] / "certfleet" / "dashboard" / "templates"


def csp_directives(value: str) -> dict[str, list[str]]:
    out = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


@SQLITE
def test_every_answer_carries_the_security_headers(client: TestClient, accounts: Accounts) -> None:
    answers = [
        client.get("/login"),  # a page
        client.get("/api/v1/bots"),  # an API refusal (401)
        client.get("/static/app.js"),  # a static file
        client.get("/api/v1/bots", headers=auth(accounts, "viewer")),  # JSON
    ]
    for response in answers:
        csp = csp_directives(response.headers["content-security-policy"])
        assert csp["script-src"] == ["'self'"]
        assert csp["style-src"] == ["'self'"]
        assert csp["frame-ancestors"] == ["'none'"]
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "strict-transport-security" not in response.headers  # plain HTTP: HSTS would be a lie
    cookie = answers[0].headers["set-cookie"]
    assert "certfleet_session=" in cookie
    assert "httponly" in cookie.lower()
    assert "secure" not in cookie.lower()


@SQLITE
def test_over_https_cookies_are_secure_and_hsts_is_sent(accounts: Accounts) -> None:
    with TestClient(create_app(), base_url="https://127.0.0.1") as client:
        response = client.get("/login")
        assert "; Secure" in response.headers["set-cookie"]
        assert response.headers["strict-transport-security"] == "max-age=31536000"


@SQLITE
def test_behind_tls_setting_makes_cookies_secure_on_plain_http(
    monkeypatch: pytest.MonkeyPatch, accounts: Accounts
) -> None:
    monkeypatch.setenv("CERTFLEET_BEHIND_TLS", "true")
    get_settings.cache_clear()
    with TestClient(create_app(), base_url="http://127.0.0.1") as client:
        login_page = client.get("/login")
        assert "; Secure" in login_page.headers["set-cookie"]
        assert "strict-transport-security" in login_page.headers
        # httpx, like a browser, does not send a Secure cookie back over plain HTTP: the next answer makes a
        # new session, and its cookie is Secure as well.
        again = client.get("/login")
        assert again.headers.get_list("set-cookie")
        assert all("; Secure" in c for c in again.headers.get_list("set-cookie"))


def _login_page_cookie(port: int, headers: dict[str, str]) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/login", headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.getheader("set-cookie") or ""


@SQLITE
def test_forwarded_proto_is_believed_only_from_a_trusted_proxy(
    monkeypatch: pytest.MonkeyPatch, accounts: Accounts
) -> None:
    forwarded = {"X-Forwarded-Proto": "https"}
    for trusted, secure in (("127.0.0.1", True), ("192.0.2.7", False), ("", False)):
        monkeypatch.setenv("CERTFLEET_TRUSTED_PROXIES", trusted)
        get_settings.cache_clear()
        port = free_port()
        server = DashboardThread("127.0.0.1", port)  # a real uvicorn: its proxy-header handling is what runs
        server.start()
        try:
            cookie = _login_page_cookie(port, forwarded)
        finally:
            server.stop()
        assert ("; Secure" in cookie) is secure, (trusted, cookie)


def test_templates_have_no_inline_script_style_or_handlers() -> None:
    """The CSP allows no inline code: every page's behaviour and looks come from /static."""
    for path in TEMPLATES.rglob("*.html"):
        html = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, f"{path.name}: inline script {tag}"
        assert "<style" not in html, f"{path.name}: inline <style>"
        assert not re.search(r"\sstyle=", html), f"{path.name}: style attribute"
        assert not re.search(r"\son[a-z]+=", html), f"{path.name}: inline event handler"
        assert "javascript:" not in html, path.name
        assert not re.search(r"(src|href)=\"(https?:)?//", html), f"{path.name}: loads from another site"


@SQLITE
def test_api_docs_need_login_and_come_from_certfleets_own_files(client: TestClient, accounts: Accounts) -> None:
    anonymous = client.get("/api/docs", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login?next=/api/docs"
    assert client.get("/api/v1/openapi.json").status_code == 401
    login(client, "viewer")
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert "/vendor/swagger-ui/swagger-ui-bundle.js" in assets
    assert "/static/api-docs.js" in assets
    assert all(a.startswith("/") and not a.startswith("//") for a in assets), assets  # no CDN
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
    assert "SwaggerUIBundle" in client.get("/vendor/swagger-ui/swagger-ui-bundle.js").text
    assert client.get("/api/v1/openapi.json").json()["info"]["title"] == "certfleet"


@SQLITE
def test_users_export_is_for_admins_only(client: TestClient, accounts: Accounts) -> None:
    for role in ("viewer", "operator"):
        login(client, role)
        assert client.get("/users/export.xlsx").status_code == 403, role
        assert client.get("/api/v1/users/export", headers=auth(accounts, role)).status_code == 403, role
    login(client, "admin")
    export = client.get("/users/export.xlsx")
    assert export.status_code == 200
    assert export.content[:2] == b"PK"  # an xlsx (zip) file
