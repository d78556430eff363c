"""Channels against real receivers: aiosmtpd (STARTTLS + AUTH) and a local HTTP server (body shapes, HMAC);
the outbox's retries with backoff on a refusing SMTP server, and one message per channel when senders race."""

from __future__ import annotations

import hashlib
import hmac
import ssl
import threading
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from certfleet.demo.listener import free_port
from certfleet.fields import InputError
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, Notification, NotificationChannel, NotificationState, utcnow
from certfleet.notifications import service
from certfleet.notifications.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER
from certfleet.notifications.outbox import FIRST_RETRY, LEASE, MAX_ATTEMPTS, deliver_due, enqueue, retry_delay
from tests.emulators.pki import TlsIdentity
from tests.notifications.helpers import add_channel, add_rule, email_body, failed_renewal_event
from tests.notifications.receivers import MailHandler, SmtpServer, WebhookServer


def _rows() -> list[Notification]:
    with session_scope() as s:
        rows = list(s.scalars(select(Notification).order_by(Notification.id)))
        s.expunge_all()
        return rows


def test_email_over_starttls_with_auth_has_text_and_html_and_a_sortable_subject(
    database: str, smtp_server: SmtpServer
) -> None:
    channel = add_channel(email_body(smtp_server))
    add_rule("renewal-failed", [channel])
    now = utcnow()
    with session_scope() as s:
        assert enqueue(s, failed_renewal_event(), now) == 1
    assert deliver_due(now) == {"sent": 1, "failed": 0, "skipped": 0}

    [(envelope, mail)] = smtp_server.handler.messages
    assert envelope.rcpt_tos == ["ops@example.org", "pki@example.org"]
    assert envelope.mail_from == "certfleet@example.org"
    assert mail["Subject"] == "[certfleet] RENEWAL FAILED www.example.com"
    assert mail.get_content_type() == "multipart/alternative"
    plain = mail.get_body(preferencelist=("plain",))
    rich = mail.get_body(preferencelist=("html",))
    assert plain is not None
    assert rich is not None
    assert "CA said 503" in plain.get_content()
    assert "<th align='left'>Reason</th><td>CA said 503</td>" in rich.get_content()
    [row] = _rows()
    assert row.state is NotificationState.SENT
    assert row.response == "250 2.0.0 queued as 4711"
    assert row.attempts == 1


def test_wrong_smtp_password_is_refused_and_the_test_button_shows_the_answer(
    database: str, smtp_server: SmtpServer
) -> None:
    channel = add_channel(email_body(smtp_server, password="wrong"))
    with session_scope() as s:
        ok, answer = service.send_test(s, channel, "admin")
    assert not ok
    assert answer.startswith("SMTP 535"), answer
    assert smtp_server.handler.messages == []
    with session_scope() as s:
        service.update_channel(s, channel, email_body(smtp_server), "admin")  # the right password
        ok, answer = service.send_test(s, channel, "admin")
        outcomes = list(s.scalars(select(AuditEvent.outcome).where(AuditEvent.action == "test-notification-channel")))
    assert ok
    assert answer == "250 2.0.0 queued as 4711"
    assert outcomes == ["failure", "success"]
    [(_, mail)] = smtp_server.handler.messages
    assert mail["Subject"] == "[certfleet] TEST ops mail"


def test_a_refusing_smtp_server_is_retried_with_backoff_and_the_failure_is_visible(
    database: str, smtp_server: SmtpServer
) -> None:
    channel = add_channel(email_body(smtp_server))
    add_rule("renewal-failed", [channel])
    smtp_server.handler.refuse = "451 4.3.0 mailbox busy, try later"
    now = utcnow()
    with session_scope() as s:
        enqueue(s, failed_renewal_event(), now)
    assert deliver_due(now)["failed"] == 1
    [row] = _rows()
    assert (row.state, row.attempts) == (NotificationState.PENDING, 1)
    assert row.last_error == "SMTP 451 4.3.0 mailbox busy, try later"
    assert row.next_attempt_at == now + FIRST_RETRY
    # Not due yet: nobody sends it again before its backoff.
    assert deliver_due(now + FIRST_RETRY - timedelta(seconds=1)) == {"sent": 0, "failed": 0, "skipped": 0}
    assert smtp_server.handler.refused == 1
    later = now + FIRST_RETRY
    assert deliver_due(later)["failed"] == 1
    [row] = _rows()
    assert row.attempts == 2
    assert row.next_attempt_at == later + 2 * FIRST_RETRY
    smtp_server.handler.refuse = None
    assert deliver_due(later + 2 * FIRST_RETRY)["sent"] == 1
    [row] = _rows()
    assert (row.state, row.attempts, row.response) == (NotificationState.SENT, 3, "250 2.0.0 queued as 4711")
    assert len(smtp_server.handler.messages) == 1


