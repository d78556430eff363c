"""rotate-batch's side of the work done by other bots: start `rotate-on-bot` runs on a bot's queue, wait for them,
and read what they did back from the deployments they recorded (never from the run's return value, which a bot
that died never sends).

Whether a bot run may start another certificate is a Prefect variable `rotate-go-<uuid>` holding "go", created
before the run starts and deleted when the batch stops, when the run ends, or when the bot did not take the run
in time: a bot run checks it before each certificate, so it never starts one the batch no longer wants, even when
the bot takes the run late.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import select

from certfleet.deployments.names import bot_queue
from certfleet.models import repo
from certfleet.models.bootstrap import LOCAL_BOT_NAME
from certfleet.models.db import session_scope
from certfleet.models.orm import Bot, BotStatus, Deployment, DeploymentStatus, utcnow
from certfleet.rotation.service import DEPLOYED, FAILED, ISSUED, NOT_STARTED
from certfleet.settings import get_settings

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

    from certfleet.tasks.rotation import Planned

FLOW = "rotate-on-bot"
CHUNK = 10  # certificates issued ahead of one bot run: what a stop can leave issued but not deployed
POLL_SECONDS = 1.0


class Batch(Protocol):
    stopped: bool

    def failed(self, note: str, *, stop_at_once: bool) -> None: ...

    def open_go(self) -> str | None: ...

    def close_go(self, name: str) -> None: ...


def want() -> str:
    from prefect.variables import Variable

    name = f"rotate-go-{uuid.uuid4().hex}"
    Variable.set(name, "go")
    return name


def stop_wanting(name: str) -> None:
    from prefect.variables import Variable

    Variable.unset(name)


def unavailable(bot_id: int | None) -> str | None:
    """Why the bot cannot take work now (None: it can): not Active, or silent for three heartbeats."""
    if bot_id is None:
        return "the server is mapped to no bot"
    settings = get_settings()
    silence = timedelta(seconds=max(3 * settings.bot_heartbeat_seconds, 60.0))
    with session_scope() as s:
        bot = repo.get(s, Bot, bot_id)
        if bot.status is BotStatus.STOPPED:
            return f"bot {bot.name} is Stopped (its queue is paused)"
        if bot.status is not BotStatus.ACTIVE:
            return f"bot {bot.name} is {bot.status.value}"
        if bot.last_update is None or utcnow() - bot.last_update > silence:
            since = f"{bot.last_update:%Y-%m-%d %H:%M:%S} UTC" if bot.last_update else "ever"
            return f"bot {bot.name} has not checked in since {since}"
    return None


def not_started(items: Sequence[Planned], reason: str, batch: Batch) -> None:
    """Items the bot cannot do: Not Started with the reason, each counted against the failure budget."""
    from certfleet.tasks.rotation import set_state

    for item in items:
        set_state(item.item_id, NOT_STARTED, reason=f"not started: {reason}")
        batch.failed(f"certificate {item.certificate_id}: not started: {reason}", stop_at_once=False)


def _start(batch_key: str, bot_id: int, parameters: Mapping[str, object], what: str) -> FlowRun:
    from certfleet.deployments.starts import start_flow_run

    return start_flow_run(
        FLOW,
        {"batch_key": batch_key, **parameters},
        queue=bot_queue(bot_id),
        flow_run_name=f"rotate-{batch_key}-{what}"[:120],
    )


def _wait(run: FlowRun, bot_id: int, start_timeout: float, give_up: Callable[[], None]) -> tuple[FlowRun, str | None]:
    """Until the run ends. Returns it and, when the bot did not do its part, why: the run was not taken within
    `start_timeout` s (then it is cancelled), or the bot went silent while running it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    deadline = time.monotonic() + start_timeout
    checked = time.monotonic()
    lost: str | None = None
    with get_client(sync_client=True) as client:
        while True:
            now = client.read_flow_run(run.id)
            state = now.state
            if state is not None and state.is_final():
                return now, lost
            if lost is None and state is not None and state.type is StateType.SCHEDULED and time.monotonic() > deadline:
                give_up()  # first: a bot that takes the run from now on starts nothing
                again = client.read_flow_run(run.id)
                if again.state is not None and again.state.type is StateType.SCHEDULED:
                    reason = f"bot did not take run {run.name} within {start_timeout:g} s"
                    client.set_flow_run_state(run.id, Cancelled(message=f"rotate-batch: {reason}"), force=True)
                    return client.read_flow_run(run.id), reason
                continue  # taken just now: it starts nothing more, wait for its end
            if lost is None and state is not None and time.monotonic() - checked > 5:
                checked = time.monotonic()
                why = unavailable(bot_id)
                if why is not None and state.type is not StateType.SCHEDULED:
                    give_up()
                    lost = f"{why} while running {run.name}"
                    return now, lost  # a dead bot's run never ends: what it recorded is read as it stands
            time.sleep(POLL_SECONDS)


def _deployments_of(run: FlowRun) -> dict[int, list[Deployment]]:
    with session_scope() as s:
        rows = s.scalars(select(Deployment).where(Deployment.flow_run_id == str(run.id)).order_by(Deployment.id)).all()
        s.expunge_all()
    found: dict[int, list[Deployment]] = {}
    for row in rows:
        found.setdefault(row.certificate_id, []).append(row)
    return found


