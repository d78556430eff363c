"""The dashboard in a real browser: Debian's Chromium driven by Playwright against the app served by uvicorn.

Screenshots of each page are saved under artifacts/screenshots/ (the CI keeps them as test artifacts).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from certfleet.dashboard.server import DashboardThread
from certfleet.demo.listener import free_port
from certfleet.models.db import session_scope
from certfleet.models.orm import Bot, BotPurpose, BotStatus, Certificate, CertificateStatus, Server, ServerConnection
from tests.dashboard.conftest import PASSWORD, Accounts

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # the browser flow, not the SQL


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run scripts/install-system-packages.sh (Debian package 'chromium')")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: run `uv sync` (it is a dev dependency)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _seed() -> None:
    now = datetime.now(UTC)
    with session_scope() as s:
        for i, status in enumerate([BotStatus.ACTIVE] * 4 + [BotStatus.STOPPED] * 2 + [BotStatus.PENDING]):
            s.add(
                Bot(
                    name=f"bot-{status.value.lower()}-{i}",
                    ip_address=f"10.1.0.{i + 10}",
                    status=status,
                    purpose=BotPurpose.PROVISIONING if i % 2 else BotPurpose.DISCOVERY,
                    group_name="web" if i % 2 else "db",
                    os="Linux",
                    version="1.4.0",
                    last_update=now - timedelta(hours=i),
                    work_queue=f"bot-{i}",
                    created_by="seed",
                )
            )
        s.add(Server(description="nginx-1", host="10.2.0.1", ports=[443], connection=ServerConnection.SSH,
                     server_type="nginx", app_path="/etc/nginx/", username="deploy"))  # fmt: skip
        for i in range(6):
            s.add(Certificate(common_name=f"app{i}.example.com", status=CertificateStatus.ISSUED,
                              expires_on=now + timedelta(days=30 * (i + 1)), issuer_ca="Built-in CA"))  # fmt: skip


@pytest.fixture
def site(accounts: Accounts) -> Iterator[str]:
    _seed()
    port = free_port()
    server = DashboardThread("127.0.0.1", port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def page(browser: Any, site: str) -> Iterator[Any]:
    context = browser.new_context(base_url=site, accept_downloads=True, viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15000)
    pg.goto("/login")
    pg.fill("input[name=username]", "admin")
    pg.fill("input[name=password]", PASSWORD)
    pg.click("[data-testid=login]")
    pg.wait_for_url(f"{site}/")
    yield pg
    context.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def table_column(page: Any, key: str) -> list[str]:
    return [t.strip() for t in page.locator(f"[data-testid=list-table] tbody td[data-key={key}]").all_inner_texts()]


def test_active_bots_tile_shows_only_active_bots(page: Any) -> None:
    assert page.locator("[data-testid=current-user]").inner_text() == "admin"
    tile = page.locator("[data-testid=tile-bots-active]")
    assert tile.locator(".tile-count").inner_text() == "5"  # 4 seeded + the local bot
    shot(page, "dashboard")
    tile.click()
    page.wait_for_url(re.compile(r"/bots\?filter="))
    statuses = table_column(page, "status")
    assert statuses == ["Active"] * 5
    assert "Status Equals Active" in page.locator("[data-testid=applied-filter]").inner_text()
    shot(page, "bots-active")


def test_two_condition_filter(page: Any) -> None:
    page.goto("/bots")
    rows = page.locator(".filter-row")
    rows.nth(0).locator("[name=fc]").select_option("status")
    rows.nth(0).locator("[name=fv]").select_option("Active")  # a status value list, per the manual
    page.click("[data-testid=add-filter]")
    rows.nth(1).locator("[name=fc]").select_option("group")
    rows.nth(1).locator("[name=fo]").select_option("eq")
    rows.nth(1).locator("[name=fv]").fill("web")
    page.click("[data-testid=apply-filter]")
    page.wait_for_url(re.compile(r"fc=group"))
    names = table_column(page, "name")
    assert sorted(names) == ["bot-active-1", "bot-active-3"]
    shot(page, "bots-two-filters")


def test_customize_columns_is_remembered(page: Any) -> None:
    page.goto("/bots")
    page.click("[data-testid=customize-columns]")
    page.uncheck(".columns-form input[value=description]")
    page.check(".columns-form input[value=os]")
    page.check(".columns-form input[value=created_by]")
    page.click("[data-testid=save-columns]")
    page.wait_for_load_state()
    headers = page.locator("[data-testid=list-table] thead th").all_inner_texts()
    assert "OS" in headers
    assert "Created By" in headers
    assert "Description" not in headers
    page.goto("/bots")  # a fresh visit keeps the choice
    headers = page.locator("[data-testid=list-table] thead th").all_inner_texts()
    assert "OS" in headers
    assert "Description" not in headers
    shot(page, "bots-columns")


def test_excel_export_of_the_filtered_rows(page: Any, tmp_path: Path) -> None:
    page.goto("/bots?filter=status:eq:Stopped")
    with page.expect_download() as info:
        page.click("[data-testid=export-xlsx]")
    path = tmp_path / "bots.xlsx"
    info.value.save_as(path)
    ws = load_workbook(path)["Provisioning Bots"]
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][:2] == ("Bot Name", "IP Address")
    assert sorted(r[0] for r in rows[1:]) == ["bot-stopped-4", "bot-stopped-5"]
    with page.expect_download() as info:
        page.click("[data-testid=export-pdf]")
    pdf = tmp_path / "bots.pdf"
    info.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF")


def test_create_bot_shows_its_token_once(page: Any) -> None:
    page.goto("/bots")
    page.click("[data-testid=create-bot]")
    page.fill("input[name=name]", "branch-office-7")
    page.fill("input[name=ip_address]", "10.9.9.9")
    page.select_option("select[name=purpose]", "Discovery and Provisioning")
    page.fill("input[name=tags]", "site=branch7")
    page.click("[data-testid=save-bot]")
    token = page.locator("[data-testid=bot-token]").inner_text().strip()
    assert token.startswith("cfb_")
    assert len(token) > 40
    shot(page, "bot-token")
    page.click("[data-testid=back-to-bots]")
    assert token not in page.content()
    page.goto("/bots?filter=name:eq:branch-office-7")
    assert table_column(page, "name") == ["branch-office-7"]
    assert table_column(page, "status") == ["Pending Activation"]
    page.click("[data-testid=list-table] tbody a")
    assert token not in page.content()
    assert token[:10] in page.content()  # only its prefix, to tell tokens apart


def test_add_server_form_switches_fields_by_server_type(page: Any) -> None:
    page.goto("/servers/new")
    select = page.locator("[data-testid=server-type]")
    select.select_option("tomcat")
    assert page.locator("[data-testid=path-tomcat]").is_visible()
    assert "Tomcat Path" in page.locator("[data-testid=path-tomcat]").inner_text()
    assert not page.locator("[data-testid=path-nginx]").is_visible()
    shot(page, "add-server-tomcat")
    select.select_option("weblogic")
    assert page.locator("[data-testid=path-weblogic]").is_visible()
    assert not any(page.locator(f"[data-testid=path-{k}]").is_visible()
                   for k in ("nginx", "apache", "tomcat", "jboss", "jetty"))  # fmt: skip
    page.fill("input[name=description]", "wls-admin")
    page.fill("input[name=ip_address]", "10.3.0.4")
    page.fill("input[name=username]", "oracle")
    page.fill("input[name=password]", "w3blogic-pass")
    page.locator("[data-testid=path-weblogic] input").fill("/u01/domains/base")
    page.fill("input[name=ports]", "7002")
    page.click("[data-testid=save-server]")
    page.wait_for_url(re.compile(r"/servers$"))
    with session_scope() as s:
        server = s.query(Server).filter_by(description="wls-admin").one()
        assert (server.server_type, server.app_path, server.ports) == ("weblogic", "/u01/domains/base", [7002])


def test_screenshots_of_every_page(page: Any) -> None:
    pages = {
        "certificates": "/certificates", "certificate-new": "/certificates/new", "servers": "/servers",
        "smime": "/smime", "smime-import": "/smime/import", "smime-profiles": "/smime/profiles",
        "orders": "/orders", "ca-connectors": "/ca-connectors", "ca-connector-emca": "/ca-connectors/new?kind=emca",
        "ca-connector-digicert": "/ca-connectors/new?kind=digicert", "audit": "/audit", "users": "/users",
        "api-tokens": "/account/tokens", "api-docs": "/api/docs", "discovery": "/discovery",
        "discovery-runs": "/discovery-runs", "discovery-import": "/discovery/import", "private-roots": "/private-roots",
    }  # fmt: skip
    for name, path in pages.items():
        response = page.goto(path)
        assert response is not None
        assert response.status == 200, path
        shot(page, name)
    with session_scope() as s:
        cert_id = s.query(Certificate.id).first()[0]
    page.goto(f"/certificates/{cert_id}")
    shot(page, "certificate-detail")
