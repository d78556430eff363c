"""Discovery tasks: scan a batch of TLS endpoints and record it; scan one server's certificate files.

Sized by the Prefect notes: a task costs tens of milliseconds, so a task is a batch of endpoints (hundreds
to a couple of thousand, one asyncio loop, one bulk transaction) or one server (one connection for all of
its files), never one endpoint or one file. The batch travels as packed text, so Prefect does not walk
thousands of objects to look for futures in the task's parameters.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization
from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from certfleet.connectors.errors import ConnectorError
from certfleet.discovery.scan_process import ScanProcessError, scan_in_process
from certfleet.discovery.scanner import ScanOptions, ScanResult
from certfleet.discovery.targets import Endpoint, Expansion, TargetError, expand
from certfleet.inventory.files import scan_folders
from certfleet.inventory.record import BackgroundRecorder, Miss, Sighting, record
from certfleet.models import repo
from certfleet.models.bootstrap import LOCAL_BOT_NAME
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Bot,
    BotPurpose,
    BotStatus,
    CertificateLocation,
    DeploymentTarget,
    DiscoveryRun,
    LocationStatus,
    Server,
    ServerConnection,
    utcnow,
)
from certfleet.servers.paths import PathRefused, check_path
from certfleet.tasks.build import build_transport

MAX_BATCH = 2000
MIN_BATCH = 100  # below this a second task costs more than it saves
MAX_ERRORS_KEPT = 50
RECORD_CHUNK = 100  # results per write transaction while a batch scans: small, so recording starts early


class DiscoveryError(ValueError):
    """The run cannot start: unknown or unsuitable bot, bad targets. The message says what to fix."""


class EndpointBatch(BaseModel):
    """Endpoints packed one per line as "ip port sni host" ('-' for no SNI)."""

    count: int
    lines: str

    @classmethod
    def pack(cls, endpoints: Sequence[Endpoint]) -> EndpointBatch:
        return cls(
            count=len(endpoints),
            lines="\n".join(f"{e.ip} {e.port} {e.sni or '-'} {e.host}" for e in endpoints),
        )

    def endpoints(self) -> list[Endpoint]:
        found = []
        for line in self.lines.splitlines():
            ip, port, sni, host = line.split(" ", 3)
            found.append(Endpoint(host, ip, int(port), None if sni == "-" else sni))
        return found


class BatchSummary(BaseModel):
    scanned: int = 0
    answered: int = 0
    failed: int = 0
    certificates: int = 0
    new_certificates: int = 0
    unreadable: int = 0
    errors: list[str] = Field(default_factory=list)  # a sample of distinct reasons


class DiscoveryPlan(BaseModel):
    run_id: int
    bot_id: int
    batches: list[EndpointBatch]
    unresolved: dict[str, str]
    options: ScanOptions


class DiscoverySummary(BaseModel):
    """What a discover-endpoints run did; the same numbers are kept on its `discovery_runs` row."""

    run_id: int
    endpoints: int
    answered: int
    failed: int
    certificates_new: int
    unresolved: dict[str, str]
    failed_batches: int = 0


class FileDiscoverySummary(BaseModel):
    run_id: int
    server_id: int
    files: int
    certificates: int
    new_certificates: int
    missing: int
    skipped: list[str]
    errors: list[str]


def retry_when_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """A locked or restarting database, or a scan process that died (killed for memory, say), is worth
    another try; a bug is not. A plain function, as Prefect needs."""
    try:
        state.result()
    except (OperationalError, ScanProcessError):
        return True
    except Exception:
        return False
    return False


# --- planning (in the flow: cheap, and a task would cost more than it does) ------------------------------------


def discovery_bot(session: Session, bot_id: int | None) -> Bot:
    """The bot that runs the scan: the one named, else the local bot. It must be allowed to discover."""
    if bot_id is None:
        bot = session.scalar(select(Bot).where(Bot.name == LOCAL_BOT_NAME))
        if bot is None:
            raise DiscoveryError("no bot given and the local bot does not exist; run `certfleet up` once or name a bot")
    else:
        found = session.get(Bot, bot_id)
        if found is None:
            raise DiscoveryError(f"bot {bot_id} does not exist")
        bot = found
    if bot.purpose is BotPurpose.PROVISIONING:
        raise DiscoveryError(
            f"bot {bot.name!r} only provisions; set its purpose to Discovery (or Discovery and Provisioning) "
            "or run discovery with another bot"
        )
    if bot.status in (BotStatus.STOPPED, BotStatus.INACTIVE):
        raise DiscoveryError(f"bot {bot.name!r} is {bot.status.value}; start it before discovering with it")
    return bot


def registered_endpoints(session: Session) -> list[str]:
    """Without explicit targets, a run scans the registered servers on their ports."""
    entries = []
    for server in session.scalars(select(Server).order_by(Server.id)):
        host = f"[{server.host}]" if ":" in server.host else server.host
        entries += [f"{host}:{port}" for port in server.ports or []]
    return entries


def plan_discovery(
    targets: list[str] | None,
    ports: str | list[int],
    bot_id: int | None,
    options: ScanOptions,
    *,
    flow_run_id: str | None,
    workers: int,
    batch_size: int = MAX_BATCH,
) -> DiscoveryPlan:
    with session_scope() as s:
        bot = discovery_bot(s, bot_id)
        if batch_size < 1:
            raise DiscoveryError(f"batch size {batch_size} must be at least 1")
        chosen = list(targets) if targets is not None else registered_endpoints(s)
        if targets is None and not chosen:
            # A scheduled run on an install without servers yet: nothing to do is not a failure.
            expansion = Expansion([], {})
            notes = ["no targets given and no registered server has a port: nothing was scanned"]
        else:
            try:
                expansion = expand(chosen, ports)
            except TargetError as exc:
                raise DiscoveryError(str(exc)) from None
            notes = list(expansion.unresolved.values())
        endpoints = expansion.endpoints
        run = DiscoveryRun(
            kind="tls",
            bot_id=bot.id,
            flow_run_id=flow_run_id,
            scope={
                "targets": chosen[:200],
                "ports": ports if isinstance(ports, str) else list(ports),
                **dataclasses.asdict(options),
            },
            endpoints_total=len(endpoints),
            errors=notes[:MAX_ERRORS_KEPT],
        )
        s.add(run)
        s.flush()
        repo.audit(
            s, actor=f"bot:{bot.name}", action="discover-endpoints", obj=run, detail=f"{len(endpoints)} endpoints"
        )
        run_id, chosen_bot = run.id, bot.id
    count = max(1, math.ceil(len(endpoints) / max(1, batch_size)))
    if count < workers:  # keep every worker busy when the endpoints allow it
        count = max(1, min(workers, len(endpoints) // MIN_BATCH))
    size = math.ceil(len(endpoints) / count) if endpoints else 0
    batches = [EndpointBatch.pack(endpoints[i : i + size]) for i in range(0, len(endpoints), size)] if size else []
    return DiscoveryPlan(
        run_id=run_id, bot_id=chosen_bot, batches=batches, unresolved=expansion.unresolved, options=options
    )


def finish_run(run_id: int, status: str, errors: Sequence[str] = ()) -> None:
    with session_scope() as s:
        run = repo.get(s, DiscoveryRun, run_id)
        run.status = status
        run.finished_at = utcnow()
        if errors:
            run.errors = [*(run.errors or []), *errors][:MAX_ERRORS_KEPT]


# --- tasks ---------------------------------------------------------------------------------------------------


@task(
    cache_policy=NO_CACHE,
    task_run_name="scan-batch-{number}-of-run-{run_id}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_when_transient,
)
def scan_batch(run_id: int, number: int, bot_id: int, batch: EndpointBatch, options: ScanOptions) -> BatchSummary:
    """Handshake with every endpoint of the batch (in a scan process) and record what was seen meanwhile.

    Results are written in chunks (one bulk transaction each) by a recorder thread. Re-running is safe:
    locations are upserted and certificates are found by thumbprint.
    """
    recorder = BackgroundRecorder(bot_id=bot_id, run_id=run_id, chunk=RECORD_CHUNK)
    reasons: set[str] = set()

    def hand_over(result: ScanResult) -> None:
        endpoint = result.endpoint
        if result.chain:
            recorder.add(
                Sighting(
                    result.chain,
                    "tls",
                    endpoint.locator,
                    host=endpoint.host,
                    port=endpoint.port,
                    scan_ip=endpoint.ip,
                    scan_port=endpoint.port,
                    sni=endpoint.sni or "",
                )
            )
        else:
            reasons.add(result.error or "no certificate")
            recorder.add(Miss(endpoint.locator, result.error or "no certificate"))

    try:
        results = scan_in_process(batch.endpoints(), options, hand_over)
    finally:
        recorded = recorder.close()
    answered = recorded.sightings - recorded.unreadable
    with session_scope() as s:
        s.execute(
            update(DiscoveryRun)
            .where(DiscoveryRun.id == run_id)
            .values(
                endpoints_scanned=DiscoveryRun.endpoints_scanned + len(results),
                endpoints_answered=DiscoveryRun.endpoints_answered + answered,
                certificates_found=DiscoveryRun.certificates_found + recorded.certificates,
                certificates_new=DiscoveryRun.certificates_new + recorded.new_certificates,
            )
        )
    return BatchSummary(
        scanned=len(results),
        answered=answered,
        failed=len(results) - answered,
        certificates=recorded.certificates,
        new_certificates=recorded.new_certificates,
        unreadable=recorded.unreadable,
        errors=sorted(reasons | set(recorded.errors))[:10],
    )


def server_folders(server: Server, extra_paths: Sequence[str]) -> list[str]:
    """Key store folder, installation path, the folders of its deployment targets' files, and extra paths."""
    folders = [server.keystore_folder, server.app_path, *extra_paths]
    for folder in extra_paths:  # flow parameters may come straight from the Prefect UI: the same path rule
        try:
            check_path(folder, "folder", directory=True, windows=server.connection is ServerConnection.SMB)
        except PathRefused as exc:
            raise DiscoveryError(str(exc)) from None
    return list(dict.fromkeys(f.rstrip("/") or "/" for f in folders if f))


