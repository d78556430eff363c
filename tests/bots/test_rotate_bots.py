"""rotate-batch through the bots' queues, with real bot agents (the testbed of tests/bots/conftest.py): each bot's
certificates are issued centrally and deployed by that bot (a rotate-on-bot run on its queue, taken by its own
worker); a stop rolls back on the bots; an unreachable or Inactive bot's certificates are reported not started and
the failure budget decides; re-runs continue without issuing twice.

A bot's servers outside their maintenance window get their deployments scheduled on its queue for the window.

Two bots with two listeners each (four certificates): every rotate-on-bot run is a new process on a bot's worker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun
from sqlalchemy import func, select

from certfleet.bots.liveness import mark_silent_bots
from certfleet.deployments.names import bot_queue
from certfleet.flows.rotation import RotationStopped, rotate_batch
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import Bot, BotStatus, Certificate, Deployment, Order, RotationItem, utcnow
from tests.bots.conftest import Fleet

pytestmark = pytest.mark.parametrize("database", ["postgresql"], indirect=True)


@pytest.fixture
def fleet_certs() -> int:
    return 4


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _bot_status(bot_id: int) -> BotStatus:
    with session_scope() as s:
        return repo.get(s, Bot, bot_id).status


def _items(key: str) -> dict[int, tuple[str, str | None]]:
    with session_scope() as s:
        rows = s.scalars(select(RotationItem).where(RotationItem.batch_key == key))
        return {r.certificate_id: (r.state, r.reason) for r in rows}


def _orders() -> dict[int, int]:
    with session_scope() as s:
        rows = s.execute(select(Order.certificate_id, func.count()).group_by(Order.certificate_id)).all()
        return {cid: n for cid, n in rows}


def _bot_runs(key: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"rotate-{key}-")))
    return [r for r in runs if r.name.startswith(f"rotate-{key}-")]


def _serials(fleet: Fleet) -> dict[int, str]:
    return {cid: fleet.served(cid) for cid in sorted(fleet.hosts)}


def _set_window(cert_ids: list[int], cron: str | None) -> None:
    with session_scope() as s:
        for cid in cert_ids:
            server = repo.get(s, Certificate, cid).targets[0].server
            server.maintenance_cron, server.maintenance_duration_minutes = cron, 60 if cron else None


def _mine(fleet: Fleet, bot: str) -> list[int]:
    return sorted(c for c, b in fleet.bot_of.items() if b == bot)


# About 10 minutes on an idle machine (each rotate-on-bot run is a new process on a bot's worker); 22 minutes were
# measured with eight sessions sharing the 2 cores (load average above 20).
@pytest.mark.timeout(2400)
def test_rotate_batch_runs_each_bots_work_on_that_bot(fleet: Fleet) -> None:
    _wait_for("both bots Active", lambda: all(_bot_status(b) is BotStatus.ACTIVE for b in fleet.bots.values()))
    with session_scope() as s:
        for cid in fleet.hosts:
            repo.get(s, Certificate, cid).batch_name = "far"
    east, west = _mine(fleet, "bot-east"), _mine(fleet, "bot-west")

    # 1. The whole batch: issued centrally, deployed by each certificate's own bot, proven by a handshake.
    before = _serials(fleet)
    key = f"bots-{uuid.uuid4().hex[:8]}"
    counts = rotate_batch(batch_name="far", batch_key=key, failure_budget=0.0)
    assert counts["done"] == 4, counts
    after = _serials(fleet)
    with session_scope() as s:
        for cid in fleet.hosts:
            assert after[cid] == repo.get(s, Certificate, cid).serial_number != before[cid]
    runs = _bot_runs(key)
    assert runs
    for run in runs:  # each run on the queue of the bot it names, started by that bot's own worker
        bot = "bot-east" if run.name.endswith("-on-bot-east") else "bot-west"
        assert run.work_queue_name == bot_queue(fleet.bots[bot]), run.name
        assert str(run.id) in fleet.agents[bot].worker_log()
        assert run.state_name == "Completed"
    with session_scope() as s:  # every deployment was recorded by one of those runs (through the bot API)
        made = s.scalars(select(Deployment).where(Deployment.flow_run_id.in_([str(r.id) for r in runs]))).all()
        assert sorted(d.certificate_id for d in made) == sorted(fleet.hosts)

    # 1b. bot-west's servers outside their maintenance window: its certificates are issued, and their deployment
    # waits in a deploy-certificate run Scheduled on bot-west's queue for the window; bot-east's are deployed.
    opening = (utcnow() + timedelta(hours=12)).replace(minute=0, second=0, microsecond=0)
    _set_window(west, f"0 {opening.hour} * * *")
    before = _serials(fleet)
    key = f"bots-{uuid.uuid4().hex[:8]}"
    counts = rotate_batch(batch_name="far", batch_key=key, failure_budget=0.0)
    assert (counts["done"], counts["waiting_for_window"], counts["failed"]) == (2, 2, 0), counts
    assert [fleet.served(c) for c in west] == [before[c] for c in west]
    assert [fleet.served(c) for c in east] != [before[c] for c in east]
    assert not [r for r in _bot_runs(key) if r.name.endswith("-on-bot-west")]  # nothing for bot-west to do now
    with get_client(sync_client=True) as client:
        for cid in west:
            named = FlowRunFilter(name=FlowRunFilterName(like_=f"deploy-certificate-{cid}-on-"))
            at = f"-at-{opening:%Y%m%d%H%M}"
            (run,) = [r for r in client.read_flow_runs(flow_run_filter=named)
                      if r.parameters.get("certificate_id") == cid and r.name.endswith(at)]  # fmt: skip
            assert run.work_queue_name == bot_queue(fleet.bots["bot-west"])
            assert run.state is not None
            assert run.state.is_scheduled()
            assert run.state.state_details.scheduled_time == opening
            assert _items(key)[cid][0] == "Waiting For Window"
    _set_window(west, None)
    orders = _orders()

    # 2. A spent failure budget stops the batch and rolls back, on the bots, what it had deployed.
    broken = west[-1]
    with session_scope() as s:  # a reload that does nothing: the new serial is never served
        server = repo.get(s, Certificate, broken).targets[0].server
        reload_command, server.reload_command = server.reload_command, "true"
    before = _serials(fleet)
    key = f"bots-{uuid.uuid4().hex[:8]}"
    with pytest.raises(RotationStopped, match="failure budget exceeded"):
        rotate_batch(batch_name="far", batch_key=key, failure_budget=0.0)
    assert _serials(fleet) == before  # every server serves what it served before the batch
    items = _items(key)
    assert items[broken][0] == "Failed"
    assert items[east[0]][0] == "Rolled Back"  # the canary, deployed by bot-east, then put back by it
    assert all(state != "Deployed" for state, _ in items.values()), items
    roll_backs = [r for r in _bot_runs(key) if "-roll-back-on-" in r.name]
    assert any(r.work_queue_name == bot_queue(fleet.bots["bot-east"]) for r in roll_backs), roll_backs
    # Fixed, the same batch continues: what it issued is deployed, nothing is ordered twice.
    with session_scope() as s:
        repo.get(s, Certificate, broken).targets[0].server.reload_command = reload_command
    issued = _orders()
    assert rotate_batch(batch_key=key)["done"] == 4
    assert _orders() == issued
    assert all(issued[c] == orders[c] + 1 for c in fleet.hosts)  # this batch issued each once, in two runs

    # 3. A bot whose agent is gone but still shows Active: its run is not taken within bot_start_timeout, so
    # its certificates are not started (with the reason) and count against the budget; here the budget allows it.
    fleet.agents["bot-west"].kill()
    key = f"bots-{uuid.uuid4().hex[:8]}"
    counts = rotate_batch(batch_name="far", batch_key=key, failure_budget=0.5, bot_start_timeout=8)
    assert counts["done"] == 2
    items = _items(key)
    for cid in west:
        state, reason = items[cid]
        assert state == "Not Started"
        assert reason is not None
        assert "did not take run" in reason
        assert "within 8 s" in reason
    cancelled = [r for r in _bot_runs(key) if r.name.endswith("-on-bot-west")]
    assert cancelled
    assert {r.state_name for r in cancelled} == {"Cancelled"}

    # 4. Marked Inactive, the bot gets nothing at all; with a smaller budget its certificates stop the batch, and
    # what bot-east deployed is rolled back.
    time.sleep(5)
    with session_scope() as s:
        assert mark_silent_bots(s, now=utcnow(), silence=timedelta(seconds=4)) == ["bot-west"]
    before = _serials(fleet)
    stopped_key = f"bots-{uuid.uuid4().hex[:8]}"
    with pytest.raises(RotationStopped, match="failure budget exceeded"):
        rotate_batch(batch_name="far", batch_key=stopped_key, failure_budget=0.25)
    assert _serials(fleet) == before
    items = _items(stopped_key)
    for cid in west:
        assert items[cid] == ("Not Started", "not started: bot bot-west is Inactive")
    assert not [r for r in _bot_runs(stopped_key) if r.name.endswith("-on-bot-west")]  # nothing sent to it

    # 5. Back again: the batch of step 3 continues and finishes on bot-west, issuing nothing twice on bot-east.
    fleet.agents["bot-west"].start()
    _wait_for("bot-west Active again", lambda: _bot_status(fleet.bots["bot-west"]) is BotStatus.ACTIVE)
    issued, before = _orders(), _serials(fleet)
    assert rotate_batch(batch_key=key)["done"] == 4
    assert _orders() == issued  # bot-west's certificates were issued in step 3: deployed now, not ordered again
    with session_scope() as s:
        for cid in west:
            assert fleet.served(cid) == repo.get(s, Certificate, cid).serial_number != before[cid]
    assert [fleet.served(c) for c in east] == [before[c] for c in east]  # done in step 3, left alone
