"""Discovery tasks: scan a batch of TLS endpoints and record it; scan one server's certificate files.

Sized by the Prefect notes: a task costs tens of milliseconds, so a task is a batch of endpoints (hundreds
to a couple of thousand, one asyncio loop, one bulk transaction) or one server (one connection for all of
its files), never one endpoint or one file. The batch travels as packed text, so Prefect does not walk
thousands of objects to look for futures in the task's parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization
from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError

from certfleet.connectors.errors import ConnectorError, TransientConnectorError
from certfleet.discovery.scan_process import ScanProcessError, scan_in_process
from certfleet.discovery.scanner import ScanOptions, ScanResult
from certfleet.discovery.targets import Endpoint, Expansion, TargetError, expand
from certfleet.inventory.files import scan_folders
from certfleet.inventory.record import BackgroundRecorder, Miss, Sighting
from certfleet.jobs.discovery import (
    MAX_ERRORS_KEPT,
    DiscoveryError,
    RunCounts,
    current_discovery_store,
    discovery_bot,
)
from certfleet.jobs.store import current_store
from certfleet.models.orm import LocationStatus
from certfleet.tasks.build import build_transport

__all__ = ["DiscoveryError", "discovery_bot"]  # where the dashboard and the tests find them

MAX_BATCH = 2000
MIN_BATCH = 100  # below this a second task costs more than it saves
RECORD_CHUNK = 100  # results per write transaction while a batch scans: small, so recording starts early


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
    """A locked or restarting database, certfleet's API not answering, or a scan process that died (killed for
    memory, say), is worth another try; a bug is not. A plain function, as Prefect needs."""
    try:
        state.result()
    except (OperationalError, ScanProcessError, TransientConnectorError):
        return True
    except Exception:
        return False
    return False


def plan_batches(endpoints: Sequence[Endpoint], *, workers: int, batch_size: int = MAX_BATCH) -> list[EndpointBatch]:
    """Batches of at most `batch_size`, and at least one per worker when there are endpoints enough."""
    if batch_size < 1:
        raise DiscoveryError(f"batch size {batch_size} must be at least 1")
    count = max(1, math.ceil(len(endpoints) / batch_size))
    if count < workers:  # keep every worker busy when the endpoints allow it
        count = max(1, min(workers, len(endpoints) // MIN_BATCH))
    size = math.ceil(len(endpoints) / count) if endpoints else 0
    return [EndpointBatch.pack(endpoints[i : i + size]) for i in range(0, len(endpoints), size)] if size else []


def expand_targets(targets: list[str], ports: str | list[int], *, explicit: bool) -> Expansion:
    """Resolve and expand on the bot that scans: names resolve inside its network."""
    if not explicit and not targets:
        return Expansion([], {})  # a scheduled run of a bot without servers: nothing to do is not a failure
    try:
        return expand(targets, ports)
    except TargetError as exc:
        raise DiscoveryError(str(exc)) from None


# --- tasks ---------------------------------------------------------------------------------------------------


@task(
    cache_policy=NO_CACHE,
    task_run_name="scan-batch-{number}-of-run-{run_id}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_when_transient,
)
def scan_batch(run_id: int, number: int, batch: EndpointBatch, options: ScanOptions) -> BatchSummary:
    """Handshake with every endpoint of the batch (in a scan process) and record what was seen meanwhile.

    Results are recorded in chunks (one bulk transaction or one API call each) by a recorder thread.
    Re-running is safe: locations are upserted and certificates are found by thumbprint.
    """
    store = current_discovery_store()
    recorder = BackgroundRecorder(lambda seen, missed: store.record(run_id, seen, missed), chunk=RECORD_CHUNK)
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
    store.add_counts(
        run_id,
        RunCounts(
            scanned=len(results),
            answered=answered,
            certificates=recorded.certificates,
            new_certificates=recorded.new_certificates,
        ),
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


def _inside(path: str, folder: str) -> bool:
    """`path` lies under `folder` (a Windows folder of a server reached over SMB separates with a backslash)."""
    sep = "\\" if "\\" in folder or folder[1:3] == ":\\" else "/"
    return path.startswith(folder.rstrip(sep) + sep)


@task(
    cache_policy=NO_CACHE,
    task_run_name="scan-files-server-{server_id}-run-{run_id}",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_when_transient,
)
def scan_server_files(run_id: int, server_id: int, extra_paths: list[str]) -> FileDiscoverySummary:
    """One server, one connection: list and read its certificate files, record them, mark the ones gone."""
    store = current_discovery_store()
    job = store.file_scan_job(run_id, server_id, extra_paths)
    server = job.server
    if not job.folders:
        raise ConnectorError(
            f"server {server.description} ({server.host}) has no key store folder or installation path to scan; "
            "set one or pass paths"
        )
    scan = scan_folders(build_transport(server, current_store()), job.folders)
    sightings = [
        Sighting(
            tuple(c.public_bytes(serialization.Encoding.DER) for c in found.chain),
            "file",
            f"file:{server_id}:{found.locator_suffix}",
            host=server.host,
            server_id=server_id,
            path=found.locator_suffix,
        )
        for found in scan.chains
    ]
    seen = {s.locator for s in sightings}
    gone = [  # files recorded before under these folders and no longer found
        Miss(loc, "the file is gone or no longer holds this certificate", LocationStatus.MISSING)
        for loc in job.known_files
        if loc not in seen and any(_inside(loc.split(":", 2)[2], f) for f in scan.listed)
    ]
    recorded = store.record(run_id, sightings, gone)
    store.add_counts(
        run_id,
        RunCounts(
            scanned=len(scan.files_seen),
            answered=len(sightings) - recorded.unreadable,
            certificates=recorded.certificates,
            new_certificates=recorded.new_certificates,
        ),
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