def test_a_server_that_keeps_refusing_ends_failed_after_the_last_attempt(
    database: str, smtp_server: SmtpServer
) -> None:
    channel = add_channel(email_body(smtp_server))
    add_rule("renewal-failed", [channel])
    smtp_server.handler.refuse = "554 5.7.1 rejected by policy"
    at = utcnow()
    with session_scope() as s:
        enqueue(s, failed_renewal_event(), at)
    for _ in range(MAX_ATTEMPTS):
        assert deliver_due(at)["failed"] == 1
        at = at + timedelta(hours=2)
    [row] = _rows()
    assert (row.state, row.attempts) == (NotificationState.FAILED, MAX_ATTEMPTS)
    assert row.last_error == "SMTP 554 5.7.1 rejected by policy"
    assert deliver_due(at + timedelta(days=1)) == {"sent": 0, "failed": 0, "skipped": 0}
    with session_scope() as s:
        [shown] = service.last_notifications(s)
    assert shown["state"] == "failed"
    assert shown["last_error"] == "SMTP 554 5.7.1 rejected by policy"


def test_slack_teams_and_signed_webhook_bodies(database: str, webhook_server: WebhookServer) -> None:
    slack = add_channel({"name": "slack", "kind": "slack", "url": webhook_server.url("/slack/T0/B0/xyz")})
    teams = add_channel({"name": "teams", "kind": "teams", "url": webhook_server.url("/teams/flow")})
    hook = add_channel(
        {"name": "hook", "kind": "webhook", "url": webhook_server.url("/hook"), "signing_key": "k3y with space"}
    )
    add_rule("renewal-failed", [slack, teams, hook], tag="env=prod")
    now = utcnow()
    with session_scope() as s:
        assert enqueue(s, failed_renewal_event(), now) == 3
    assert deliver_due(now)["sent"] == 3
    by_path = {hit.path: hit for hit in webhook_server.hits}
    assert set(by_path) == {"/slack/T0/B0/xyz", "/teams/flow", "/hook"}

    body = by_path["/slack/T0/B0/xyz"].json()
    assert body["text"] == "[certfleet] RENEWAL FAILED www.example.com"
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section"]
    assert body["blocks"][1]["text"] == {"type": "mrkdwn", "text": "The order for www.example.com failed: CA said 503"}

    body = by_path["/teams/flow"].json()
    assert body["type"] == "message"
    [card] = body["attachments"]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard"
    assert card["content"]["body"][0]["text"] == "[certfleet] RENEWAL FAILED www.example.com"
    assert {"title": "Reason", "value": "CA said 503"} in card["content"]["body"][2]["facts"]

    hit = by_path["/hook"]
    ts = hit.headers[TIMESTAMP_HEADER.lower()]
    expected = hmac.new(b"k3y with space", ts.encode() + b"." + hit.body, hashlib.sha256).hexdigest()
    assert hit.headers[SIGNATURE_HEADER.lower()] == f"sha256={expected}"
    assert hit.json()["event"] == "renewal-failed"
    assert hit.json()["key"] == "renewal-failed:order-1"
    assert hit.json()["facts"] == {"Certificate": "www.example.com", "Reason": "CA said 503"}
    [row] = [r for r in _rows() if r.channel_id == hook]
    assert row.response == "HTTP 200 ok"


def test_a_webhook_answering_500_is_a_visible_failure(database: str, webhook_server: WebhookServer) -> None:
    webhook_server.status, webhook_server.answer = 500, b"upstream exploded"
    hook = add_channel({"name": "hook", "kind": "webhook", "url": webhook_server.url("/hook"), "signing_key": "k"})
    with session_scope() as s:
        ok, answer = service.send_test(s, hook, "admin")
    assert (ok, answer) == (False, "HTTP 500 upstream exploded")


def test_rules_filter_by_tag_and_ca_connector(database: str, webhook_server: WebhookServer) -> None:
    hook = add_channel({"name": "hook", "kind": "webhook", "url": webhook_server.url("/hook"), "signing_key": "k"})
    add_rule("renewal-failed", [hook], tag="env=test")  # the event is tagged env=prod
    with session_scope() as s:
        assert enqueue(s, failed_renewal_event(), utcnow()) == 0
    add_rule("renewal-failed", [hook])
    with session_scope() as s:
        assert enqueue(s, failed_renewal_event(), utcnow()) == 1


