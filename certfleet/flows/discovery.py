"""discover-endpoints: TLS-scan hosts, ranges and ports, and record every certificate chain served.
discover-server-files: find certificate files in the folders of registered servers.

Both run on the queue of the bot that reaches the network or the servers (the local bot's by default) and read and
record through a `DiscoveryStore`: the database on the central host, certfleet's bot API on a remote bot.

A run is planned in the flow (bot check, one `discovery_runs` row, target expansion on the bot), then the endpoints
go out in a few large batches, each one task, two at a time: a task's handshakes run in a child process
(`certfleet.discovery.scan_process`, one asyncio loop) while the task records what it reports in small
bulk transactions, so scanning and recording use both cores instead of sharing one GIL.

discover-endpoints is an async flow because a sync flow's engine waits up to a second for its heartbeat
thread when the run ends, which on a 1,000-endpoint scan costs as much as the recording does. Call it with
`asyncio.run(discover_endpoints(...))` outside Prefect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from typing import Any, cast

from prefect import flow, get_run_logger, unmapped
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from sqlalchemy import select

from certfleet.bots.routing import Route
from certfleet.deployments.starts import start_flow_run
from certfleet.discovery.scan_process import prestart
from certfleet.discovery.scanner import ScanOptions
from certfleet.discovery.targets import with_known_names
from certfleet.jobs.discovery import DiscoveryError, current_discovery_store, servers_of
from certfleet.models.db import session_scope
from certfleet.models.orm import Bot, BotStatus, Server
from certfleet.tasks.build import release_connections
from certfleet.tasks.discovery import (
    MAX_BATCH,
    BatchSummary,
    DiscoverySummary,
    FileDiscoverySummary,
    expand_targets,
    plan_batches,
    scan_batch,
    scan_server_files,
)

PARALLEL_BATCHES = 2  # one scan process per core
PARALLEL_SERVERS = 4  # file scans wait on the network, not the CPU


class DiscoveryFailed(RuntimeError):
    """Some batches or servers could not be scanned or recorded; what the others found is kept."""


def _threads(workers: int) -> TaskRunner[PrefectFuture[Any]]:
    # Prefect's TaskRunner generic is invariant, so its own thread pool runner needs a cast to type-check.
    return cast(TaskRunner[PrefectFuture[Any]], ThreadPoolTaskRunner(max_workers=workers))


def _endpoints_run_name() -> str:
    bot = flow_run.parameters.get("bot_id")
    return f"discover-endpoints-bot-{bot if bot is not None else 'local'}"


def _files_run_name() -> str:
    servers = flow_run.parameters.get("server_ids")
    if servers:
        return "discover-server-files-" + "-".join(str(s) for s in servers[:5])
    bot = flow_run.parameters.get("bot_id")
    return f"discover-server-files-bot-{bot if bot is not None else 'local'}"


def _outcomes(futures: list[PrefectFuture[BatchSummary]]) -> tuple[list[BatchSummary], list[str]]:
    done, failed = [], []
    for number, future in enumerate(futures, start=1):
        try:
            done.append(future.result())
        except Exception as exc:  # a failed batch must not hide what the others recorded
            failed.append(f"batch {number}: {exc}")
    return done, failed


@flow(
    name="discover-endpoints",
    flow_run_name=_endpoints_run_name,
    task_runner=_threads(PARALLEL_BATCHES),
)
async def discover_endpoints(
    targets: list[str] | None = None,
    ports: str | list[int] = "443",
    bot_id: int | None = None,
    concurrency: int = 256,
    connect_timeout: float = 3.0,
    handshake_timeout: float = 5.0,
    batch_size: int = MAX_BATCH,
) -> DiscoverySummary:
    """On the bot's queue: scan `targets` (hosts, IPs, CIDR ranges, address ranges, `name@ip` for SNI; the bot's
    registered servers when none are given) on `ports` ("443,8443,9000-9010"), `concurrency` connections at
    once, and record what answers in the inventory as found by `bot_id` (the local bot when none is given)."""
    prestart(PARALLEL_BATCHES)  # the scan processes start while the run is planned and its tasks are set up
    try:
        options = ScanOptions(concurrency, connect_timeout, handshake_timeout)
    except ValueError as exc:
        raise DiscoveryError(str(exc)) from None
    if batch_size < 1:
        raise DiscoveryError(f"batch size {batch_size} must be at least 1")
    store = current_discovery_store()
    flow_run_id = str(flow_run.id) if flow_run.id else None
    opened = await asyncio.to_thread(store.open_endpoint_run, bot_id, targets, ports, options, flow_run_id)
    try:
        expansion = expand_targets(opened.targets, ports, explicit=targets is not None)
    except DiscoveryError as exc:
        await asyncio.to_thread(store.finish, opened.run_id, "Failed", [str(exc)])
        raise
    endpoints = with_known_names(expansion.endpoints, opened.known_names)
    notes = list(expansion.unresolved.values())
    if targets is None and not opened.targets:
        notes = ["no targets given and no registered server of this bot has a port: nothing was scanned"]
    batches = plan_batches(endpoints, workers=PARALLEL_BATCHES, batch_size=batch_size)
    await asyncio.to_thread(store.set_plan, opened.run_id, len(endpoints), notes)
    logger = get_run_logger()
    for reason in expansion.unresolved.values():
        logger.warning("skipped: %s", reason)
    workers = max(1, min(PARALLEL_BATCHES, len(batches)))
    per_batch = dataclasses.replace(options, concurrency=max(1, math.ceil(concurrency / workers)))
    futures = scan_batch.map(unmapped(opened.run_id), list(range(1, len(batches) + 1)), batches, unmapped(per_batch))
    await asyncio.to_thread(wait, list(futures))  # the event loop stays free while the threads work
    done, failed = _outcomes(list(futures))
    await asyncio.to_thread(store.finish, opened.run_id, "Failed" if failed else "Completed", failed)
    summary = DiscoverySummary(
        run_id=opened.run_id,
        endpoints=sum(b.count for b in batches),
        answered=sum(d.answered for d in done),
        failed=sum(d.failed for d in done),
        certificates_new=sum(d.new_certificates for d in done),
        unresolved=expansion.unresolved,
        failed_batches=len(failed),
    )
    logger.info(
        "run %s: %s endpoints, %s answered, %s new certificates",
        opened.run_id,
        summary.endpoints,
        summary.answered,
        summary.certificates_new,
    )
    if failed:
        raise DiscoveryFailed(f"{len(failed)} of {len(futures)} batches failed: " + "; ".join(failed[:5]))
    return summary


@flow(
    name="discover-server-files",
    flow_run_name=_files_run_name,
    task_runner=_threads(PARALLEL_SERVERS),
)
def discover_server_files(
    server_ids: list[int] | None = None,
    bot_id: int | None = None,
    extra_paths: list[str] | None = None,
) -> list[FileDiscoverySummary]:
    """On the bot's queue: scan the key store folder, installation path, target file folders and `extra_paths` of
    each server (the bot's servers when none are named) for PEM, DER, PKCS#7, PKCS#12 and Java keystore files."""
    store = current_discovery_store()
    paths = list(extra_paths or [])
    opened = store.open_files_run(bot_id, server_ids, paths, str(flow_run.id) if flow_run.id else None)
    try:
        futures = scan_server_files.map(unmapped(opened.run_id), opened.server_ids, unmapped(paths))
        wait(list(futures))
        done: list[FileDiscoverySummary] = []
        failed: list[str] = []
        for server_id, future in zip(opened.server_ids, futures, strict=True):
            try:
                done.append(future.result())
            except Exception as exc:  # one unreachable server must not hide the others' files
                failed.append(f"server {server_id}: {exc}")
    finally:
        release_connections()
    errors = [*failed, *(e for d in done for e in d.errors)]
    store.finish(opened.run_id, "Failed" if failed else "Completed", errors)
    if failed:
        raise DiscoveryFailed(
            f"{len(failed)} of {len(opened.server_ids)} servers could not be scanned: " + "; ".join(failed[:5])
        )
    return done


def fleet_routes() -> list[tuple[Route, bool]]:
    """Each bot that has servers to scan, running or waiting (a Stopped bot's runs wait for it), with whether
    any of them has a port to handshake with."""
    with session_scope() as s:
        found: list[tuple[Route, bool]] = []
        for bot in s.scalars(select(Bot).order_by(Bot.id)):
            servers = list(s.scalars(select(Server).where(servers_of(bot))))  # type: ignore[arg-type]
            if servers and bot.status is not BotStatus.INACTIVE:
                found.append((Route.of(bot), any(server.ports for server in servers)))
        return found


@flow(name="discover-fleet")
def discover_fleet() -> list[str]:
    """Central, nightly: one discover-endpoints and one discover-server-files run on each bot that has servers,
    on its own queue, so every network is scanned from inside. Returns the ids of the runs started."""
    started: list[str] = []
    names: list[str] = []
    for route, has_ports in fleet_routes():
        kinds = ["discover-endpoints", "discover-server-files"] if has_ports else ["discover-server-files"]
        for kind in kinds:
            run = start_flow_run(
                kind,
                {"bot_id": route.bot_id},
                queue=route.queue,
                flow_run_name=f"{kind}-bot-{route.bot_id}",
                idempotency_key=f"{flow_run.id}-{kind}-{route.queue}" if flow_run.id else None,
            )
            started.append(str(run.id))
            names.append(f"{run.name} {route.note}")
    get_run_logger().info("started %s run(s): %s", len(started), "; ".join(names) or "no bot has servers")
    return started
