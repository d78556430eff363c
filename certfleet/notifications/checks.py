"""The event producers: a scan of the tables, safe to run anywhere and any number of times at once.

Each event gets a key that names what happened (the failed order, the finished deployment, the certificate's
serial and the threshold crossed, the bot's last heartbeat, the last completed renewal run), so scanning again
finds the same keys and the outbox's unique (event key, channel) writes nothing new. It runs in the
`check-notifications` flow (scheduled by Prefect) and on a timer inside the dashboard process, so the dead
man's switch fires even when the Prefect worker that runs renewals is down.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from certfleet.ca_admin.runtime import REMOTE_KINDS
from certfleet.ca_admin.service import check_connection
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Bot,
    BotStatus,
    CAConnector,
    Certificate,
    CertificateLocation,
    CertificateStatus,
    CompletedRun,
    ConnectorStatus,
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    DiscoveryRun,
    LocationStatus,
    Order,
    OrderState,
    Server,
    utcnow,
)
from certfleet.notifications.outbox import Event, Routing, deliver_due, enqueue_all, subject
from certfleet.renewal.runs import RENEW_EXPIRING, last_completed, record_completed
from certfleet.settings import get_settings

EXPIRY_THRESHOLDS_DAYS = (30, 14, 7, 1)
# Failures older than this when first seen are history, not news (a rule made today does not replay last year).
LOOKBACK = timedelta(days=2)
WATCH_STARTED = "notifications-watch-started"  # completed_runs row: when the dead man's switch first looked
NOT_EXPIRING = (CertificateStatus.IGNORED, CertificateStatus.REVOKED, CertificateStatus.EXPIRED)


def _at(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "never"


def server_groups(s: Session, certificate_ids: list[int]) -> dict[int, list[str]]:
    """Certificate id -> the groups of the bots its target servers are mapped to (one query per 500 ids)."""
    found: dict[int, set[str]] = {}
    for start in range(0, len(certificate_ids), 500):
        part = certificate_ids[start : start + 500]
        for cert_id, group in s.execute(
            select(DeploymentTarget.certificate_id, Bot.group_name)
            .join(Server, Server.id == DeploymentTarget.server_id)
            .join(Bot, Bot.id == Server.bot_id)
            .where(DeploymentTarget.certificate_id.in_(part), Bot.group_name.is_not(None))
        ):
            if group is not None:
                found.setdefault(cert_id, set()).add(group)
    return {cert_id: sorted(groups) for cert_id, groups in found.items()}


def renewal_failed(s: Session, now: datetime) -> list[Event]:
    """Orders that failed (after the task's retries gave up): issuance or renewal of a certificate."""
    rows = s.execute(
        select(Order, Certificate)
        .join(Certificate, Certificate.id == Order.certificate_id)
        .where(Order.state == OrderState.FAILED, Order.updated_at >= now - LOOKBACK)
        .order_by(Order.id)
    ).all()
    groups = server_groups(s, [cert.id for _, cert in rows])
    return [
        Event(
            kind="renewal-failed",
            key=f"renewal-failed:order-{order.id}",
            subject=subject("renewal-failed", cert.common_name),
            text=f"The order for {cert.common_name} failed: {order.error or 'no reason recorded'}",
            facts=[
                ("Certificate", cert.common_name),
                ("Certificate id", str(cert.id)),
                ("Order id", str(order.id)),
                ("Reason", order.error or ""),
                ("Expires on", _at(cert.expires_on)),
            ],
            ca_connector_id=order.ca_connector_id,
            tags=list(cert.tags or []),
            server_groups=groups.get(cert.id, []),
        )
        for order, cert in rows
    ]


def deployment_failed(s: Session, now: datetime) -> list[Event]:
    rows = s.execute(
        select(Deployment, Certificate)
        .join(Certificate, Certificate.id == Deployment.certificate_id)
        .where(
            Deployment.status.in_((DeploymentStatus.FAILED, DeploymentStatus.ROLLED_BACK)),
            Deployment.finished_at >= now - LOOKBACK,
        )
        .order_by(Deployment.id)
    ).all()
    events = []
    for dep, cert in rows:
        kind = "deployment-rolled-back" if dep.status is DeploymentStatus.ROLLED_BACK else "deployment-failed"
        where = f"{dep.target.server.host}:{dep.target.port}"
        events.append(
            Event(
                kind=kind,
                key=f"{kind}:deployment-{dep.id}",
                subject=subject(kind, cert.common_name),
                text=f"Deployment of {cert.common_name} (serial {dep.serial_number}) to {where}: {dep.status.value}. "
                f"Reason: {dep.reason or 'none recorded'}",
                facts=[
                    ("Certificate", cert.common_name),
                    ("Target", where),
                    ("Serial", dep.serial_number),
                    ("Reason", dep.reason or ""),
                    ("Finished", _at(dep.finished_at)),
                ],
                ca_connector_id=cert.ca_connector_id,
                tags=list(cert.tags or []),
                server_groups=[g] if (g := _bot_group(dep.target.server.bot)) else [],
            )
        )
    return events


def _bot_group(bot: Bot | None) -> str | None:
    return bot.group_name if bot is not None else None


def expiring(s: Session, now: datetime) -> list[Event]:
    """Once per threshold per certificate serial: a renewal (a new serial) starts the thresholds again; a
    certificate first seen 5 days before expiry gets the 7-day notice only, not 30 and 14 as well."""
    certs = s.scalars(
        select(Certificate)
        .where(
            Certificate.expires_on > now,
            Certificate.expires_on <= now + timedelta(days=max(EXPIRY_THRESHOLDS_DAYS)),
            Certificate.status.not_in(NOT_EXPIRING),
        )
        .order_by(Certificate.expires_on)
    ).all()
    groups = server_groups(s, [cert.id for cert in certs])
    events = []
    for cert in certs:
        assert cert.expires_on is not None
        left = cert.expires_on - now
        days = min(t for t in EXPIRY_THRESHOLDS_DAYS if left <= timedelta(days=t))
        label = f"{days} DAY" if days == 1 else f"{days} DAYS"
        events.append(
            Event(
                kind="certificate-expiring",
                key=f"certificate-expiring:cert-{cert.id}:serial-{cert.serial_number or 'none'}:{days}d",
                subject=subject("certificate-expiring", cert.common_name, label),
                text=f"{cert.common_name} expires on {_at(cert.expires_on)}, within {days} day(s) "
                f"({cert.status.value}).",
                facts=[
                    ("Certificate", cert.common_name),
                    ("Certificate id", str(cert.id)),
                    ("Serial", cert.serial_number or ""),
                    ("Expires on", _at(cert.expires_on)),
                    ("Status", cert.status.value),
                ],
                ca_connector_id=cert.ca_connector_id,
                tags=list(cert.tags or []),
                server_groups=groups.get(cert.id, []),
                urgent=days == 1,  # quiet hours do not hold back the last day
            )
        )
    return events


def served_serial_mismatch(s: Session, now: datetime) -> list[Event]:
    """Discovery found a managed certificate's TLS endpoint serving another certificate. Once per replacement:
    the key holds when the managed one was last seen there, so served again and replaced again is news again."""
    served = aliased(CertificateLocation)
    other = aliased(Certificate)
    rows = s.execute(
        select(CertificateLocation, Certificate, other.serial_number)
        .join(Certificate, Certificate.id == CertificateLocation.certificate_id)
        .outerjoin(
            served,
            (served.locator == CertificateLocation.locator)
            & (served.last_status == LocationStatus.ACTIVE)
            & (served.certificate_id != CertificateLocation.certificate_id),
        )
        .outerjoin(other, other.id == served.certificate_id)
        .where(
            CertificateLocation.kind == "tls",
            CertificateLocation.last_status == LocationStatus.REPLACED,
            CertificateLocation.last_checked_at >= now - LOOKBACK,
            Certificate.ca_connector_id.is_not(None),
            Certificate.status.not_in(NOT_EXPIRING),
        )
        .order_by(CertificateLocation.id)
    ).all()
    groups = server_groups(s, sorted({cert.id for _, cert, _ in rows}))
    events: dict[str, Event] = {}
    for loc, cert, served_serial in rows:
        where = f"{loc.host or loc.scan_ip}:{loc.port or loc.scan_port}"
        key = f"served-serial-mismatch:location-{loc.id}:{loc.last_seen.isoformat()}"
        events.setdefault(
            key,
            Event(
                kind="served-serial-mismatch",
                key=key,
                subject=subject("served-serial-mismatch", cert.common_name),
                text=f"{where} serves serial {served_serial or 'unknown'}, not the managed {cert.common_name} "
                f"(serial {cert.serial_number}); found by discovery at {_at(loc.last_checked_at)}.",
                facts=[
                    ("Certificate", cert.common_name),
                    ("Endpoint", where),
                    ("Managed serial", cert.serial_number or ""),
                    ("Served serial", served_serial or "unknown"),
                    ("Last served", _at(loc.last_seen)),
                ],
                ca_connector_id=cert.ca_connector_id,
                tags=list(cert.tags or []),
                server_groups=groups.get(cert.id, []),
            ),
        )
    return list(events.values())


def bot_inactive(s: Session, now: datetime) -> list[Event]:
    """Once per silence: the key holds the last heartbeat, so a bot that comes back and goes again notifies again."""
    bots = s.scalars(select(Bot).where(Bot.status == BotStatus.INACTIVE).order_by(Bot.id)).all()
    return [
        Event(
            kind="bot-inactive",
            key=f"bot-inactive:bot-{bot.id}:{bot.last_update.isoformat() if bot.last_update else 'never'}",
            subject=subject("bot-inactive", bot.name),
            text=f"Bot {bot.name} sent no heartbeat since {_at(bot.last_update)}; it is Inactive.",
            facts=[("Bot", bot.name), ("Last heartbeat", _at(bot.last_update)), ("IP", bot.ip_address or "")],
            tags=list(bot.tags or []),
            server_groups=[bot.group_name] if bot.group_name else [],
        )
        for bot in bots
    ]


def note_watch_started(now: datetime) -> None:
    """Remember when the dead man's switch first looked (its own transaction, before the scan's)."""
    with session_scope() as s:
        if last_completed(s, WATCH_STARTED) is not None:
            return
    with contextlib.suppress(IntegrityError), session_scope() as s:  # another checker may write it first
        s.add(CompletedRun(flow_name=WATCH_STARTED, completed_at=now))


def renewal_schedule_stale(s: Session, now: datetime) -> list[Event]:
    """The dead man's switch: renew-expiring has not run to its end for CERTFLEET_RENEWAL_STALE_MINUTES (counted
    from its last completion, or from when this check first looked if it never completed). Once per silence."""
    max_age = timedelta(minutes=get_settings().renewal_stale_minutes)
    last = last_completed(s, RENEW_EXPIRING)
    since = last or last_completed(s, WATCH_STARTED) or now
    if now - since <= max_age:
        return []
    return [
        Event(
            kind="renewal-schedule-stale",
            key=f"renewal-schedule-stale:last-{last.isoformat() if last else 'never'}",
            subject=subject("renewal-schedule-stale", RENEW_EXPIRING),
            text=f"{RENEW_EXPIRING} last ran to its end {_at(last)}; it runs hourly, so renewals have stopped. "
            "Check the Prefect server and the central worker (`certfleet up`).",
            facts=[("Last completed run", _at(last)), ("Allowed age", f"{max_age.total_seconds() / 60:g} minutes")],
        )
    ]


def discovery_schedule_stale(s: Session, now: datetime) -> list[Event]:
    """No discovery run has completed for CERTFLEET_DISCOVERY_STALE_HOURS (discover-fleet runs daily); nothing
    before the first completed run (a fleet without discovery is not an outage). Once per silence."""
    max_age = timedelta(hours=get_settings().discovery_stale_hours)
    last = s.scalar(select(func.max(DiscoveryRun.finished_at)).where(DiscoveryRun.status == "Completed"))
    if last is None:
        return []
    last = last if last.tzinfo else last.replace(tzinfo=UTC)  # max() bypasses the column type on SQLite
    if now - last <= max_age:
        return []
    return [
        Event(
            kind="discovery-schedule-stale",
            key=f"discovery-schedule-stale:last-{last.isoformat()}",
            subject=subject("discovery-schedule-stale", "discover-fleet"),
            text=f"No discovery run has completed since {_at(last)}: served certificates are not being checked. "
            "Check the Prefect server and the bots' workers.",
            facts=[
                ("Last completed discovery", _at(last)),
                ("Allowed age", f"{max_age.total_seconds() / 3600:g} hours"),
            ],
        )
    ]


CA_TEST_EVERY = timedelta(hours=1)


def _ca_state(kind: str, connector_id: int) -> str:
    # completed_runs rows (name -> time) keep when each connector was last tested and last passed.
    return f"ca-connector-{kind}:{connector_id}"


def ca_connector_failing(now: datetime) -> list[Event]:
    """Test each Active remote CA connector's connection (authenticate, order nothing), at most once an hour;
    a failing one is an event once per failure streak (the key holds when it last passed). Runs before the
    scan's transaction: the CA calls hold no database lock."""
    with session_scope() as s:
        rows = s.execute(
            select(CAConnector.id, CAConnector.name, CAConnector.kind)
            .where(CAConnector.status == ConnectorStatus.ACTIVE, CAConnector.kind.in_(REMOTE_KINDS))
            .order_by(CAConnector.id)
        ).all()
        tested = {cid: last_completed(s, _ca_state("tested", cid)) for cid, _, _ in rows}
    events = []
    for cid, name, kind in rows:
        last = tested[cid]
        if last is not None and now - last < CA_TEST_EVERY:
            continue
        with session_scope() as s:
            result = check_connection(s, cid)
        record_completed(_ca_state("tested", cid), now)  # an upsert another checker may race: portable
        if result.ok:
            record_completed(_ca_state("ok", cid), now)
            continue
        with session_scope() as s:
            last_ok = last_completed(s, _ca_state("ok", cid))
        events.append(
            Event(
                kind="ca-connector-failing",
                key=f"ca-connector-failing:connector-{cid}:last-ok-{last_ok.isoformat() if last_ok else 'never'}",
                subject=subject("ca-connector-failing", name),
                text=f"The {kind} connector {name} failed its connection test: {result.message}",
                facts=[
                    ("CA connector", name),
                    ("Kind", kind),
                    ("Reason", result.message),
                    ("Last passed", _at(last_ok)),
                ],
                ca_connector_id=cid,
            )
        )
    return events


# (the kind a rule must want, the producer); deployment_failed makes both deployment kinds.
PRODUCERS: tuple[tuple[str, Callable[[Session, datetime], list[Event]]], ...] = (
    ("renewal-failed", renewal_failed),
    ("deployment-failed", deployment_failed),
    ("deployment-rolled-back", deployment_failed),
    ("certificate-expiring", expiring),
    ("served-serial-mismatch", served_serial_mismatch),
    ("bot-inactive", bot_inactive),
    ("renewal-schedule-stale", renewal_schedule_stale),
    ("discovery-schedule-stale", discovery_schedule_stale),
)


def collect(now: datetime | None = None) -> dict[str, int]:
    """Scan for events and write their outbox rows; returns how many events were seen and rows were new."""
    now = now or utcnow()
    note_watch_started(now)
    with session_scope() as s:
        wanted = Routing.load(s).wants
    # A producer whose kind no rule wants is not run: no scan of 100,000 certificates, no CA called, for nobody.
    tested = ca_connector_failing(now) if wanted("ca-connector-failing") else []
    with session_scope() as s:
        events = {e.key: e for e in tested}
        for kind, produce in PRODUCERS:
            if wanted(kind):
                events.update((e.key, e) for e in produce(s, now))
        new = enqueue_all(s, list(events.values()), now)
    seen = len(events)
    return {"events": seen, "queued": new}


def run_check(now: datetime | None = None) -> dict[str, int]:
    """One check: collect events, then send what is due. Any number may run at once."""
    now = now or utcnow()
    return {**collect(now), **deliver_due(now)}