def test_two_senders_racing_on_the_same_event_send_one_message_per_channel(
    database: str, smtp_server: SmtpServer, webhook_server: WebhookServer
) -> None:
    mail = add_channel(email_body(smtp_server))
    hook = add_channel({"name": "hook", "kind": "webhook", "url": webhook_server.url("/hook"), "signing_key": "k"})
    add_rule("renewal-failed", [mail, hook])
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            now = utcnow()
            barrier.wait()
            with session_scope() as s:
                enqueue(s, failed_renewal_event(), now)
            barrier.wait()
            deliver_due(now)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(smtp_server.handler.messages) == 1
    assert len(webhook_server.hits) == 1
    assert {(r.channel_id, r.state) for r in _rows()} == {
        (mail, NotificationState.SENT),
        (hook, NotificationState.SENT),
    }


def test_secrets_are_sealed_and_never_returned(database: str, smtp_server: SmtpServer) -> None:
    channel = add_channel(email_body(smtp_server))
    with session_scope() as s:
        shown = service.channel_detail(s.get_one(NotificationChannel, channel))
        raw = s.connection().exec_driver_sql("SELECT secret FROM notification_channels").scalar()
    assert "s3cret" not in repr(shown)
    assert shown["secret_set"] is True
    assert raw is not None
    assert "s3cret" not in raw


def test_backoff_doubles_up_to_an_hour() -> None:
    assert [retry_delay(n).total_seconds() for n in range(1, 10)] == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_a_row_left_sending_by_a_sender_that_died_is_sent_after_its_lease(
    database: str, webhook_server: WebhookServer
) -> None:
    hook = add_channel({"name": "hook", "kind": "webhook", "url": webhook_server.url("/hook"), "signing_key": "k"})
    add_rule("renewal-failed", [hook])
    now = utcnow()
    with session_scope() as s:
        enqueue(s, failed_renewal_event(), now)
        row = s.scalars(select(Notification)).one()
        row.state, row.lease_until, row.attempts = NotificationState.SENDING, now + LEASE, 1  # claimed, then died
    assert deliver_due(now + LEASE - timedelta(seconds=1)) == {"sent": 0, "failed": 0, "skipped": 0}
    assert deliver_due(now + LEASE + timedelta(seconds=1))["sent"] == 1
    [row] = _rows()
    assert (row.state, row.attempts) == (NotificationState.SENT, 2)
    assert len(webhook_server.hits) == 1


def test_email_over_implicit_tls(database: str, emulator_tls: TlsIdentity) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(emulator_tls.cert_path, emulator_tls.key_path)
    handler = MailHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ssl_context=ctx)
    controller.start()
    try:
        channel = add_channel(
            {
                "name": "tls mail",
                "kind": "email",
                "host": "127.0.0.1",
                "port": port,
                "security": "tls",
                "sender": "certfleet@example.org",
                "recipients": "ops@example.org",
                "ca_file": str(emulator_tls.ca_path),
            }
        )
        with session_scope() as s:
            ok, answer = service.send_test(s, channel, "admin")
    finally:
        controller.stop()
    assert (ok, answer) == (True, "250 2.0.0 queued as 4711")
    [(envelope, _)] = handler.messages
    assert envelope.rcpt_tos == ["ops@example.org"]


def test_an_unreachable_slack_webhook_fails_without_its_secret_url_in_the_error(database: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/services/T0/B0/very-secret-token"
    channel = add_channel({"name": "slack", "kind": "slack", "url": url})
    with session_scope() as s:
        ok, answer = service.send_test(s, channel, "admin")
    assert not ok
    assert answer.startswith("ConnectError: ")
    assert "very-secret-token" not in answer


def test_a_url_with_whitespace_around_it_is_refused_not_stored(database: str) -> None:
    # urlsplit drops the spaces: the URL was accepted and stored with them, and called without
    for url in (" https://hooks.example.com/x", "https://hooks.example.com/x "):
        with session_scope() as s, pytest.raises(InputError, match=r"url: (starts|ends) with whitespace"):
            service.create_channel(s, {"name": "hook", "kind": "webhook", "url": url, "signing_key": "k"}, "admin")
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(NotificationChannel)) == 0
