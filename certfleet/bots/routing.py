"""Which bot carries out a run: the bot a server is mapped to. Its Prefect queue is `bot-<id>`.

A server with no bot cannot be deployed to (nothing could reach it). A Stopped bot's queue is paused, so its
runs wait until the bot is started again; the route says so, and callers tell the user.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from certfleet.deployments.names import bot_queue
from certfleet.jobs.db_store import rollback_refusal
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import Bot, BotStatus, Certificate, Deployment, DeploymentTarget, Server

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


def start_deploy_runs(
    certificate_id: int,
    target_ids: Iterable[int] | None = None,
    *,
    idempotency_key: str | None = None,
    tags: Iterable[str] | None = None,
    as_subflow: bool = True,
) -> list[FlowRun]:
    """One deploy-certificate run per bot that reaches the certificate's (chosen) targets, on its queue."""
    from certfleet.deployments.starts import start_flow_run

    with session_scope() as s:
        routes = deploy_routes(s, certificate_id, target_ids)
    return [
        start_flow_run(
            "deploy-certificate",
            {"certificate_id": certificate_id, "target_ids": ids},
            queue=route.queue,
            flow_run_name=f"deploy-certificate-{certificate_id}-on-{route.queue}",
            idempotency_key=f"{idempotency_key}-{route.queue}" if idempotency_key else None,
            tags=tags,
            as_subflow=as_subflow,
        )
        for route, ids in routes
    ]
