"""discover-endpoints: TLS-scan hosts, ranges and ports, and record every certificate chain served.
discover-server-files: find certificate files in the folders of registered servers.

A run is planned in the flow (bot check, target expansion, one `discovery_runs` row), then the endpoints
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

from certfleet.discovery.scan_process import prestart
from certfleet.discovery.scanner import ScanOptions
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import DiscoveryRun, Server
from certfleet.tasks.build import release_connections
from certfleet.tasks.discovery import (
    MAX_BATCH,
    BatchSummary,
    DiscoveryError,
    DiscoverySummary,
    FileDiscoverySummary,
    discovery_bot,
    finish_run,
    plan_discovery,
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
    which = "all" if not servers else "-".join(str(s) for s in servers[:5])
    return f"discover-server-files-{which}"


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
    """Scan `targets` (hosts, IPs, CIDR ranges, address ranges, `name@ip` for SNI; the registered servers when
    none are given) on `ports` ("443,8443,9000-9010"), `concurrency` connections at once, and record what
    answers in the inventory as found by `bot_id` (the local bot when none is given)."""
    prestart(PARALLEL_BATCHES)  # the scan processes start while the run is planned and its tasks are set up
    try:
        options = ScanOptions(concurrency, connect_timeout, handshake_timeout)
    except ValueError as exc:
        raise DiscoveryError(str(exc)) from None
    plan = plan_discovery(
        targets,
        ports,
        bot_id,
        options,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
        workers=PARALLEL_BATCHES,
        batch_size=batch_size,
    )
    logger = get_run_logger()
    for reason in plan.unresolved.values():
        logger.warning("skipped: %s", reason)
    workers = max(1, min(PARALLEL_BATCHES, len(plan.batches)))
    per_batch = dataclasses.replace(options, concurrency=max(1, math.ceil(concurrency / workers)))
    futures = scan_batch.map(
        unmapped(plan.run_id),
        list(range(1, len(plan.batches) + 1)),
        unmapped(plan.bot_id),
        plan.batches,
        unmapped(per_batch),
    )
    await asyncio.to_thread(wait, list(futures))  # the event loop stays free while the threads work
    done, failed = _outcomes(list(futures))
    finish_run(plan.run_id, "Failed" if failed else "Completed", failed)
    summary = DiscoverySummary(
        run_id=plan.run_id,
        endpoints=sum(b.count for b in plan.batches),
        answered=sum(d.answered for d in done),
        failed=sum(d.failed for d in done),
        certificates_new=sum(d.new_certificates for d in done),
        unresolved=plan.unresolved,
        failed_batches=len(failed),
    )
    logger.info(
        "run %s: %s endpoints, %s answered, %s new certificates",
        plan.run_id,
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
    """Scan the key store folder, installation path, target file folders and `extra_paths` of each server
    (all registered servers when none are named) for PEM, DER, PKCS#7, PKCS#12 and Java keystore files."""
    with session_scope() as s:
        named_bot = discovery_bot(s, bot_id).id if bot_id is not None else None
        servers = list(server_ids) if server_ids else list(s.scalars(select(Server.id).order_by(Server.id)))
        for server_id in servers:
            repo.get(s, Server, server_id)  # an unknown id fails the run before anything is scanned
        if not servers:
            raise DiscoveryError("no server is registered; add servers before scanning their files")
        run = DiscoveryRun(
            kind="files",
            bot_id=named_bot,
            flow_run_id=str(flow_run.id) if flow_run.id else None,
            scope={"server_ids": servers, "extra_paths": list(extra_paths or [])},
            endpoints_total=0,
        )
        s.add(run)
        s.flush()
        actor = f"bot:{discovery_bot(s, bot_id).name}" if bot_id is not None else "certfleet"
        repo.audit(s, actor=actor, action="discover-server-files", obj=run, detail=f"{len(servers)} server(s)")
        run_id = run.id
    try:
        futures = scan_server_files.map(
            unmapped(run_id), servers, unmapped(named_bot), unmapped(list(extra_paths or []))
        )
        wait(list(futures))
        done: list[FileDiscoverySummary] = []
        failed: list[str] = []
        for server_id, future in zip(servers, futures, strict=True):
            try:
                done.append(future.result())
            except Exception as exc:  # one unreachable server must not hide the others' files
                failed.append(f"server {server_id}: {exc}")
    finally:
        release_connections()
    finish_run(run_id, "Failed" if failed else "Completed", [*failed, *(e for d in done for e in d.errors)])
    if failed:
        raise DiscoveryFailed(f"{len(failed)} of {len(servers)} servers could not be scanned: " + "; ".join(failed[:5]))
    return done
