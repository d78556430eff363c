"""Events, the rules that route them, and the outbox that sends each (event, channel) once.

`enqueue` writes one row per matching channel with INSERT ... ON CONFLICT DO NOTHING on (event key, channel):
two checks that see the same event at the same time write one row. `deliver_due` claims a row with a
conditional UPDATE (pending and due, or a sender's lease ran out) before sending, so two senders never send
the same row; a failed send is retried with exponential backoff and, after MAX_ATTEMPTS, stays `failed`
with the server's answer in last_error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from certfleet.models.db import session_scope
from certfleet.models.orm import Notification, NotificationChannel, NotificationRule, NotificationState, utcnow
from certfleet.notifications.channels import ChannelConfig, DeliveryError, Message, send

# Event kind -> the words that start its subject after "[certfleet]" (upper case, so a mailbox sorts by them).
EVENT_KINDS = {
    "renewal-failed": "RENEWAL FAILED",
    "deployment-failed": "DEPLOYMENT FAILED",
    "deployment-rolled-back": "DEPLOYMENT ROLLED BACK",
    "certificate-expiring": "EXPIRES IN",
    "served-serial-mismatch": "SERVED SERIAL DIFFERS",
    "bot-inactive": "BOT INACTIVE",
    "ca-connector-failing": "CA CONNECTOR FAILING",
    "renewal-schedule-stale": "RENEWAL SCHEDULE DID NOT RUN",
    "discovery-schedule-stale": "DISCOVERY DID NOT RUN",
}
MAX_ATTEMPTS = 6
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
LEASE = timedelta(minutes=2)


@dataclass(frozen=True)
class Event:
    kind: str
    key: str  # the same event always gets the same key: what makes it go out once
    subject: str
    text: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    ca_connector_id: int | None = None
    tags: list[str] = field(default_factory=list)
    # Server groups: the groups of the bots the servers concerned are mapped to (a bot's own, for a bot event).
    server_groups: list[str] = field(default_factory=list)
    urgent: bool = False  # sent during a channel's quiet hours too (expiry within 1 day)

    def message(self) -> Message:
        return Message(
            kind=self.kind,
            key=self.key,
            subject=self.subject,
            text=self.text,
            facts=self.facts,
            data={"ca_connector_id": self.ca_connector_id, "tags": self.tags, "server_groups": self.server_groups},
        )


def subject(kind: str, what: str, detail: str = "") -> str:
    """'[certfleet] RENEWAL FAILED www.example.com': sorts by kind, then by object, in a mailbox."""
    words = EVENT_KINDS[kind] + (f" {detail}" if detail else "")
    return f"[certfleet] {words} {what}"


def rule_matches(rule: NotificationRule, event: Event) -> bool:
    if rule.ca_connector_id is not None and rule.ca_connector_id != event.ca_connector_id:
        return False
    if rule.server_group is not None and rule.server_group not in event.server_groups:
        return False
    return rule.tag is None or rule.tag in event.tags


@dataclass
class Routing:
    """The enabled rules and channels, read once per check (not once per event)."""

    rules: dict[str, list[NotificationRule]]
    quiet: dict[int, str | None]  # enabled channel id -> its quiet hours

    @classmethod
    def load(cls, session: Session) -> Routing:
        rules: dict[str, list[NotificationRule]] = {}
        for rule in session.scalars(
            select(NotificationRule).where(NotificationRule.enabled.is_(True)).order_by(NotificationRule.id)
        ):
            rules.setdefault(rule.event_kind, []).append(rule)
        quiet = {
            cid: (settings or {}).get("quiet_hours")
            for cid, settings in session.execute(
                select(NotificationChannel.id, NotificationChannel.settings).where(
                    NotificationChannel.enabled.is_(True)
                )
            )
        }
        return cls(rules, quiet)

    def wants(self, kind: str) -> bool:
        return bool(self.rules.get(kind))

    def channels_for(self, event: Event) -> list[tuple[int, str | None]]:
        """The matching enabled channels: (id, quiet hours)."""
        wanted = {
            cid for rule in self.rules.get(event.kind, []) if rule_matches(rule, event) for cid in rule.channel_ids
        }
        return [(cid, self.quiet[cid]) for cid in sorted(wanted) if cid in self.quiet]


def channels_for(session: Session, event: Event) -> list[tuple[int, str | None]]:
    return Routing.load(session).channels_for(event)


_KEYS_CHUNK = 500


def enqueue_all(session: Session, events: list[Event], now: datetime | None = None) -> int:
    """Write the outbox rows of many events (one per matching channel); returns how many were new.

    Rows that exist already are looked up in chunks first, so a scan that sees the same 100,000 expiring
    certificates every few minutes inserts nothing and asks the database little; the insert itself still
    does nothing on a conflict, for a checker racing this one."""
    now = now or utcnow()
    routing = Routing.load(session)
    planned = [(event, cid, quiet) for event in events for cid, quiet in routing.channels_for(event)]
    existing: set[tuple[str, int]] = set()
    keys = sorted({event.key for event, _, _ in planned})
    for i in range(0, len(keys), _KEYS_CHUNK):
        rows = session.execute(
            select(Notification.event_key, Notification.channel_id).where(
                Notification.event_key.in_(keys[i : i + _KEYS_CHUNK])
            )
        )
        existing.update((key, cid) for key, cid in rows)
    new = 0
    for event, cid, quiet in planned:
        if (event.key, cid) not in existing:
            new += _insert(session, event, cid, quiet, now)
    return new


def enqueue(session: Session, event: Event, now: datetime | None = None) -> int:
    """Write the event's outbox rows (one per matching channel); returns how many were new."""
    return enqueue_all(session, [event], now)