def deploy(
    batch_key: str,
    items: Sequence[Planned],
    batch: Batch,
    start_timeout: float,
    only: Mapping[int, list[int]] | None = None,
) -> bool:
    """The issued items deployed by their bot in one run; their outcomes recorded. `only` limits a certificate
    to some of its targets (the others wait for their maintenance windows). False when the bot did not take the
    run (the caller gives up on the server)."""
    from certfleet.tasks.rotation import set_state

    bot_id, bot_name = items[0].bot_id, items[0].bot_name
    assert bot_id is not None
    name = batch.open_go()
    if name is None:
        return True  # the batch stopped meanwhile: the items stay issued, not deployed
    try:
        run = _start(
            batch_key,
            bot_id,
            {
                "certificate_ids": [i.certificate_id for i in items],
                "go_variable": name,
                # the server of the run: its certificates are deployed there as a group (one config test, reload)
                **({"server_id": items[0].server_id} if items[0].server_id is not None else {}),
                **({"target_ids": {str(c): t for c, t in only.items()}} if only else {}),
            },
            f"{items[0].server_label}-on-{bot_name}",
        )
        ended, trouble = _wait(run, bot_id, start_timeout, lambda: batch.close_go(name))
    finally:
        batch.close_go(name)
    found = _deployments_of(ended)
    run_note = f"run {ended.name} ended {ended.state_name}" + (
        f": {ended.state.message}" if ended.state and ended.state.message else ""
    )
    blamed = False
    for item in items:
        rows = found.get(item.certificate_id, [])
        if rows and all(r.status is DeploymentStatus.DEPLOYED for r in rows):
            set_state(item.item_id, DEPLOYED, deployment_ids=[r.id for r in rows])
            continue
        if rows:
            bad = next(r for r in rows if r.status is not DeploymentStatus.DEPLOYED)
            what = "interrupted" if bad.status is DeploymentStatus.RUNNING else bad.status.value
            note = f"deploy failed on bot {bot_name}: deployment {bad.id} {what}: {bad.reason or trouble or run_note}"
            set_state(item.item_id, FAILED, reason=note, deployment_ids=[])
            batch.failed(f"certificate {item.certificate_id}: {note}", stop_at_once=item.canary)
            blamed = True
            continue
        if trouble is not None:
            not_started([item], trouble, batch)
        elif blamed or batch.stopped:
            set_state(item.item_id, ISSUED, reason=f"issued, not deployed: the bot run stopped before it ({run_note})")
        else:  # the run stopped before opening a deployment for it, and no earlier failure explains why
            note = f"deploy failed on bot {bot_name}: no deployment was opened ({run_note})"
            set_state(item.item_id, FAILED, reason=note)
            batch.failed(f"certificate {item.certificate_id}: {note}", stop_at_once=item.canary)
            blamed = True
    return trouble is None


def roll_back(batch_key: str, deployment_ids: Sequence[int], reason: str, start_timeout: float) -> dict[int, str]:
    """The deployments made on other bots put back by those bots, one run per bot, all bots at once. Returns the
    outcome per deployment: its status, or why it was not rolled back."""
    per_bot: dict[tuple[int, str], list[int]] = {}
    with session_scope() as s:
        for deployment_id in deployment_ids:
            bot = repo.get(s, Deployment, deployment_id).target.server.bot
            if bot is not None and bot.name != LOCAL_BOT_NAME:
                per_bot.setdefault((bot.id, bot.name), []).append(deployment_id)
    if not per_bot:
        return {}

    def one(bot: tuple[int, str], ids: list[int]) -> dict[int, str]:
        why = unavailable(bot[0])
        if why is not None:
            return {d: f"deployment {d} not rolled back: {why}" for d in ids}
        parameters = {"roll_back_deployment_ids": ids, "reason": f"rotate-batch {batch_key} stopped: {reason}"}
        run = _start(batch_key, bot[0], parameters, f"roll-back-on-{bot[1]}")
        ended, trouble = _wait(run, bot[0], start_timeout, lambda: None)
        outcomes = {}
        with session_scope() as s:
            for d in ids:
                row = repo.get(s, Deployment, d)
                if row.status is DeploymentStatus.ROLLED_BACK:
                    outcomes[d] = DeploymentStatus.ROLLED_BACK.value
                else:
                    detail = trouble or row.reason or f"run {ended.name} ended {ended.state_name}"
                    outcomes[d] = f"deployment {d} not rolled back on bot {bot[1]}: {row.status.value}: {detail}"
        return outcomes

    with ThreadPoolExecutor(max_workers=min(8, len(per_bot))) as pool:  # each thread in a copy of this context:
        futures = [  # Prefect's settings and run context live in context variables
            pool.submit(contextvars.copy_context().run, one, bot, ids) for bot, ids in per_bot.items()
        ]
        results = [f.result() for f in futures]
    merged: dict[int, str] = {}
    for result in results:
        merged.update(result)
    return merged
