"""The event producers under a controlled clock: expiry thresholds (once each per serial, reset by renewal),
failed renewals and deployments, inactive bots, and the dead man's switch for renew-expiring, which fires
from the dashboard process's timer with no Prefect worker running; and two checks racing send once."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from certfleet.ca_admin import service as ca_service
from certfleet.ca_admin.forms import AdvancedOptions, DigiCertForm
from certfleet.dashboard.server import DashboardThread
from certfleet.demo.listener import free_port
from certfleet.fields import InputError
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Bot,
    BotStatus,
    CAConnector,
    Certificate,
    CertificateLocation,
    CertificateStatus,
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    DiscoveryRun,
    LocationStatus,
    Notification,
    NotificationState,
    Order,
    OrderState,
    Server,
    ServerConnection,
    utcnow,
)
from certfleet.notifications.checks import LOOKBACK, run_check
from certfleet.notifications.outbox import EVENT_KINDS, quiet_until
from certfleet.notifications.timer import NotificationTimer
from certfleet.renewal.runs import record_completed
from certfleet.settings import get_settings
from tests.emulators.digicert import DigiCertEmulator
from tests.emulators.pki import TlsIdentity
from tests.notifications.helpers import add_channel, add_rule, email_body
from tests.notifications.receivers import SmtpServer, WebhookServer

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _hook(webhook_server: WebhookServer, name: str = "hook") -> int:
    return add_channel({"name": name, "kind": "webhook", "url": webhook_server.url(f"/{name}"), "signing_key": "k"})


def _subjects(webhook_server: WebhookServer) -> list[str]:
    return [hit.json()["subject"] for hit in webhook_server.hits]


def _certificate(expires_on: datetime, serial: str = "01", **extra: object) -> int:
    with session_scope() as s:
        cert = Certificate(
            common_name="www.example.com",
            status=CertificateStatus.DEPLOYED,
            serial_number=serial,
            expires_on=expires_on,
            tags=["env=prod"],
            **extra,
        )
        s.add(cert)
        s.flush()
        return cert.id


def test_expiry_notices_once_per_threshold_and_again_after_renewal(
    database: str, webhook_server: WebhookServer
) -> None:
    add_rule("certificate-expiring", [_hook(webhook_server)])
    cert_id = _certificate(T0 + timedelta(days=40))
    run_check(T0)
    assert _subjects(webhook_server) == []
    for day in (11, 11, 12, 25):  # 29 days left ... 15 days left: the 30-day notice, once
        run_check(T0 + timedelta(days=day))
    assert _subjects(webhook_server) == ["[certfleet] EXPIRES IN 30 DAYS www.example.com"]
    for day in (27, 33, 34, 39.5, 39.9):
        run_check(T0 + timedelta(days=day))
    assert _subjects(webhook_server)[1:] == [
        "[certfleet] EXPIRES IN 14 DAYS www.example.com",
        "[certfleet] EXPIRES IN 7 DAYS www.example.com",
        "[certfleet] EXPIRES IN 1 DAY www.example.com",
    ]
    with session_scope() as s:  # renewed: a new serial, 90 days more
        cert = s.get_one(Certificate, cert_id)
        cert.serial_number, cert.expires_on = "02", T0 + timedelta(days=130)
    run_check(T0 + timedelta(days=40))
    assert len(webhook_server.hits) == 4
    run_check(T0 + timedelta(days=101))
    assert _subjects(webhook_server)[4:] == ["[certfleet] EXPIRES IN 30 DAYS www.example.com"]
    keys = [hit.json()["key"] for hit in webhook_server.hits]
    assert keys[0].endswith(":serial-01:30d")
    assert keys[4].endswith(":serial-02:30d")


def test_a_certificate_first_seen_late_gets_only_the_nearest_threshold(
    database: str, webhook_server: WebhookServer
) -> None:
    add_rule("certificate-expiring", [_hook(webhook_server)])
    _certificate(T0 + timedelta(days=5))
    _certificate(T0 + timedelta(days=5), serial="09", status_reason=None)
    with session_scope() as s:
        s.add(Certificate(common_name="ignored.example.com", status=CertificateStatus.IGNORED, expires_on=T0))
    run_check(T0)
    assert _subjects(webhook_server) == ["[certfleet] EXPIRES IN 7 DAYS www.example.com"] * 2


def _fleet(now: datetime) -> dict[str, int]:
    """A CA connector, a failed order, a failed and a rolled back deployment, an inactive bot."""
    with session_scope() as s:
        ca = CAConnector(kind="local", name="internal CA")
        bot = Bot(
            name="dc-east",
            status=BotStatus.INACTIVE,
            last_update=now - timedelta(hours=1),
            work_queue="bot-9",
            tags=["env=prod"],
        )
        s.add_all([ca, bot])
        s.flush()
        cert = Certificate(
            common_name="shop.example.com",
            status=CertificateStatus.ROLLED_BACK,
            serial_number="0A",
            expires_on=now + timedelta(days=200),
            ca_connector_id=ca.id,
            tags=["env=prod"],
        )
        server = Server(
            description="web 1", host="web1.example.com", connection=ServerConnection.SSH, server_type="nginx"
        )
        s.add_all([cert, server])
        s.flush()
        target = DeploymentTarget(certificate_id=cert.id, server_id=server.id, port=443)
        s.add(target)
        s.flush()
        s.add_all(
            [
                Order(
                    certificate_id=cert.id,
                    ca_connector_id=ca.id,
                    idempotency_key="k1",
                    csr_pem="-",
                    state=OrderState.FAILED,
                    error="CA answered 503 three times",
                    updated_at=now - timedelta(minutes=5),
                ),
                Deployment(
                    certificate_id=cert.id,
                    target_id=target.id,
                    status=DeploymentStatus.FAILED,
                    serial_number="0A",
                    reason="nginx -t: unknown directive",
                    finished_at=now - timedelta(minutes=3),
                ),
                Deployment(
                    certificate_id=cert.id,
                    target_id=target.id,
                    status=DeploymentStatus.ROLLED_BACK,
                    serial_number="0A",
                    reason="served serial 09, expected 0A",
                    finished_at=now - timedelta(minutes=2),
                ),
            ]
        )
        s.add(
            DiscoveryRun(
                kind="tls", status="Completed", started_at=now - timedelta(days=3), finished_at=now - timedelta(days=3)
            )
        )
        # Discovery: the endpoint of the managed certificate now serves another one (serial 09).
        stray = Certificate(common_name="shop.example.com", status=CertificateStatus.DISCOVERED, serial_number="09")
        s.add(stray)
        s.flush()
        locator = "tls:10.0.0.5:443:shop.example.com"
        s.add_all(
            [
                CertificateLocation(
                    certificate_id=cert.id,
                    kind="tls",
                    locator=locator,
                    host="shop.example.com",
                    port=443,
                    last_seen=now - timedelta(hours=1),
                    last_checked_at=now - timedelta(minutes=1),
                    last_status=LocationStatus.REPLACED,
                ),
                CertificateLocation(
                    certificate_id=stray.id,
                    kind="tls",
                    locator=locator,
                    host="shop.example.com",
                    port=443,
                    last_seen=now - timedelta(minutes=1),
                    last_checked_at=now - timedelta(minutes=1),
                    last_status=LocationStatus.ACTIVE,
                ),
            ]
        )
        return {"ca": ca.id, "cert": cert.id}


def test_failures_and_inactive_bots_carry_their_reason(database: str, webhook_server: WebhookServer) -> None:
    hook = _hook(webhook_server)
    ids = _fleet(T0)
    add_rule("renewal-failed", [hook], ca_connector_id=ids["ca"])
    add_rule("deployment-failed", [hook], tag="env=prod")
    add_rule("deployment-rolled-back", [hook])
    add_rule("bot-inactive", [hook])
    add_rule("served-serial-mismatch", [hook])
    run_check(T0)
    run_check(T0 + timedelta(minutes=5))
    bodies = {hit.json()["subject"]: hit.json() for hit in webhook_server.hits}
    assert len(webhook_server.hits) == 5
    mismatch = bodies["[certfleet] SERVED SERIAL DIFFERS shop.example.com"]["facts"]
    assert (mismatch["Managed serial"], mismatch["Served serial"]) == ("0A", "09")
    assert mismatch["Endpoint"] == "shop.example.com:443"
    assert bodies["[certfleet] RENEWAL FAILED shop.example.com"]["facts"]["Reason"] == "CA answered 503 three times"
    assert bodies["[certfleet] DEPLOYMENT FAILED shop.example.com"]["facts"]["Reason"] == "nginx -t: unknown directive"
    rolled = bodies["[certfleet] DEPLOYMENT ROLLED BACK shop.example.com"]
    assert rolled["facts"]["Target"] == "web1.example.com:443"
    assert "served serial 09, expected 0A" in rolled["text"]
    assert "[certfleet] BOT INACTIVE dc-east" in bodies
    with session_scope() as s:  # the bot comes back, then goes silent again: a new notice
        bot = s.scalars(select(Bot)).one()
        bot.last_update = T0 + timedelta(hours=2)
    run_check(T0 + timedelta(hours=3))
    assert _subjects(webhook_server).count("[certfleet] BOT INACTIVE dc-east") == 2


def test_a_rule_for_another_ca_connector_does_not_match(database: str, webhook_server: WebhookServer) -> None:
    hook = _hook(webhook_server)
    _fleet(T0)
    with session_scope() as s:
        other = CAConnector(kind="local", name="other CA")
        s.add(other)
        s.flush()
        other_id = other.id
    add_rule("renewal-failed", [hook], ca_connector_id=other_id)
    run_check(T0)
    assert webhook_server.hits == []


def test_the_dead_mans_switch_fires_once_per_silence(database: str, smtp_server: SmtpServer) -> None:
    add_rule("renewal-schedule-stale", [add_channel(email_body(smtp_server))])
    record_completed(at=T0)
    stale = timedelta(minutes=get_settings().renewal_stale_minutes)
    run_check(T0 + timedelta(hours=1))
    run_check(T0 + stale)
    assert smtp_server.handler.messages == []
    run_check(T0 + stale + timedelta(minutes=1))
    run_check(T0 + stale + timedelta(hours=5))
    [(_, mail)] = smtp_server.handler.messages
    assert mail["Subject"] == "[certfleet] RENEWAL SCHEDULE DID NOT RUN renew-expiring"
    plain = mail.get_body(preferencelist=("plain",))
    assert plain is not None
    assert "last ran to its end 2030-01-01 12:00 UTC" in plain.get_content()
    record_completed(at=T0 + timedelta(hours=9))  # the schedule runs again, then stops again
    run_check(T0 + timedelta(hours=10))
    assert len(smtp_server.handler.messages) == 1
    run_check(T0 + timedelta(hours=9) + stale + timedelta(minutes=1))
    assert len(smtp_server.handler.messages) == 2


def test_a_schedule_that_never_completed_counts_from_the_first_check(
    database: str, webhook_server: WebhookServer
) -> None:
    add_rule("renewal-schedule-stale", [_hook(webhook_server)])
    run_check(T0)  # first look: nothing known yet
    run_check(T0 + timedelta(hours=1))
    assert webhook_server.hits == []
    run_check(T0 + timedelta(hours=4))
    assert _subjects(webhook_server) == ["[certfleet] RENEWAL SCHEDULE DID NOT RUN renew-expiring"]
    assert webhook_server.hits[0].json()["facts"]["Last completed run"] == "never"


def test_the_dashboard_process_raises_the_alert_with_no_prefect_worker(
    database: str, webhook_server: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Prefect server or worker runs in this test: only the dashboard, as `certfleet up` starts it."""
    add_rule("renewal-schedule-stale", [_hook(webhook_server)])
    record_completed(at=utcnow() - timedelta(hours=4))  # the worker stopped four hours ago
    monkeypatch.setenv("CERTFLEET_NOTIFY_CHECK_SECONDS", "0.05")
    get_settings.cache_clear()
    dashboard = DashboardThread("127.0.0.1", free_port())
    dashboard.start()
    try:
        deadline = time.monotonic() + 60
        while not webhook_server.hits and time.monotonic() < deadline:
            time.sleep(0.05)
        while dashboard.notifications.checks < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # later ticks see the same event: still one message
    finally:
        dashboard.stop()
    assert dashboard.notifications.checks >= 3
    assert _subjects(webhook_server) == ["[certfleet] RENEWAL SCHEDULE DID NOT RUN renew-expiring"]


