"""Which bot carries out a run: the bot a server is mapped to. Its Prefect queue is `bot-<id>`.

A server with no bot cannot be deployed to (nothing could reach it). A Stopped bot's queue is paused, so its
runs wait until the bot is started again; the route says so, and callers tell the user.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from certfleet.deployments.names import bot_queue
from certfleet.inventory.served import served_expires_on
from certfleet.jobs.db_store import rollback_refusal
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import Bot, BotStatus, Certificate, Deployment, DeploymentTarget, Server, utcnow
from certfleet.servers.maintenance import Window, deploy_at
from certfleet.settings import get_settings

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun


class NoRoute(ValueError):
    """No bot can carry out the run (a server without a bot, a certificate without targets)."""


@dataclass(frozen=True)
class Route:
    bot_id: int
    bot_name: str
    queue: str
    stopped: bool

    @classmethod
    def of(cls, bot: Bot) -> Route:
        return cls(bot.id, bot.name, bot_queue(bot.id), bot.status is BotStatus.STOPPED)

    @property
    def note(self) -> str:
        """For messages: where the run goes, and that it waits when the bot is stopped."""
        wait = " (the bot is Stopped: the run waits until it is started)" if self.stopped else ""
        return f"on bot {self.bot_name}{wait}"


def route_of_server(server: Server) -> Route:
    if server.bot is None:
        raise NoRoute(
            f"no bot is assigned to server {server.description} ({server.host}): map the server to a bot first"
        )
    return Route.of(server.bot)


def deploy_routes(
    session: Session, certificate_id: int, target_ids: Iterable[int] | None = None
) -> list[tuple[Route, list[int]]]:
    """The certificate's targets (or the chosen ones) grouped by the bot that reaches their server."""
    cert = repo.get(session, Certificate, certificate_id)
    if target_ids is None:
        targets = list(cert.targets)
    else:
        targets = [repo.get(session, DeploymentTarget, t) for t in target_ids]
        foreign = [t.id for t in targets if t.certificate_id != certificate_id]
        if foreign:
            raise NoRoute(f"target(s) {', '.join(map(str, foreign))} do not belong to certificate {certificate_id}")
    if not targets:
        raise NoRoute(f"certificate {cert.common_name} has no deployment targets: add one first")
    groups: dict[str, tuple[Route, list[int]]] = {}
    for target in sorted(targets, key=lambda t: t.id):
        route = route_of_server(target.server)
        groups.setdefault(route.queue, (route, []))[1].append(target.id)
    return list(groups.values())


def file_scan_route(session: Session, server_id: int, bot_id: int | None = None) -> Route:
    """A server's files are scanned by the bot it is mapped to; a server mapped to no bot, by the local bot."""
    from certfleet.jobs.discovery import DiscoveryError, discovery_bot

    server = repo.get(session, Server, server_id)
    if server.bot is not None:
        if bot_id is not None and bot_id != server.bot_id:
            raise NoRoute(
                f"server {server.description} ({server.host}) is mapped to bot {server.bot.name}: "
                "only that bot scans its files"
            )
        bot_id = server.bot_id
    elif bot_id is not None:
        raise NoRoute(
            f"server {server.description} ({server.host}) is mapped to no bot: map it to the bot first, "
            "or scan it with the local bot"
        )
    try:
        return Route.of(discovery_bot(session, bot_id, scans_networks=False))
    except DiscoveryError as exc:
        raise NoRoute(str(exc)) from None


def rollback_route(session: Session, deployment_id: int) -> Route:
    """The queue that rolls the deployment back; NoRoute, with the reason, when it cannot be rolled back."""
    deployment = repo.get(session, Deployment, deployment_id)
    refusal = rollback_refusal(session, deployment)
    if refusal:
        raise NoRoute(refusal)
    return route_of_server(deployment.target.server)


@dataclass(frozen=True)
class PlannedDeploy:
    """One deploy-certificate run: the bot's queue, its targets, and when it runs (None: now; else the start of
    the servers' next maintenance window, or the deadline before the served certificate expires)."""

    route: Route
    target_ids: list[int]
    at: datetime | None
    waiting: list[str]  # "deployment to web1 waiting for maintenance window at ...", for the certificate


def plan_deploys(
    session: Session,
    certificate_id: int,
    target_ids: Iterable[int] | None = None,
    *,
    ignore_window: bool = False,
    now: datetime | None = None,
) -> list[PlannedDeploy]:
    """deploy_routes split further by when each server may be deployed to (its maintenance window)."""
    now = now or utcnow()
    cert = repo.get(session, Certificate, certificate_id)
    expires_on = served_expires_on(session, cert)
    deadline = timedelta(days=get_settings().maintenance_deadline_days)
    plans: dict[tuple[str, datetime | None], PlannedDeploy] = {}
    for route, ids in deploy_routes(session, certificate_id, target_ids):
        for target_id in ids:
            server = repo.get(session, DeploymentTarget, target_id).server
            window = None if ignore_window else _window(server)
            at = deploy_at(window, now=now, expires_on=expires_on, deadline=deadline)
            plan = plans.setdefault((route.queue, at), PlannedDeploy(route, [], at, []))
            plan.target_ids.append(target_id)
            note = _waiting_note(server, window, at, now)
            if note and note not in plan.waiting:
                plan.waiting.append(note)
    return list(plans.values())


