"""Bots that stop checking in become Inactive; a heartbeat brings them back; the check-bots flow does it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from certfleet.bots import service as bot_service
from certfleet.bots.auth import BotTokenRefused
from certfleet.bots.checkin import check_in
from certfleet.bots.liveness import mark_silent_bots
from certfleet.flows.bots import check_bots
from certfleet.models.bootstrap import Bootstrapped, initialize
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, Bot, BotPurpose, BotStatus, Server, ServerConnection, utcnow

SILENCE = timedelta(minutes=15)


@pytest.fixture
def boot(database: str) -> Bootstrapped:
    return initialize()


def add_bot(name: str, status: BotStatus, minutes_ago: float | None) -> int:
    with session_scope() as s:
        bot = Bot(
            name=name,
            ip_address="10.0.0.5",
            purpose=BotPurpose.PROVISIONING,
            work_queue=name,
            status=status,
            last_update=None if minutes_ago is None else utcnow() - timedelta(minutes=minutes_ago),
            created_by="test",
        )
        s.add(bot)
        s.flush()
        return bot.id


def statuses() -> dict[str, BotStatus]:
    with session_scope() as s:
        return {bot.name: bot.status for bot in s.scalars(select(Bot))}


def test_only_active_bots_silent_too_long_become_inactive(boot: Bootstrapped) -> None:
    add_bot("silent", BotStatus.ACTIVE, 16)
    add_bot("recent", BotStatus.ACTIVE, 14)
    add_bot("stopped-long-ago", BotStatus.STOPPED, 600)
    add_bot("never-checked-in", BotStatus.PENDING, None)
    with session_scope() as s:  # the local bot runs inside certfleet: however old its update, it is not silent
        local = s.get(Bot, boot.local_bot_id)
        assert local is not None
        local.last_update = utcnow() - timedelta(days=3)
    with session_scope() as s:
        assert mark_silent_bots(s, now=utcnow(), silence=SILENCE) == ["silent"]
    assert statuses() == {
        "local-bot": BotStatus.ACTIVE,
        "silent": BotStatus.INACTIVE,
        "recent": BotStatus.ACTIVE,
        "stopped-long-ago": BotStatus.STOPPED,
        "never-checked-in": BotStatus.PENDING,
    }
    with session_scope() as s:
        (entry,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "bot-inactive")).all()
        assert entry.detail is not None
        assert entry.detail.startswith("no heartbeat since ")
        assert entry.detail.endswith("(more than 15 minutes)")
        assert mark_silent_bots(s, now=utcnow(), silence=SILENCE) == []  # nothing more to do the second time


def test_a_heartbeat_makes_an_inactive_bot_active_again(boot: Bootstrapped) -> None:
    bot_id = add_bot("comes-back", BotStatus.ACTIVE, 60)
    with session_scope() as s:
        token = bot_service.new_token(s, bot_id, "test").token
        s.add(Server(description="web", host="10.0.0.9", connection=ServerConnection.SSH, server_type="nginx",
                     bot_id=bot_id))  # fmt: skip
        mark_silent_bots(s, now=utcnow(), silence=SILENCE)
    assert statuses()["comes-back"] is BotStatus.INACTIVE
    with session_scope() as s:
        check_in(s, token, version="2.0", ip_address=None, os=None)
    assert statuses()["comes-back"] is BotStatus.ACTIVE


def test_statuses_follow_what_a_bot_has_to_do(boot: Bootstrapped) -> None:
    with session_scope() as s:
        made = bot_service.create_bot(s, bot_service.BotFields(name="new-bot"), "test")
        bot_id, token = made.bot.id, made.token
    assert statuses()["new-bot"] is BotStatus.PENDING_ACTIVATION  # created, never connected
    with session_scope() as s:
        check_in(s, token, version="2.0", ip_address="10.1.1.1", os="Debian GNU/Linux 12")
    assert statuses()["new-bot"] is BotStatus.PENDING  # connected, no server and no Discovery purpose
    with session_scope() as s:
        s.add(Server(description="web", host="10.0.0.9", connection=ServerConnection.SSH, server_type="nginx",
                     bot_id=bot_id))  # fmt: skip
    with session_scope() as s:
        bot = check_in(s, token, version="2.0", ip_address=None, os=None)
        assert (bot.status, bot.version, bot.ip_address, bot.os) == (
            BotStatus.ACTIVE, "2.0", "10.1.1.1", "Debian GNU/Linux 12"
        )  # fmt: skip
        actions = [e.detail for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "bot-check-in"))]
    assert actions == ["Pending Activation -> Pending (first check-in)", "Pending -> Active"]
    with session_scope() as s:
        bot_service.revoke_token(s, bot_id, "test")
    with session_scope() as s, pytest.raises(BotTokenRefused, match="unknown or was revoked"):
        check_in(s, token, version=None, ip_address=None, os=None)


def test_a_connected_bot_with_nothing_to_do_that_falls_silent_is_inactive(boot: Bootstrapped) -> None:
    add_bot("idle", BotStatus.PENDING, 60)
    add_bot("never-seen", BotStatus.PENDING, None)
    with session_scope() as s:
        assert mark_silent_bots(s, now=utcnow(), silence=SILENCE) == ["idle"]


@pytest.mark.usefixtures("prefect_harness")
def test_the_check_bots_flow_uses_the_configured_silence(boot: Bootstrapped, monkeypatch: pytest.MonkeyPatch) -> None:
    from certfleet.settings import get_settings

    add_bot("five-minutes-quiet", BotStatus.ACTIVE, 5)
    assert check_bots() == []  # the default: 15 minutes
    monkeypatch.setenv("CERTFLEET_BOT_SILENCE_MINUTES", "3")
    get_settings.cache_clear()
    assert check_bots() == ["five-minutes-quiet"]
    assert statuses()["five-minutes-quiet"] is BotStatus.INACTIVE
