"""The JSON API: auth and roles, bots with tokens and heartbeat, the list machinery, export, errors."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from certfleet.models.db import session_scope
from certfleet.models.orm import Bot, BotPurpose, BotStatus, Certificate, CertificateStatus
from tests.dashboard.conftest import Accounts, auth
from tests.dashboard.pdftext import pdf_text


def test_api_needs_a_token_and_the_right_role(client: TestClient, accounts: Accounts) -> None:
    assert client.get("/api/v1/bots").status_code == 401
    assert client.get("/api/v1/bots", headers={"Authorization": "Bearer cfu_nope"}).status_code == 401
    assert client.get("/api/v1/bots", headers=auth(accounts, "viewer")).status_code == 200
    denied = client.post("/api/v1/bots", json={"name": "x"}, headers=auth(accounts, "viewer"))
    assert denied.status_code == 403
    assert "operator" in denied.json()["detail"]
    assert client.get("/api/v1/users", headers=auth(accounts, "operator")).status_code == 403
    assert client.get("/api/v1/me", headers=auth(accounts, "admin")).json()["role"] == "admin"


def test_bot_token_is_shown_once_stored_hashed_and_heartbeat_updates_the_bot(
    client: TestClient, accounts: Accounts
) -> None:
    created = client.post(
        "/api/v1/bots",
        json={
            "name": "edge-01",
            "ip_address": "10.0.0.5",
            "purpose": "Discovery and Provisioning",
            "tags": ["env=prod"],
        },
        headers=auth(accounts, "operator"),
    )
    assert created.status_code == 201, created.text
    body = created.json()
    token = body["token"]
    assert token.startswith("cfb_")
    assert len(token) > 40
    assert body["status"] == "Pending Activation"
    assert body["created_by"] == "operator"
    again = client.get(f"/api/v1/bots/{body['id']}", headers=auth(accounts, "viewer")).json()
    assert token not in str(again)
    assert again["token"].endswith("…")
    with session_scope() as s:
        row = s.get(Bot, body["id"])
        assert row is not None
        assert row.token_hash
        assert token not in row.token_hash

    beat = client.post(
        "/api/v1/bots/heartbeat", json={"version": "2.1.0"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert beat.status_code == 200, beat.text
    assert beat.json()["status"] == "Active"
    bot = client.get(f"/api/v1/bots/{body['id']}", headers=auth(accounts, "viewer")).json()
    assert bot["version"] == "2.1.0"
    assert bot["status"] == "Active"
    assert bot["last_update"]

    # Stopped stays stopped, and the bot is told so.
    client.post(f"/api/v1/bots/{body['id']}/stop", headers=auth(accounts, "operator"))
    beat = client.post("/api/v1/bots/heartbeat", json={}, headers={"Authorization": f"Bearer {token}"})
    assert beat.json()["status"] == "Stopped"

    # Revoked: the token no longer works.
    client.delete(f"/api/v1/bots/{body['id']}/token", headers=auth(accounts, "operator"))
    beat = client.post("/api/v1/bots/heartbeat", json={}, headers={"Authorization": f"Bearer {token}"})
    assert beat.status_code == 401


def test_duplicate_bot_name_is_a_clear_422(client: TestClient, accounts: Accounts) -> None:
    client.post("/api/v1/bots", json={"name": "dup"}, headers=auth(accounts, "operator"))
    again = client.post("/api/v1/bots", json={"name": "DUP"}, headers=auth(accounts, "operator"))
    assert again.status_code == 422
    assert again.json() == {"detail": "a bot named 'DUP' already exists; choose another name", "field": "name"}


def _bots(n_active: int, n_stopped: int) -> None:
    now = datetime.now(UTC)
    with session_scope() as s:
        for i in range(n_active):
            s.add(
                Bot(
                    name=f"act-{i:02d}",
                    status=BotStatus.ACTIVE,
                    purpose=BotPurpose.PROVISIONING,
                    work_queue="q",
                    created_at=now - timedelta(days=i),
                    group_name="web" if i % 2 else "db",
                )
            )
        for i in range(n_stopped):
            s.add(Bot(name=f"stop-{i:02d}", status=BotStatus.STOPPED, purpose=BotPurpose.DISCOVERY,
                      work_queue="q", created_at=now - timedelta(days=40)))  # fmt: skip


def test_filters_combine_with_and_sort_and_paginate(client: TestClient, accounts: Accounts) -> None:
    _bots(12, 3)
    h = auth(accounts, "viewer")
    page = client.get(
        "/api/v1/bots", params={"filter": ["status:eq:Active"], "per_page": 5, "sort": "-name"}, headers=h
    )
    body = page.json()
    assert body["total"] == 13  # 12 + the local bot
    assert [i["name"] for i in body["items"]][:2] == ["local-bot", "act-11"]
    assert len(body["items"]) == 5
    assert body["pages"] == 3
    both = client.get(
        "/api/v1/bots", params={"filter": ["status:eq:Active", "group:eq:web"], "per_page": 100}, headers=h
    ).json()
    assert both["total"] == 6
    assert all(i["name"].startswith("act-") for i in both["items"])
    any_status = client.get("/api/v1/bots", params={"filter": ["status:eq:All", "purpose:eq:Discovery"]}, headers=h)
    assert any_status.json()["total"] == 3
    cutoff = (datetime.now(UTC) - timedelta(days=30)).strftime("%d-%b-%Y")
    old = client.get("/api/v1/bots", params={"filter": [f"created_at:before:{cutoff}"]}, headers=h).json()
    assert old["total"] == 3
    contains = client.get("/api/v1/bots", params={"filter": ["name:contains:STOP"]}, headers=h).json()
    assert contains["total"] == 3


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ("status:contains:Act", "Status can be filtered with Equals, not 'contains'"),
        ("status:eq:Running", "Status has no value 'Running'"),
        ("created_at:before:yesterday", "'yesterday' is not a date"),
        ("colour:eq:red", "unknown column 'colour'"),
        ("justtext", "must be column:operator:value"),
    ],
)
def test_bad_filters_say_what_to_fix(client: TestClient, accounts: Accounts, flt: str, message: str) -> None:
    response = client.get("/api/v1/bots", params={"filter": [flt]}, headers=auth(accounts, "viewer"))
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_columns_are_chosen_and_remembered_per_user(client: TestClient, accounts: Accounts) -> None:
    h = auth(accounts, "viewer")
    default = client.get("/api/v1/bots", headers=h).json()
    assert [c["label"] for c in default["columns"]] == [
        "Bot Name", "IP Address", "Description", "Status", "Last Bot Update", "Bot Version"
    ]  # fmt: skip
    saved = client.put("/api/v1/preferences/columns/bots", json={"columns": ["name", "os", "created_by"]}, headers=h)
    assert saved.json()["columns"] == ["name", "os", "created_by"]
    assert [c["key"] for c in client.get("/api/v1/bots", headers=h).json()["columns"]] == ["name", "os", "created_by"]
    other = client.get("/api/v1/bots", headers=auth(accounts, "operator")).json()
    assert len(other["columns"]) == 6  # another user's choice is untouched


def test_excel_export_has_exactly_the_filtered_rows_and_columns(client: TestClient, accounts: Accounts) -> None:
    _bots(4, 2)
    response = client.get(
        "/api/v1/bots/export",
        params={"format": "xlsx", "filter": ["status:eq:Stopped"], "columns": "name,status,created_at"},
        headers=auth(accounts, "viewer"),
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    wb = load_workbook(io.BytesIO(response.content))
    ws = wb["Provisioning Bots"]
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0] == ("Bot Name", "Status", "Created Date")
    assert sorted(r[0] for r in rows[1:]) == ["stop-00", "stop-01"]
    assert all(r[1] == "Stopped" for r in rows[1:])
    assert isinstance(rows[1][2], datetime)  # a real date, not text
    assert ws.auto_filter.ref == "A1:C3"
    about = dict(wb["About"].iter_rows(values_only=True))
    assert about["Filter"] == "Status Equals Stopped"


def test_pdf_export_is_a_pdf_with_title_filter_and_rows(client: TestClient, accounts: Accounts, tmp_path: Path) -> None:
    _bots(3, 1)
    response = client.get(
        "/api/v1/bots/export",
        params={"format": "pdf", "filter": ["status:eq:Active"]},
        headers=auth(accounts, "viewer"),
    )
    assert response.status_code == 200
    data = response.content
    assert data.startswith(b"%PDF-")
    assert data.rstrip().endswith(b"%%EOF")
    text = pdf_text(data, tmp_path)
    assert "Provisioning Bots" in text
    assert "Filter: Status Equals Active" in text
    assert "act-00" in text
    assert "act-02" in text
    assert "stop-00" not in text


def test_certificate_list_and_provisioning_state_filters(client: TestClient, accounts: Accounts) -> None:
    with session_scope() as s:
        s.add(Certificate(common_name="unassigned.example", status=CertificateStatus.ISSUED))
        s.add(Certificate(common_name="failed.example", status=CertificateStatus.DEPLOYMENT_FAILED,
                          provisioning_bot_id=accounts.boot.local_bot_id))  # fmt: skip
        s.add(Certificate(common_name="config.example", status=CertificateStatus.INITIATED,
                          provisioning_bot_id=accounts.boot.local_bot_id))  # fmt: skip
    h = auth(accounts, "viewer")
    tiles = client.get("/api/v1/dashboard", headers=h).json()["certificates"]
    assert tiles == {"total": 3, "bot_unassigned": 1, "configuration_pending": 1, "deployment_pending": 0,
                     "deployment_failed": 1}  # fmt: skip
    for state, cn in [("Bot Unassigned", "unassigned.example"), ("Deployment Failed", "failed.example"),
                      ("Configuration Pending", "config.example")]:  # fmt: skip
        rows = client.get("/api/v1/certificates", params={"filter": [f"provisioning_state:eq:{state}"]}, headers=h)
        assert [i["common_name"] for i in rows.json()["items"]] == [cn]
    rows = client.get("/api/v1/certificates", headers=h).json()["items"]
    assert {r["provisioning_bot"] for r in rows} == {None, "local-bot"}


def test_openapi_document_lists_the_api(client: TestClient) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/bots", "/api/v1/bots/heartbeat", "/api/v1/certificates", "/api/v1/servers",
                 "/api/v1/smime-users", "/api/v1/ca-connectors", "/api/v1/orders", "/api/v1/audit"):  # fmt: skip
        assert path in doc["paths"], path