def _waiting_note(server: Server, window: Window | None, at: datetime | None, now: datetime) -> str | None:
    if at is None or window is None:
        return None
    if window.opening(now) == at:
        return f"deployment to {server.description} waiting for maintenance window at {window.describe(at)}"
    return (
        f"deployment to {server.description} waiting until {window.describe(at)}: its next maintenance window "
        "opens after the deadline before the certificate it serves expires"
    )


def _window(server: Server) -> Window | None:
    return Window.of(server.maintenance_cron, server.maintenance_duration_minutes, server.maintenance_timezone)


def record_plans(session: Session, certificate_id: int, plans: Iterable[PlannedDeploy]) -> None:
    """Each target remembers when its deployment waits until; the certificate says so in its status reason."""
    cert = repo.get(session, Certificate, certificate_id)
    notes = []
    for plan in plans:
        for target_id in plan.target_ids:
            repo.get(session, DeploymentTarget, target_id).deploy_waits_until = plan.at
        notes.extend(plan.waiting)
    if notes:
        cert.status_reason = "; ".join(notes)


def start_deploy_runs(
    certificate_id: int,
    target_ids: Iterable[int] | None = None,
    *,
    idempotency_key: str | None = None,
    tags: Iterable[str] | None = None,
    as_subflow: bool = True,
    ignore_window: bool = False,
    now: datetime | None = None,
) -> list[FlowRun]:
    """One deploy-certificate run per bot that reaches the certificate's (chosen) targets, on its queue; a
    server outside its maintenance window gets its own run, scheduled in Prefect for the window's start."""
    from certfleet.deployments.starts import start_flow_run

    with session_scope() as s:
        plans = plan_deploys(s, certificate_id, target_ids, ignore_window=ignore_window, now=now)
    runs: list[FlowRun] = []
    for plan in plans:
        queue = plan.route.queue
        when = f"-at-{plan.at:%Y%m%d%H%M}" if plan.at else ""
        runs.append(
            start_flow_run(
                "deploy-certificate",
                {"certificate_id": certificate_id, "target_ids": plan.target_ids},
                queue=queue,
                flow_run_name=f"deploy-certificate-{certificate_id}-on-{queue}{when}",
                idempotency_key=f"{idempotency_key}-{queue}{when}" if idempotency_key else None,
                tags=tags,
                as_subflow=as_subflow,
                scheduled_time=plan.at,
            )
        )
    with session_scope() as s:
        record_plans(s, certificate_id, plans)
    if ignore_window:  # "deploy now": what waited for a window must not deploy again later
        covered = [t for plan in plans for t in plan.target_ids]
        cancel_waiting_runs(
            certificate_id,
            covered,
            reason="deployed now, ignoring the maintenance window",
            keep_ids={str(run.id) for run in runs},
        )
    return runs


def cancel_waiting_runs(
    certificate_id: int, target_ids: Iterable[int], *, reason: str, keep_ids: Iterable[str] = ()
) -> list[str]:
    """Cancel the certificate's deploy-certificate runs that wait in Prefect for a maintenance window and deploy
    only targets among `target_ids` (a deploy now has done them, or a stopped batch takes them back). Runs in
    `keep_ids` (the ones just started) are left alone. Returns the names of the runs cancelled."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    covered = set(target_ids)
    kept = set(keep_ids)
    cancelled = []
    with get_client(sync_client=True) as client:
        waiting = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["deploy-certificate"])),
            flow_run_filter=FlowRunFilter(
                # Every start names the run deploy-certificate-<id>-on-<queue>[-at-<time>] (routing and dashboard).
                name=FlowRunFilterName(like_=f"deploy-certificate-{certificate_id}-on-"),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            ),
        )
        for run in waiting:
            targets = set(run.parameters.get("target_ids") or [])
            if (
                str(run.id) in kept
                or run.parameters.get("certificate_id") != certificate_id
                or not targets
                or not targets <= covered
                or not waits_for_window(run)
            ):
                continue
            client.set_flow_run_state(run.id, Cancelled(message=reason), force=True)
            cancelled.append(run.name)
    return cancelled


def waits_for_window(run: FlowRun, now: datetime | None = None) -> bool:
    """The run is scheduled for later (a maintenance window), not to run now."""
    state = run.state
    at = state.state_details.scheduled_time if state is not None and state.is_scheduled() else None
    return at is not None and at > (now or utcnow()) + timedelta(seconds=5)
