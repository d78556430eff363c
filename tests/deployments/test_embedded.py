"""The embedded Prefect server with an auth string: a real `prefect server start`, its API, its UI's login."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from certfleet.demo.listener import free_port
from certfleet.deployments.api import auth_headers
from certfleet.deployments.embedded import Access, EmbeddedPrefect, EmbeddedServerError, api_access, healthy

AUTH = "embedded-test-auth-string-0123456789"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPrefect]:
    prefect = EmbeddedPrefect(tmp_path_factory.mktemp("prefect"), port=free_port(), auth_string=AUTH)
    assert prefect.start(timeout=180) is True
    yield prefect
    prefect.stop()


def _flows(server: EmbeddedPrefect, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{server.api_url}/flows/filter", json={}, headers=headers, timeout=10, trust_env=False)


def test_an_anonymous_api_call_is_refused(server: EmbeddedPrefect) -> None:
    response = _flows(server, {})
    assert response.status_code == 401
    assert response.json() == {"exception_message": "Unauthorized"}
    assert _flows(server, auth_headers("a wrong string")).status_code == 401
    assert _flows(server, auth_headers(AUTH)).status_code == 200
    assert healthy(server.api_url)  # /health answers anyone: that is how certfleet finds a running server


def test_access_tells_granted_from_refused(server: EmbeddedPrefect) -> None:
    assert api_access(server.api_url, AUTH) is Access.GRANTED
    assert api_access(server.api_url, "a wrong string") is Access.REFUSED
    assert api_access(server.api_url, None) is Access.REFUSED


def test_a_prefect_client_pointed_by_use_api_is_let_in(server: EmbeddedPrefect) -> None:
    code = (
        "import sys; from certfleet.deployments.api import use_api; use_api(sys.argv[1], sys.argv[2]); "
        "from prefect import get_client\n"
        "with get_client(sync_client=True) as c: print(c.read_flows(limit=1) is not None)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    out = subprocess.run(
        [sys.executable, "-c", code, server.api_url, AUTH], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize(("held", "says"), [("a wrong string", "a different one"), (None, "none")])
def test_attaching_without_the_servers_auth_string_is_one_clear_error(
    server: EmbeddedPrefect, tmp_path: Path, held: str | None, says: str
) -> None:
    other = EmbeddedPrefect(tmp_path, server.host, server.port, auth_string=held)
    with pytest.raises(EmbeddedServerError) as caught:
        other.start()
    assert str(caught.value) == (
        f"the Prefect server on 127.0.0.1:{server.port} requires an auth string and certfleet has {says}: "
        "set CERTFLEET_PREFECT_AUTH_STRING to that server's auth string"
    )
    assert other.process is None  # nothing was started


def test_attaching_with_the_auth_string_uses_the_running_server(server: EmbeddedPrefect, tmp_path: Path) -> None:
    assert EmbeddedPrefect(tmp_path, server.host, server.port, auth_string=AUTH).start() is False


def test_the_prefect_ui_asks_for_the_auth_string(server: EmbeddedPrefect) -> None:
    settings = httpx.get(f"{server.ui_url}/ui-settings", timeout=10, trust_env=False).json()
    assert settings["auth"] == "BASIC"
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run scripts/install-system-packages.sh (Debian package 'chromium')")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"], headless=True
        )
        try:
            page = browser.new_page()
            page.goto(server.ui_url)
            password = page.locator("input[type=password]")
            password.wait_for(timeout=60_000)
            assert "/login" in page.url
            password.fill("a wrong string")
            password.press("Enter")
            page.get_by_text("Invalid credentials").wait_for(timeout=60_000)
            password.fill(AUTH)
            password.press("Enter")
            page.wait_for_url(lambda url: "/login" not in url, timeout=120_000)  # in: on to the dashboard
            assert page.locator("input[type=password]").count() == 0
        finally:
            browser.close()


def test_the_server_process_gets_the_auth_string_and_no_analytics(tmp_path: Path) -> None:
    prefect = EmbeddedPrefect(tmp_path, port=4321, auth_string=AUTH)
    inherited = {"PATH": "/usr/bin", "PREFECT_API_URL": "http://elsewhere/api", "PREFECT_API_AUTH_STRING": "x"}
    env = prefect.environment(inherited)
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == AUTH
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PREFECT_HOME"] == str(tmp_path)
    assert not any(k.startswith("PREFECT_API_") for k in env)  # a server is no client of another API
    assert env["PATH"] == "/usr/bin"


def test_analytics_an_operator_turned_on_stay_on(tmp_path: Path) -> None:
    env = EmbeddedPrefect(tmp_path).environment({"PREFECT_SERVER_ANALYTICS_ENABLED": "true"})
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true"
    assert "PREFECT_SERVER_API_AUTH_STRING" not in env  # no auth string given, none invented


def test_a_server_without_an_auth_string_is_open(prefect_harness: None) -> None:
    from prefect.settings import PREFECT_API_URL

    url = str(PREFECT_API_URL.value())  # Prefect's own test server: started with no auth string
    assert api_access(url, None) is Access.OPEN
    assert api_access(url, AUTH) is Access.OPEN  # certfleet's header is ignored there: up warns that it is open
