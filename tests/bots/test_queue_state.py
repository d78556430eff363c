"""A Stopped bot's queue stays paused whatever order check-ins and Stop/Start come in (issue 15 item 7).

A bot agent used to apply the paused flag of its last check-in answer itself: an answer read just before an
operator's Stop resumed the queue about a second after Stop had paused it, and a run slipped through. Now certfleet
writes the queue, with the bot's row locked, from the status it reads under that lock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from certfleet.bots import queue_state
from certfleet.bots import service as bot_service
from certfleet.bots.agent import Agent, AgentOptions
from certfleet.bots.testbed import PrefectServer, basic
from certfleet.dashboard.server import DashboardThread
from certfleet.demo.listener import free_port
from certfleet.deployments.names import BOT_POOL, bot_queue
from certfleet.models.bootstrap import initialize
from certfleet.models.db import get_engine, session_scope
from certfleet.models.orm import Bot, BotStatus
from certfleet.models.repo import get


@dataclass
class Setup:
    prefect: PrefectServer
    bot_id: int
    agent: Agent

    def paused(self) -> bool:
        url = f"{self.prefect.api_url}/work_pools/{BOT_POOL}/queues/{bot_queue(self.bot_id)}"
        answer = httpx.get(url, headers=basic(self.prefect.auth), trust_env=False)
        answer.raise_for_status()
        return bool(answer.json()["is_paused"])

    def set_running(self, running: bool) -> None:
        with session_scope() as s:
            bot_service.set_running(s, self.bot_id, running, "test")


@pytest.fixture
def setup(database: str, postgres_admin_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    initialize()
    prefect = PrefectServer(postgres_admin_url, tmp_path / "prefect")
    prefect.start()
    monkeypatch.setenv("PREFECT_API_URL", prefect.api_url)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", prefect.auth)
    dashboard = DashboardThread("127.0.0.1", free_port())
    try:
        dashboard.start()
        with session_scope() as s:
            made = bot_service.create_bot(s, bot_service.BotFields(name="bot-east"), "test")
            bot_id, token = made.bot.id, made.token
        url = f"http://127.0.0.1:{dashboard.server.config.port}"
        said: list[str] = []
        yield Setup(prefect, bot_id, Agent(AgentOptions(url, token, tmp_path / "agent"), say=said.append))
    finally:
        dashboard.stop()
        prefect.stop()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
def test_a_check_in_answered_before_stop_does_not_resume_the_queue(setup: Setup) -> None:
    setup.agent.keep_queue_state(setup.agent.check_in())
    assert not setup.paused()
    stale = setup.agent.check_in()  # read while the bot still runs
    assert stale["paused"] is False
    setup.set_running(False)  # the operator's Stop
    assert setup.paused()
    setup.agent.keep_queue_state(stale)  # what the agent does right after that check-in
    assert setup.paused()
    answer = setup.agent.check_in()
    setup.agent.keep_queue_state(answer)
    assert answer["paused"] is True
    assert setup.paused()

    # And the other way round: an answer read before Start does not pause the queue again.
    setup.set_running(True)
    assert not setup.paused()
    setup.agent.keep_queue_state(answer)
    assert not setup.paused()


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_stop_during_a_check_in_waits_for_it_and_wins(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check-in has read the bot (running) and is writing the queue when the operator clicks Stop: Stop waits
    for the bot's row, then pauses. Seen from PostgreSQL: Stop's session waits on the row lock."""
    setup.agent.check_in()
    inside, go = threading.Event(), threading.Event()
    real = queue_state.set_paused
    calls: list[bool] = []

    def held_first_time(*args: object, **kwargs: object) -> bool:
        calls.append(bool(args[3]))
        if len(calls) == 1:  # the check-in's write: held until the test has seen Stop wait
            inside.set()
            assert go.wait(60)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(queue_state, "set_paused", held_first_time)
    check_in = _thread(setup.agent.check_in)
    assert inside.wait(60)
    stop = _thread(lambda: setup.set_running(False))
    _wait_until_a_session_waits_for_a_lock(stop)
    go.set()
    check_in.join(60)
    stop.join(60)
    assert calls == [False, True]  # the check-in wrote "running" first, then Stop wrote "paused"
    assert setup.paused()
    with session_scope() as s:
        assert get(s, Bot, setup.bot_id).status is BotStatus.STOPPED


def _thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _wait_until_a_session_waits_for_a_lock(stop: threading.Thread) -> None:
    query = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE 'UPDATE bots%'")
    for _ in range(6000):
        with get_engine().connect() as conn:
            if conn.scalar(query):
                return
        assert stop.is_alive(), "Stop finished while the check-in was still writing the queue"
        threading.Event().wait(0.01)
    raise AssertionError("Stop never waited for the bot's row")