def _insert(session: Session, event: Event, channel_id: int, quiet: str | None, now: datetime) -> int:
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    held = None if event.urgent else quiet_until(quiet, now)
    values: dict[str, Any] = {
        "event_key": event.key,
        "event_kind": event.kind,
        "channel_id": channel_id,
        "subject": event.subject,
        "body": event.text,
        "data": {"facts": [list(f) for f in event.facts], **event.message().data},
        "state": NotificationState.PENDING,
        "attempts": 0,
        "next_attempt_at": held or now,  # queued in quiet hours: waits for their end
        "created_at": now,
    }
    stmt = insert(Notification).values(**values).on_conflict_do_nothing(index_elements=["event_key", "channel_id"])
    # RETURNING yields the row only when it was inserted (rowcount is not reliable across drivers).
    return len(session.execute(stmt.returning(Notification.id)).all())


def parse_quiet_hours(spec: str) -> tuple[time, time]:
    """'22:00-07:00' (UTC) -> (start, end); ValueError when it is not two different HH:MM times."""
    start_text, sep, end_text = spec.partition("-")
    if not sep:
        raise ValueError("two times HH:MM-HH:MM (UTC), e.g. 22:00-07:00")
    try:
        start, end = (datetime.strptime(t, "%H:%M").time() for t in (start_text, end_text))
    except ValueError:
        raise ValueError("two times HH:MM-HH:MM (UTC), e.g. 22:00-07:00") from None
    if start == end:
        raise ValueError("start and end are the same time")
    return start, end


def quiet_until(spec: str | None, now: datetime) -> datetime | None:
    """When the quiet hours that `now` falls in end, or None when `now` is not in quiet hours."""
    if not spec:
        return None
    start, end = parse_quiet_hours(spec)
    now = now.astimezone(UTC)
    t = now.time()
    end_today = datetime.combine(now.date(), end, tzinfo=UTC)
    if start < end:
        return end_today if start <= t < end else None
    if t >= start:
        return end_today + timedelta(days=1)
    return end_today if t < end else None


def retry_delay(attempts: int) -> timedelta:
    delay: timedelta = FIRST_RETRY * 2 ** (attempts - 1)
    return min(delay, MAX_RETRY)


def _claim(row_id: int, now: datetime) -> bool:
    with session_scope() as s:
        claimed = s.execute(
            update(Notification)
            .where(
                Notification.id == row_id,
                or_(
                    and_(Notification.state == NotificationState.PENDING, Notification.next_attempt_at <= now),
                    and_(Notification.state == NotificationState.SENDING, Notification.lease_until < now),
                ),
            )
            .values(state=NotificationState.SENDING, lease_until=now + LEASE, attempts=Notification.attempts + 1)
        ).rowcount  # type: ignore[attr-defined]
    return bool(claimed)


def _load(row_id: int) -> tuple[ChannelConfig, Message]:
    with session_scope() as s:
        row = s.get_one(Notification, row_id)
        ch = row.channel
        facts = [(str(k), str(v)) for k, v in row.data.get("facts", [])]
        data = {k: v for k, v in row.data.items() if k != "facts"}
        msg = Message(row.event_kind, row.event_key, row.subject, row.body, facts, data)
        return ChannelConfig(ch.kind, dict(ch.settings), ch.secret), msg


def deliver_one(row_id: int, now: datetime | None = None) -> bool | None:
    """Claim and send one row: True sent, False failed (retry planned or given up), None not claimed."""
    now = now or utcnow()
    if not _claim(row_id, now):
        return None
    config, msg = _load(row_id)
    try:
        answer = send(config, msg)
    except DeliveryError as exc:
        with session_scope() as s:
            row = s.get_one(Notification, row_id)
            row.last_error = row.response = str(exc)
            row.lease_until = None
            if row.attempts >= MAX_ATTEMPTS:
                row.state = NotificationState.FAILED
            else:
                row.state = NotificationState.PENDING
                row.next_attempt_at = now + retry_delay(row.attempts)
        return False
    with session_scope() as s:
        row = s.get_one(Notification, row_id)
        row.state = NotificationState.SENT
        row.response = answer
        row.sent_at = utcnow()
        row.lease_until = None
    return True


def deliver_due(now: datetime | None = None, limit: int = 200) -> dict[str, int]:
    """Send every due row (pending and due, or abandoned by a sender); counts of sent / failed / skipped."""
    now = now or utcnow()
    with session_scope() as s:
        ids = list(
            s.scalars(
                select(Notification.id)
                .where(
                    or_(
                        and_(Notification.state == NotificationState.PENDING, Notification.next_attempt_at <= now),
                        and_(Notification.state == NotificationState.SENDING, Notification.lease_until < now),
                    )
                )
                .order_by(Notification.id)
                .limit(limit)
            )
        )
    counts = {"sent": 0, "failed": 0, "skipped": 0}
    for row_id in ids:
        outcome = deliver_one(row_id, now)
        counts["skipped" if outcome is None else "sent" if outcome else "failed"] += 1
    return counts
