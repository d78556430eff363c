"""Channels and rules: validation, create / edit / delete (audited), the last notifications, and the Test send.

Input is a flat dict (the API body or the form): every value is stored exactly as sent or refused with an
`InputError` naming the field. Secrets (SMTP password, Slack/Teams webhook URL, HMAC signing key) are
write-only: sealed in the database, never returned; left out on edit, the stored one is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from certfleet.fields import Email, Host, InputError, Name, Secret, Tag, edge_space_problem, unicode_problem
from certfleet.models import repo
from certfleet.models.orm import (
    CAConnector,
    Notification,
    NotificationChannel,
    NotificationRule,
    NotificationState,
    utcnow,
)
from certfleet.notifications.channels import (
    KIND_LABELS,
    KINDS,
    SMTP_SECURITY,
    ChannelConfig,
    DeliveryError,
    Message,
    send,
)
from certfleet.notifications.outbox import EVENT_KINDS, parse_quiet_hours

SERVER_GROUP = Name(120)  # the rule the bots' Group field obeys

NAME = Name(120)
USERNAME = Name(320)
URL_MAX = 2000
RECIPIENTS_MAX = 50
# Secret per kind: the key of the body it is read from.
SECRET_FIELD = {"email": "password", "slack": "url", "teams": "url", "webhook": "signing_key"}


def body_text(body: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    """A text value of a flat body (form or JSON), as sent; None when optional and absent or empty."""
    value = body.get(key)
    if value is None or (value == "" and not required):
        if required:
            raise InputError(f"{key}: required", field=key)
        return None
    if not isinstance(value, str):
        raise InputError(f"{key}: must be text", field=key)
    return value


def _url(value: str, key: str) -> str:
    if len(value) > URL_MAX:
        raise InputError(f"{key}: {len(value)} characters, at most {URL_MAX}", field=key)
    problem = unicode_problem(value) or edge_space_problem(value)  # urlsplit drops spaces around a URL
    if problem:
        raise InputError(f"{key}: {problem}", field=key)
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InputError(f"{key}: an http:// or https:// URL with a host", field=key)
    return value


def body_port(body: dict[str, Any], *, default: int | None = None, hint: str = "") -> int:
    """`port` of a flat body (a number or its digits); `default` when it is absent or empty, if one is given."""
    value = body.get("port")
    if default is not None and value in ("", None):
        return default
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise InputError(f"port: a number from 1 to 65535{hint}", field="port")
    return value


def _recipients(value: Any) -> list[str]:
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")] if value.strip() else []
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise InputError("recipients: a list of e-mail addresses (or one text, comma-separated)", field="recipients")
    if not items:
        raise InputError("recipients: at least one address", field="recipients")
    if len(items) > RECIPIENTS_MAX:
        raise InputError(f"recipients: {len(items)} addresses, at most {RECIPIENTS_MAX}", field="recipients")
    return [Email().check(item, "recipients") for item in items]


def _enabled(body: dict[str, Any], default: bool) -> bool:
    value = body.get("enabled", default)
    if isinstance(value, str) and value in ("true", "false", "on"):
        return value != "false"
    if not isinstance(value, bool):
        raise InputError("enabled: true or false", field="enabled")
    return value


def smtp_settings(body: dict[str, Any], password: str | None, password_stored: bool) -> dict[str, Any]:
    """An SMTP server's shown settings (host, port, security, sender, username, ca_file) from a flat body, each
    checked (an `InputError` naming the field); `password` is the sent one (None: keep the stored one, if
    `password_stored`). Shared by the e-mail channel and S/MIME delivery."""
    settings: dict[str, Any] = {"host": Host().check(body_text(body, "host") or "", "host"), "port": body_port(body)}
    security = body_text(body, "security", required=False) or "starttls"
    if security not in SMTP_SECURITY:
        raise InputError(f"security: one of {', '.join(SMTP_SECURITY)}", field="security")
    settings["security"] = security
    settings["sender"] = Email().check(body_text(body, "sender") or "", "sender")
    username = body_text(body, "username", required=False)
    settings["username"] = USERNAME.check(username, "username") if username is not None else None
    ca_file = body_text(body, "ca_file", required=False)
    if ca_file is not None:
        problem = unicode_problem(ca_file)
        if problem or not ca_file.startswith("/"):
            raise InputError(f"ca_file: {problem or 'an absolute path to a PEM bundle'}", field="ca_file")
    settings["ca_file"] = ca_file
    if password is not None:
        Secret().check(password, "password")
    if settings["username"] and password is None and not password_stored:
        raise InputError("password: required with a username", field="password")
    return settings


@dataclass
class ChannelInput:
    name: str
    kind: str
    settings: dict[str, Any]
    secret: str | None  # None: keep the stored one
    enabled: bool


def channel_input(body: dict[str, Any], existing: NotificationChannel | None = None) -> ChannelInput:
    name = NAME.check(body_text(body, "name") or "", "name")
    kind = existing.kind if existing else body_text(body, "kind") or ""
    if kind not in KINDS:
        raise InputError(f"kind: one of {', '.join(KINDS)}", field="kind")
    if existing and body.get("kind") not in (None, existing.kind):
        raise InputError("kind: cannot be changed; make a new channel", field="kind")
    settings: dict[str, Any] = {}
    secret_key = SECRET_FIELD[kind]
    secret = body_text(body, secret_key, required=False)
    if kind == "email":
        settings.update(smtp_settings(body, secret, existing is not None and existing.secret is not None))
        settings["recipients"] = _recipients(body.get("recipients"))
    elif kind in ("slack", "teams"):
        if secret is not None:
            _url(secret, "url")
        elif not (existing and existing.secret):
            raise InputError("url: required (the incoming webhook's URL, kept secret)", field="url")
    else:
        settings["url"] = _url(body_text(body, "url") or "", "url")
        if secret is not None:
            Secret().check(secret, "signing_key")
        elif not (existing and existing.secret):
            raise InputError("signing_key: required (the HMAC-SHA256 key the receiver checks)", field="signing_key")
    quiet = body_text(body, "quiet_hours", required=False)
    if quiet is not None:
        try:
            parse_quiet_hours(quiet)
        except ValueError as exc:
            raise InputError(f"quiet_hours: {exc}", field="quiet_hours") from None
    settings["quiet_hours"] = quiet
    return ChannelInput(name, kind, settings, secret, _enabled(body, existing.enabled if existing else True))


def _unique_name(session: Session, name: str, own_id: int | None) -> None:
    other = session.scalar(select(NotificationChannel.id).where(NotificationChannel.name == name))
    if other is not None and other != own_id:
        raise InputError(f"name: a channel named {name!r} exists", field="name")


def create_channel(session: Session, body: dict[str, Any], actor: str) -> NotificationChannel:
    data = channel_input(body)
    _unique_name(session, data.name, None)
    row = NotificationChannel(
        name=data.name,
        kind=data.kind,
        settings=data.settings,
        secret=data.secret,
        enabled=data.enabled,
        created_by=actor,
    )
    session.add(row)
    session.flush()
    repo.audit(session, actor=actor, action="create-notification-channel", obj=row, detail=f"{row.kind} {row.name!r}")
    return row


def update_channel(session: Session, channel_id: int, body: dict[str, Any], actor: str) -> NotificationChannel:
    row = repo.get(session, NotificationChannel, channel_id)
    data = channel_input(body, row)
    _unique_name(session, data.name, row.id)
    row.name, row.settings, row.enabled = data.name, data.settings, data.enabled
    if data.secret is not None:
        row.secret = data.secret
    repo.audit(session, actor=actor, action="edit-notification-channel", obj=row, detail=f"{row.kind} {row.name!r}")
    return row


def delete_channel(session: Session, channel_id: int, actor: str) -> None:
    row = repo.get(session, NotificationChannel, channel_id)
    for rule in session.scalars(select(NotificationRule)):
        if channel_id in rule.channel_ids:
            rule.channel_ids = [c for c in rule.channel_ids if c != channel_id]
    session.execute(delete(Notification).where(Notification.channel_id == channel_id))
    repo.audit(session, actor=actor, action="delete-notification-channel", obj=row, detail=f"{row.kind} {row.name!r}")
    session.delete(row)


def get_channel(session: Session, channel_id: int) -> NotificationChannel:
    return repo.get(session, NotificationChannel, channel_id)


def channel_detail(row: NotificationChannel) -> dict[str, Any]:
    """Never the secret: only whether one is stored."""
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "kind_label": KIND_LABELS[row.kind],
        "settings": dict(row.settings),
        "secret_set": row.secret is not None,
        "enabled": row.enabled,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
    }


def list_channels(session: Session) -> list[dict[str, Any]]:
    return [channel_detail(r) for r in session.scalars(select(NotificationChannel).order_by(NotificationChannel.name))]


def send_test(session: Session, channel_id: int, actor: str) -> tuple[bool, str]:
    """Send a real message now (not through the outbox); (sent?, the server's answer)."""
    row = repo.get(session, NotificationChannel, channel_id)
    msg = Message(
        kind="test",
        key=f"test:{row.id}:{utcnow().isoformat()}",
        subject=f"[certfleet] TEST {row.name}",
        text=f"A test message from certfleet, sent by {actor} to the channel {row.name!r}.",
        facts=[("Channel", row.name), ("Kind", KIND_LABELS[row.kind]), ("Sent by", actor)],
    )
    try:
        answer, ok = send(ChannelConfig(row.kind, dict(row.settings), row.secret), msg), True
    except DeliveryError as exc:
        answer, ok = str(exc), False
    repo.audit(
        session,
        actor=actor,
        action="test-notification-channel",
        obj=row,
        outcome="success" if ok else "failure",
        detail=answer[:300],
    )
    return ok, answer


def _is_row_id(value: Any) -> bool:
    """An int a database id column can hold (a larger one fails in the database, not here)."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def _channel_ids(session: Session, value: Any) -> list[int]:
    if isinstance(value, str):
        value = [int(v) for v in value.split(",") if v.strip().isdigit()] if value.strip() else []
    if not isinstance(value, list) or not all(_is_row_id(v) for v in value):
        raise InputError("channel_ids: a list of channel ids", field="channel_ids")
    if not value:
        raise InputError("channel_ids: at least one channel", field="channel_ids")
    if len(set(value)) != len(value):
        raise InputError("channel_ids: a channel is listed twice", field="channel_ids")
    known = set(session.scalars(select(NotificationChannel.id).where(NotificationChannel.id.in_(value))))
    missing = [v for v in value if v not in known]
    if missing:
        raise InputError(f"channel_ids: no channel {missing[0]}", field="channel_ids")
    return list(value)


def rule_input(session: Session, body: dict[str, Any]) -> dict[str, Any]:
    kind = body_text(body, "event_kind") or ""
    if kind not in EVENT_KINDS:
        raise InputError(f"event_kind: one of {', '.join(EVENT_KINDS)}", field="event_kind")
    ca = body.get("ca_connector_id")
    if ca in ("", None):
        ca = None
    else:
        if isinstance(ca, str) and ca.isdigit():
            ca = int(ca)
        if not _is_row_id(ca) or session.get(CAConnector, ca) is None:
            raise InputError(f"ca_connector_id: no CA connector {ca!r}", field="ca_connector_id")
    tag = body_text(body, "tag", required=False)
    group = body_text(body, "server_group", required=False)
    return {
        "event_kind": kind,
        "ca_connector_id": ca,
        "tag": Tag().check(tag, "tag") if tag is not None else None,
        "server_group": SERVER_GROUP.check(group, "server_group") if group is not None else None,
        "channel_ids": _channel_ids(session, body.get("channel_ids")),
        "enabled": _enabled(body, True),
    }


def create_rule(session: Session, body: dict[str, Any], actor: str) -> NotificationRule:
    row = NotificationRule(**rule_input(session, body), created_by=actor)
    session.add(row)
    session.flush()
    repo.audit(session, actor=actor, action="create-notification-rule", obj=row, detail=row.event_kind)
    return row


def update_rule(session: Session, rule_id: int, body: dict[str, Any], actor: str) -> NotificationRule:
    row = repo.get(session, NotificationRule, rule_id)
    for key, value in rule_input(session, body).items():
        setattr(row, key, value)
    repo.audit(session, actor=actor, action="edit-notification-rule", obj=row, detail=row.event_kind)
    return row


def delete_rule(session: Session, rule_id: int, actor: str) -> None:
    row = repo.get(session, NotificationRule, rule_id)
    repo.audit(session, actor=actor, action="delete-notification-rule", obj=row, detail=row.event_kind)
    session.delete(row)


def rule_detail(row: NotificationRule) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_kind": row.event_kind,
        "ca_connector_id": row.ca_connector_id,
        "tag": row.tag,
        "server_group": row.server_group,
        "channel_ids": list(row.channel_ids),
        "enabled": row.enabled,
    }


def list_rules(session: Session) -> list[dict[str, Any]]:
    return [rule_detail(r) for r in session.scalars(select(NotificationRule).order_by(NotificationRule.id))]


def notification_detail(row: Notification, channel_name: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_kind": row.event_kind,
        "event_key": row.event_key,
        "channel_id": row.channel_id,
        "channel": channel_name,
        "subject": row.subject,
        "state": row.state.value,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "response": row.response,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.state is NotificationState.PENDING else None,
        "created_at": row.created_at.isoformat(),
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
    }


def last_notifications(session: Session, limit: int = 100) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Notification, NotificationChannel.name)
        .join(NotificationChannel, NotificationChannel.id == Notification.channel_id)
        .order_by(Notification.id.desc())
        .limit(limit)
    ).all()
    return [notification_detail(n, name) for n, name in rows]
