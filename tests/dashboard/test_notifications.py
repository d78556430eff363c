"""Notifications API and page: channels (secrets write-only), the Test button against real receivers (aiosmtpd,
a local HTTP server), rules, and the last notifications with their delivery state. Admin configures, all read."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from certfleet.models.db import session_scope
from certfleet.models.orm import NotificationChannel, NotificationRule
from certfleet.notifications.checks import run_check
from certfleet.renewal.runs import record_completed
from tests.dashboard.conftest import Accounts, auth, login
from tests.notifications.helpers import email_body
from tests.notifications.receivers import SMTP_PASSWORD, SmtpServer, WebhookServer, smtp_server, webhook_server

__all__ = ["smtp_server", "webhook_server"]  # fixtures

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def test_api_channel_lifecycle_with_test_send_and_no_secret_returned(
    client: TestClient, accounts: Accounts, smtp_server: SmtpServer
) -> None:
    admin, viewer = auth(accounts, "admin"), auth(accounts, "viewer")
    body = email_body(smtp_server)
    assert client.post("/api/v1/notifications/channels", json=body, headers=viewer).status_code == 403
    created = client.post("/api/v1/notifications/channels", json=body, headers=admin)
    assert created.status_code == 201, created.text
    channel = created.json()
    assert channel["settings"]["recipients"] == ["ops@example.org", "pki@example.org"]
    assert channel["secret_set"] is True
    listed = client.get("/api/v1/notifications/channels", headers=viewer)
    assert listed.status_code == 200
    assert SMTP_PASSWORD not in listed.text
    assert SMTP_PASSWORD not in client.get(f"/api/v1/notifications/channels/{channel['id']}", headers=viewer).text

    tested = client.post(f"/api/v1/notifications/channels/{channel['id']}/test", headers=admin)
    assert tested.json() == {"sent": True, "answer": "250 2.0.0 queued as 4711"}
    [(_, mail)] = smtp_server.handler.messages
    assert mail["Subject"] == "[certfleet] TEST ops mail"

    # Edit without the password keeps it: the next test still logs in.
    edit = {k: v for k, v in body.items() if k != "password"} | {"name": "ops mailbox"}
    assert client.put(f"/api/v1/notifications/channels/{channel['id']}", json=edit, headers=admin).status_code == 200
    assert client.post(f"/api/v1/notifications/channels/{channel['id']}/test", headers=admin).json()["sent"] is True

    rule = client.post(
        "/api/v1/notifications/rules",
        json={"event_kind": "renewal-schedule-stale", "channel_ids": [channel["id"]]},
        headers=admin,
    )
    assert rule.status_code == 201, rule.text
    assert client.get("/api/v1/notifications/rules", headers=viewer).json() == [rule.json()]
    assert client.delete(f"/api/v1/notifications/channels/{channel['id']}", headers=admin).status_code == 204
    with session_scope() as s:
        assert s.scalars(select(NotificationChannel)).all() == []
        assert s.scalars(select(NotificationRule.channel_ids)).one() == []


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"port": 0}, "port", "port: a number from 1 to 65535"),
        ({"recipients": ["ops@example.org", "not mail"]}, "recipients", "recipients: not an e-mail address"),
        ({"security": "ssl"}, "security", "security: one of starttls, tls, none"),
        ({"name": " ops"}, "name", "name: "),
        ({"kind": "pager"}, "kind", "kind: one of email, slack, teams, webhook"),
        ({"quiet_hours": "22-7"}, "quiet_hours", "quiet_hours: two times HH:MM-HH:MM (UTC)"),
        ({"quiet_hours": "07:00-07:00"}, "quiet_hours", "quiet_hours: start and end are the same time"),
    ],
)
def test_api_refuses_a_bad_field_naming_it(
    client: TestClient, accounts: Accounts, smtp_server: SmtpServer, change: dict[str, Any], field: str, message: str
) -> None:
    response = client.post(
        "/api/v1/notifications/channels", json=email_body(smtp_server) | change, headers=auth(accounts, "admin")
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert response.json()["detail"].startswith(message)


def test_api_rule_refuses_unknown_event_kind_and_channel(client: TestClient, accounts: Accounts) -> None:
    admin = auth(accounts, "admin")
    bad_kind = client.post("/api/v1/notifications/rules", json={"event_kind": "x", "channel_ids": [1]}, headers=admin)
    assert bad_kind.status_code == 422
    assert bad_kind.json()["field"] == "event_kind"
    no_channel = client.post(
        "/api/v1/notifications/rules", json={"event_kind": "bot-inactive", "channel_ids": [999]}, headers=admin
    )
    assert (no_channel.status_code, no_channel.json()["detail"]) == (422, "channel_ids: no channel 999")


def test_page_add_webhook_test_button_rule_and_delivery_state(
    client: TestClient, accounts: Accounts, webhook_server: WebhookServer
) -> None:
    token = login(client, "admin")
    form = {
        "csrf_token": token,
        "kind": "webhook",
        "name": "siem",
        "url": webhook_server.url("/siem"),
        "signing_key": "hmac key",
        "enabled": "true",
    }
    saved = client.post("/notifications/channels", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    with session_scope() as s:
        channel_id = s.scalars(select(NotificationChannel.id)).one()

    webhook_server.status, webhook_server.answer = 502, b"bad gateway"
    failed = client.post(f"/notifications/channels/{channel_id}/test", data={"csrf_token": token})
    assert failed.status_code == 200
    assert "Not sent" in failed.text
    assert "HTTP 502 bad gateway" in failed.text
    webhook_server.status, webhook_server.answer = 200, b"accepted"
    sent = client.post(f"/notifications/channels/{channel_id}/test", data={"csrf_token": token})
    assert "Sent" in sent.text
    assert "HTTP 200 accepted" in sent.text
    assert [hit.json()["subject"] for hit in webhook_server.hits] == ["[certfleet] TEST siem"] * 2

    rule = {"csrf_token": token, "event_kind": "renewal-schedule-stale", "channel_ids": str(channel_id), "tag": ""}
    assert client.post("/notifications/rules", data=rule, follow_redirects=False).status_code == 303
    from datetime import timedelta

    from certfleet.models.orm import utcnow

    record_completed(at=utcnow() - timedelta(hours=6))
    run_check()
    page = client.get("/notifications")
    assert page.status_code == 200
    assert "[certfleet] RENEWAL SCHEDULE DID NOT RUN renew-expiring" in page.text
    assert '<td class="state-sent">sent</td>' in page.text
    assert "hmac key" not in page.text
    edit = client.get(f"/notifications/channels/{channel_id}")
    assert "hmac key" not in edit.text
    assert "stored; leave empty to keep it" in edit.text


def test_page_form_error_names_the_field_and_does_not_echo_the_secret(client: TestClient, accounts: Accounts) -> None:
    token = login(client, "admin")
    form = {"csrf_token": token, "kind": "slack", "name": "chat", "url": "ftp://hooks.example/xyz", "enabled": "true"}
    response = client.post("/notifications/channels", data=form)
    assert response.status_code == 422
    assert "url: an http:// or https:// URL with a host" in response.text
    assert "ftp://hooks.example/xyz" not in response.text


def test_a_viewer_sees_the_page_without_admin_buttons(client: TestClient, accounts: Accounts) -> None:
    login(client, "viewer")
    page = client.get("/notifications")
    assert page.status_code == 200
    assert "Last notifications" in page.text
    assert 'data-testid="add-email"' not in page.text
    assert client.get("/notifications/channels/new").status_code == 403


def test_api_rule_refuses_ids_no_database_can_hold(client: TestClient, accounts: Accounts) -> None:
    admin = auth(accounts, "admin")
    for body in (
        {"event_kind": "bot-inactive", "channel_ids": [2**70]},
        {"event_kind": "bot-inactive", "channel_ids": [1], "ca_connector_id": 2**70},
    ):
        response = client.post("/api/v1/notifications/rules", json=body, headers=admin)
        assert response.status_code == 422, response.text