@task(
    cache_policy=NO_CACHE,
    task_run_name="scan-files-server-{server_id}-run-{run_id}",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_when_transient,
)
def scan_server_files(run_id: int, server_id: int, bot_id: int | None, extra_paths: list[str]) -> FileDiscoverySummary:
    """One server, one connection: list and read its certificate files, record them, mark the ones gone."""
    with session_scope() as s:
        server = repo.get(s, Server, server_id)
        target_dirs = [
            path.rsplit("/", 1)[0]
            for path in s.scalars(
                select(DeploymentTarget.cert_path).where(
                    DeploymentTarget.server_id == server_id, DeploymentTarget.cert_path.is_not(None)
                )
            )
            if path and "/" in path
        ]
        folders = server_folders(server, [*target_dirs, *extra_paths])
        host = server.host
        owner = bot_id if bot_id is not None else server.bot_id
        if not folders:
            raise ConnectorError(
                f"server {server.description} ({host}) has no key store folder or installation path to scan; "
                "set one or pass paths"
            )
        transport = build_transport(server)
    scan = scan_folders(transport, folders)
    sightings = [
        Sighting(
            tuple(c.public_bytes(serialization.Encoding.DER) for c in found.chain),
            "file",
            f"file:{server_id}:{found.locator_suffix}",
            host=host,
            server_id=server_id,
            path=found.locator_suffix,
        )
        for found in scan.chains
    ]
    seen = {s.locator for s in sightings}
    with session_scope() as s:  # files recorded before under these folders and no longer found
        known = s.scalars(
            select(CertificateLocation.locator).where(
                CertificateLocation.server_id == server_id,
                CertificateLocation.kind == "file",
                CertificateLocation.last_status == LocationStatus.ACTIVE,
            )
        ).all()
    gone = [
        Miss(loc, "the file is gone or no longer holds this certificate", LocationStatus.MISSING)
        for loc in known
        if loc not in seen and any(loc.split(":", 2)[2].startswith(f.rstrip("/") + "/") for f in scan.listed)
    ]
    recorded = record(sightings, gone, now=utcnow(), bot_id=owner, run_id=run_id)
    with session_scope() as s:
        s.execute(
            update(DiscoveryRun)
            .where(DiscoveryRun.id == run_id)
            .values(
                endpoints_scanned=DiscoveryRun.endpoints_scanned + len(scan.files_seen),
                endpoints_answered=DiscoveryRun.endpoints_answered + len(sightings) - recorded.unreadable,
                certificates_found=DiscoveryRun.certificates_found + recorded.certificates,
                certificates_new=DiscoveryRun.certificates_new + recorded.new_certificates,
            )
        )
    return FileDiscoverySummary(
        run_id=run_id,
        server_id=server_id,
        files=len(scan.files_seen),
        certificates=recorded.certificates,
        new_certificates=recorded.new_certificates,
        missing=len(gone),
        skipped=scan.skipped[:MAX_ERRORS_KEPT],
        errors=[*scan.errors, *recorded.errors][:MAX_ERRORS_KEPT],
    )
