"""The pages work under the Content-Security-Policy in a real browser (Debian's Chromium): Chromium reports
every blocked script, style or fetch on the console; none may appear, and the scripted parts must still run.
Swagger UI at /api/docs renders the API from certfleet's own files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from certfleet.models.db import session_scope
from certfleet.models.orm import ApiToken
from tests.dashboard.conftest import PASSWORD
from tests.dashboard.test_browser import browser, shot, site  # noqa: F401 - fixtures: Chromium, a served dashboard

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

PAGES = ["/", "/bots", "/bots/new", "/certificates", "/certificates/new", "/servers", "/servers/new", "/smime",
         "/smime/import", "/smime/profiles", "/smime/delivery?method=smb", "/smime/delivery?method=email",
         "/orders", "/ca-connectors", "/ca-connectors/new?kind=emca",
         "/audit", "/users", "/account/tokens", "/discovery", "/discovery-runs", "/discovery/import",
         "/private-roots", "/notifications", "/notifications/channels/new?kind=email",
         "/notifications/channels/new?kind=webhook"]  # fmt: skip


@pytest.fixture
def watched(browser: Any, site: str) -> Iterator[tuple[Any, list[str]]]:  # noqa: F811
    """A logged-in admin page and the console/page errors it produced (CSP violations land there)."""
    context = browser.new_context(base_url=site, viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{page.url}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"{page.url}: {e}"))
    page.goto("/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("[data-testid=login]")
    page.wait_for_url(f"{site}/")
    yield page, problems
    context.close()


def test_no_page_breaks_the_content_security_policy(watched: tuple[Any, list[str]]) -> None:
    page, problems = watched
    for path in PAGES:
        response = page.goto(path)
        assert response is not None
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
    assert [p for p in problems if "Content Security Policy" in p or "Refused" in p] == []
    # app.js ran under the policy: the filter rows were rebuilt by script (a status list, not a text box)
    page.goto("/bots")
    page.locator(".filter-row [name=fc]").first.select_option("status")
    assert page.locator(".filter-row select[name=fv]").count() == 1


def test_swagger_ui_renders_the_api_from_local_files(watched: tuple[Any, list[str]]) -> None:
    page, problems = watched
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto("/api/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30000)
    assert page.locator(".swagger-ui .opblock").count() > 50  # every operation is listed
    assert "certfleet" in page.locator(".swagger-ui .title").inner_text()
    shot(page, "api-docs")
    origin = re.match(r"https?://[^/]+", page.url)
    assert origin
    assert [u for u in requests if not u.startswith(origin.group(0)) and not u.startswith("data:")] == []
    assert [p for p in problems if "Content Security Policy" in p or "Refused" in p] == []


def test_try_it_out_in_swagger_ui_works_with_the_login_cookie(watched: tuple[Any, list[str]]) -> None:
    """api-docs.js sends the session's CSRF token, so a state-changing call from the docs page goes through."""
    page, _ = watched
    page.goto("/api/docs")
    block = page.locator(
        ".opblock-post", has=page.locator(".opblock-summary-path", has_text=re.compile(r"^/api/v1/tokens$"))
    )
    block.locator(".opblock-summary").click()
    block.locator(".try-out__btn").click()
    block.locator("textarea.body-param__text").fill('{"name": "from-the-docs"}')
    block.locator(".execute").click()
    status = block.locator(".live-responses-table .response .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "201"
    with session_scope() as s:
        assert s.query(ApiToken).filter_by(name="from-the-docs").count() == 1
