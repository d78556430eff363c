"""Channels, rules and events the notification tests share."""

from __future__ import annotations

from typing import Any

from certfleet.models.db import session_scope
from certfleet.notifications import service
from certfleet.notifications.outbox import Event, subject
from tests.notifications.receivers import SMTP_PASSWORD, SMTP_USER, SmtpServer


def email_body(smtp: SmtpServer, name: str = "ops mail", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "email",
        "host": "127.0.0.1",
        "port": smtp.port,
        "security": "starttls",
        "username": SMTP_USER,
        "password": SMTP_PASSWORD,
        "sender": "certfleet@example.org",
        "recipients": ["ops@example.org", "pki@example.org"],
        "ca_file": smtp.ca_file,
        **extra,
    }


def add_channel(body: dict[str, Any]) -> int:
    with session_scope() as s:
        return service.create_channel(s, body, "admin").id


def add_rule(event_kind: str, channel_ids: list[int], **extra: Any) -> int:
    with session_scope() as s:
        return service.create_rule(s, {"event_kind": event_kind, "channel_ids": channel_ids, **extra}, "admin").id


def failed_renewal_event(cn: str = "www.example.com", key: str = "renewal-failed:order-1") -> Event:
    return Event(
        kind="renewal-failed",
        key=key,
        subject=subject("renewal-failed", cn),
        text=f"The order for {cn} failed: CA said 503",
        facts=[("Certificate", cn), ("Reason", "CA said 503")],
        tags=["env=prod"],
    )