def test_failures_first_seen_after_the_lookback_are_history(database: str, webhook_server: WebhookServer) -> None:
    hook = _hook(webhook_server)
    for kind in ("renewal-failed", "deployment-failed", "deployment-rolled-back", "served-serial-mismatch"):
        add_rule(kind, [hook])
    _fleet(T0)
    run_check(T0 + LOOKBACK + timedelta(minutes=10))
    assert webhook_server.hits == []


@pytest.mark.parametrize("racers", [2])
def test_each_event_kind_once_per_channel_when_two_checks_race(
    database: str,
    webhook_server: WebhookServer,
    smtp_server: SmtpServer,
    racers: int,
    digicert_emulator: DigiCertEmulator,
    emulator_tls: TlsIdentity,
) -> None:
    _digicert(digicert_emulator, emulator_tls)
    digicert_emulator.api_key = "rotated-at-digicert"
    hook = _hook(webhook_server)
    mail = add_channel(email_body(smtp_server))
    for kind in EVENT_KINDS:
        add_rule(kind, [hook, mail])
    _fleet(T0)
    _certificate(T0 + timedelta(days=6))
    record_completed(at=T0 - timedelta(days=1))
    barrier = threading.Barrier(racers)
    errors: list[BaseException] = []

    def check() -> None:
        try:
            barrier.wait()
            run_check(T0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    kinds = sorted(hit.json()["event"] for hit in webhook_server.hits)
    assert kinds == sorted(EVENT_KINDS)
    assert sorted(m["Subject"] for _, m in smtp_server.handler.messages) == sorted(_subjects(webhook_server))
    with session_scope() as s:
        states = set(s.scalars(select(Notification.state)))
    assert states == {NotificationState.SENT}


def test_a_zero_interval_starts_no_timer() -> None:
    timer = NotificationTimer(0).start()
    assert not timer.thread.is_alive()
    timer.stop()


def test_quiet_hours_hold_notices_back_except_expiry_within_a_day(database: str, webhook_server: WebhookServer) -> None:
    quiet = add_channel(
        {
            "name": "pager",
            "kind": "webhook",
            "url": webhook_server.url("/pager"),
            "signing_key": "k",
            "quiet_hours": "22:00-07:00",
        }
    )
    add_rule("certificate-expiring", [quiet])
    night = datetime(2030, 1, 1, 23, 0, tzinfo=UTC)
    _certificate(night + timedelta(days=10))  # the 14-day notice: may wait
    run_check(night)
    assert webhook_server.hits == []
    with session_scope() as s:
        waiting = s.scalars(select(Notification)).one()
        assert waiting.next_attempt_at == datetime(2030, 1, 2, 7, 0, tzinfo=UTC)
    _certificate(night + timedelta(hours=20), serial="77")  # within 1 day: goes out at once
    run_check(night + timedelta(hours=1))
    assert _subjects(webhook_server) == ["[certfleet] EXPIRES IN 1 DAY www.example.com"]
    run_check(datetime(2030, 1, 2, 7, 0, tzinfo=UTC))
    assert _subjects(webhook_server)[1:] == ["[certfleet] EXPIRES IN 14 DAYS www.example.com"]


@pytest.mark.parametrize(
    ("spec", "at", "until"),
    [
        ("22:00-07:00", "21:59", None),
        ("22:00-07:00", "22:00", "2030-01-02 07:00"),
        ("22:00-07:00", "06:59", "2030-01-01 07:00"),
        ("22:00-07:00", "07:00", None),
        ("12:00-13:30", "12:45", "2030-01-01 13:30"),
        ("12:00-13:30", "13:30", None),
    ],
)
def test_quiet_until(spec: str, at: str, until: str | None) -> None:
    now = datetime.strptime(f"2030-01-01 {at}", "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    expected = datetime.strptime(until, "%Y-%m-%d %H:%M").replace(tzinfo=UTC) if until else None
    assert quiet_until(spec, now) == expected


def _digicert(emulator: DigiCertEmulator, tls: TlsIdentity) -> int:
    form = DigiCertForm(
        name="DigiCert prod",
        api_base_url=emulator.base_url,
        api_key=SecretStr(emulator.api_key),
        organization_id=emulator.organization_id,
        advanced=AdvancedOptions(tls_ca_bundle=tls.ca_pem, timeout_s=5),
    )
    with session_scope() as s:
        return ca_service.create_connector(s, form, actor="admin")


def test_a_failing_ca_connector_is_news_once_per_failure_streak(
    database: str, webhook_server: WebhookServer, digicert_emulator: DigiCertEmulator, emulator_tls: TlsIdentity
) -> None:
    connector = _digicert(digicert_emulator, emulator_tls)
    add_rule("ca-connector-failing", [_hook(webhook_server)], ca_connector_id=connector)
    good_key = digicert_emulator.api_key
    run_check(T0)  # passes
    digicert_emulator.api_key = "rotated-at-digicert"  # the stored key no longer works
    run_check(T0 + timedelta(minutes=30))  # tested within the hour: not again
    assert webhook_server.hits == []
    run_check(T0 + timedelta(hours=1))
    run_check(T0 + timedelta(hours=2))  # still failing: the same streak
    [hit] = webhook_server.hits
    assert hit.json()["subject"] == "[certfleet] CA CONNECTOR FAILING DigiCert prod"
    assert "not valid" in hit.json()["facts"]["Reason"]
    assert hit.json()["facts"]["Last passed"] == "2030-01-01 12:00 UTC"
    digicert_emulator.api_key = good_key
    run_check(T0 + timedelta(hours=3))  # passes again
    digicert_emulator.api_key = "rotated-again"
    run_check(T0 + timedelta(hours=4))
    assert _subjects(webhook_server) == ["[certfleet] CA CONNECTOR FAILING DigiCert prod"] * 2


def test_discovery_that_stopped_is_news_once_and_none_before_the_first(
    database: str, webhook_server: WebhookServer
) -> None:
    add_rule("discovery-schedule-stale", [_hook(webhook_server)])
    run_check(T0 + timedelta(days=30))  # never ran: no fleet discovery set up, no alert
    with session_scope() as s:
        s.add(DiscoveryRun(kind="tls", status="Failed", started_at=T0, finished_at=T0 + timedelta(hours=1)))
        s.add(DiscoveryRun(kind="tls", status="Completed", started_at=T0, finished_at=T0))
    stale = timedelta(hours=get_settings().discovery_stale_hours)
    run_check(T0 + stale)
    assert webhook_server.hits == []
    run_check(T0 + stale + timedelta(minutes=1))
    run_check(T0 + stale + timedelta(hours=6))
    assert _subjects(webhook_server) == ["[certfleet] DISCOVERY DID NOT RUN discover-fleet"]
    assert webhook_server.hits[0].json()["facts"]["Last completed discovery"] == "2030-01-01 12:00 UTC"


def test_rules_filter_by_server_group(database: str, webhook_server: WebhookServer) -> None:
    """A rule's server group is a bot's Group: events about the servers mapped to its bots, or about its bots."""
    hook = _hook(webhook_server)
    _fleet(T0)
    with session_scope() as s:
        bot = s.scalars(select(Bot)).one()
        bot.group_name = "Datacenter East"
        for server in s.scalars(select(Server)):
            server.bot_id = bot.id
    for kind in ("renewal-failed", "deployment-failed", "bot-inactive"):
        add_rule(kind, [hook], server_group="Datacenter East")
    add_rule("deployment-rolled-back", [hook], server_group="Datacenter West")
    run_check(T0)
    assert sorted(_subjects(webhook_server)) == [
        "[certfleet] BOT INACTIVE dc-east",
        "[certfleet] DEPLOYMENT FAILED shop.example.com",
        "[certfleet] RENEWAL FAILED shop.example.com",
    ]
    with pytest.raises(InputError, match="server_group"):
        add_rule("renewal-failed", [hook], server_group=" Datacenter East")  # stored as written or refused
