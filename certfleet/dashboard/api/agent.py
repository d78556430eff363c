"""/api/v1/agent: what a bot's flow runs read and record, with the bot's own token (`Authorization: Bearer cfb_...`).

Each route is a thin adapter over `DbGroupStore(bot_id)` (a `DbJobStore` that also journals a group of deployments
on one server in one call per step), which answers only for servers mapped to the calling bot (403 otherwise).
The bundle and the server credentials leave certfleet only through these routes, over the authenticated
connection, to the bot that deploys them.
"""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import MaxLen
from fastapi import APIRouter, Depends, Header, HTTPException
from pydantic import BaseModel, Field

from certfleet.bots.auth import BotTokenRefused, bearer_token, bot_for_token
from certfleet.connectors.errors import ConnectorError
from certfleet.dashboard.api.ids import RowId
from certfleet.discovery.scanner import ScanOptions
from certfleet.inventory.record import RecordSummary
from certfleet.jobs.db_group import DbGroupStore
from certfleet.jobs.db_store import NotYourServer
from certfleet.jobs.discovery import (
    DbDiscoveryStore,
    DiscoveryError,
    FileScanJob,
    MissWire,
    OpenedRun,
    RunCounts,
    SightingWire,
)
from certfleet.jobs.models import BundleOut, JournalStep, Opened, RestorePlan, ServerAccess, StaleBackup, TargetJob
from certfleet.models.db import session_scope
from certfleet.models.orm import DeploymentStatus, StepState
from certfleet.servers.service import CheckOutcome, ConnectivityResult

router = APIRouter(prefix="/agent", tags=["Bot agent"])


def AgentRefusal(status: int, detail: str) -> HTTPException:
    return HTTPException(status, detail, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


def calling_bot(authorization: Annotated[str, Header()] = "") -> int:
    with session_scope() as s:
        try:
            return bot_for_token(s, bearer_token(authorization)).id
        except BotTokenRefused as exc:
            raise AgentRefusal(401, str(exc)) from None


def bot_store(bot_id: Annotated[int, Depends(calling_bot)]) -> DbGroupStore:
    return DbGroupStore(bot_id=bot_id)


def bot_discovery_store(bot_id: Annotated[int, Depends(calling_bot)]) -> DbDiscoveryStore:
    return DbDiscoveryStore(bot_id=bot_id)


Store = Annotated[DbGroupStore, Depends(bot_store)]
Discovery = Annotated[DbDiscoveryStore, Depends(bot_discovery_store)]


def _guard(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Domain refusals become 403 (not this bot's server) or 409 (the job cannot go on, with the reason)."""
    try:
        return call(*args, **kwargs)
    except NotYourServer as exc:
        raise AgentRefusal(403, str(exc)) from None
    except (ConnectorError, DiscoveryError) as exc:
        raise AgentRefusal(409, str(exc)) from None


@router.get("/certificates/{certificate_id}/targets", summary="The certificate's targets on this bot's servers")
def certificate_targets(certificate_id: RowId, store: Store) -> list[int]:
    return list(_guard(store.certificate_targets, certificate_id))


@router.get("/certificates/{certificate_id}/targets/{target_id}/job", summary="A target and its server")
def target_job(certificate_id: RowId, target_id: RowId, store: Store) -> TargetJob:
    return _guard(store.target_job, certificate_id, target_id)  # type: ignore[no-any-return]


class OpenDeployment(BaseModel):
    certificate_id: int
    target_id: int
    previous_serial: str | None = None
    flow_run_id: str | None = Field(default=None, max_length=40)  # the column holds 40 (a Prefect UUID: 36)


@router.post("/deployments", status_code=201, summary="Start a deployment to a target")
def open_deployment(body: OpenDeployment, store: Store) -> dict[str, int]:
    deployment_id = _guard(
        store.open_deployment, body.certificate_id, body.target_id, body.previous_serial, body.flow_run_id
    )
    return {"id": deployment_id}


@router.get("/deployments/{deployment_id}/job", summary="A deployment's target and server")
def deployment_job(deployment_id: RowId, store: Store) -> TargetJob:
    return _guard(store.deployment_job, deployment_id)  # type: ignore[no-any-return]


@router.get("/deployments/{deployment_id}/bundle", summary="The certificate, chain and key to install")
def bundle(deployment_id: RowId, store: Store) -> BundleOut:
    b = _guard(store.bundle, deployment_id)
    return BundleOut(leaf_pem=b.leaf_pem.decode(), chain_pem=b.chain_pem.decode(), key_pem=b.key_pem.decode())


class StepIn(BaseModel):
    action: str
    path: str | None = None
    backup_path: str | None = None
    undo: dict[str, Any] | None = None  # a change that is no file replacement: what puts it back


@router.post("/deployments/{deployment_id}/steps", status_code=201, summary="Journal a change before making it")
def journal(deployment_id: RowId, body: StepIn, store: Store) -> dict[str, int]:
    return {"id": _guard(store.journal, deployment_id, body.action, body.path, body.backup_path, body.undo)}


class StepUpdate(BaseModel):
    state: StepState | None = None
    existed_before: bool | None = None
    detail: str | None = None


@router.patch("/steps/{step_id}", summary="Record how a journalled change went")
def update_step(step_id: RowId, body: StepUpdate, store: Store) -> dict[str, bool]:
    _guard(store.update_step, step_id, state=body.state, existed_before=body.existed_before, detail=body.detail)
    return {"ok": True}


@router.post("/deployments/{deployment_id}/finish", summary="The new certificate is served: Deployed")
def finish(deployment_id: RowId, store: Store) -> list[StaleBackup]:
    return list(_guard(store.finish, deployment_id))


@router.post("/deployments/{deployment_id}/forget-backups", summary="Older backups were removed from the server")
def forget_backups(deployment_id: RowId, body: list[StaleBackup], store: Store) -> dict[str, bool]:
    _guard(store.forget_backups, deployment_id, body)
    return {"ok": True}


@router.get("/deployments/{deployment_id}/restore-plan", summary="What a rollback must undo")
def restore_plan(deployment_id: RowId, store: Store) -> RestorePlan:
    return _guard(store.restore_plan, deployment_id)  # type: ignore[no-any-return]


class CloseIn(BaseModel):
    status: DeploymentStatus
    reason: str


@router.post("/deployments/{deployment_id}/close", summary="End a deployment that was rolled back or failed")
def close(deployment_id: RowId, body: CloseIn, store: Store) -> list[StaleBackup]:
    if body.status not in (DeploymentStatus.ROLLED_BACK, DeploymentStatus.FAILED):
        raise AgentRefusal(422, "status must be Rolled Back or Failed (Deployed is reported by /finish)")
    return list(_guard(store.close, deployment_id, body.status, body.reason))


class HostKeyIn(BaseModel):
    key_line: str


@router.post("/servers/{server_id}/host-key", summary="Pin the SSH host key seen on first contact")
def pin_host_key(server_id: RowId, body: HostKeyIn, store: Store) -> dict[str, bool]:
    _guard(store.pin_host_key, server_id, body.key_line)
    return {"ok": True}


@router.get("/servers/{server_id}/access", summary="How to reach a server (credentials included), for its check")
def server_access(server_id: RowId, store: Store) -> ServerAccess:
    return _guard(store.server_access, server_id)  # type: ignore[no-any-return]


class CheckIn(BaseModel):
    actor: str
    outcome: CheckOutcome


@router.post("/servers/{server_id}/check", summary="Record what a connectivity check found")
def record_check(server_id: RowId, body: CheckIn, store: Store) -> ConnectivityResult:
    return _guard(store.record_check, server_id, body.actor, body.outcome)  # type: ignore[no-any-return]


# --- a group of deployments on one server (rotate-on-bot): each step one call for the whole group -------------

GROUP_MAX = 1000  # certificates or steps in one call; a rotation's group is 25


class GroupTargetsIn(BaseModel):
    server_id: RowId
    certificate_ids: list[RowId] = Field(max_length=GROUP_MAX)


@router.post("/groups/targets", summary="A group: each certificate's job whose only target is on the server")
def group_targets(body: GroupTargetsIn, store: Store) -> dict[int, TargetJob]:
    return _guard(store.single_targets, body.server_id, body.certificate_ids)  # type: ignore[no-any-return]


class ServedIn(BaseModel):
    certificate_id: RowId
    target_id: RowId
    previous_serial: str | None = Field(default=None, max_length=80)


class GroupOpenIn(BaseModel):
    served: list[ServedIn] = Field(max_length=GROUP_MAX)
    flow_run_id: str | None = Field(default=None, max_length=40)  # the column holds 40 (a Prefect UUID: 36)


class OpenedOut(BaseModel):
    """A deployment opened (its job and the files to install), or the refusal said on the certificate."""

    certificate_id: int
    job: TargetJob | None = None
    bundle: BundleOut | None = None
    refusal: str | None = None


def _opened_out(certificate_id: int, result: Opened | str) -> OpenedOut:
    if isinstance(result, str):
        return OpenedOut(certificate_id=certificate_id, refusal=result)
    b = result.bundle
    files = BundleOut(leaf_pem=b.leaf_pem.decode(), chain_pem=b.chain_pem.decode(), key_pem=b.key_pem.decode())
    return OpenedOut(certificate_id=certificate_id, job=result.job, bundle=files)


@router.post("/groups/open", summary="A group: open a deployment of each certificate to its target")
def group_open(body: GroupOpenIn, store: Store) -> list[OpenedOut]:
    # The jobs are read here (each target checked to be the certificate's, on this bot's server), not taken from
    # the bot.
    served = {
        row.certificate_id: (_guard(store.target_job, row.certificate_id, row.target_id), row.previous_serial)
        for row in body.served
    }
    opened = _guard(store.open_group, served, body.flow_run_id)
    return [_opened_out(certificate_id, result) for certificate_id, result in opened.items()]


@router.post("/groups/steps", status_code=201, summary="A group: journal its changes before making them")
def group_journal(body: Annotated[list[JournalStep], MaxLen(GROUP_MAX)], store: Store) -> list[int]:
    return list(_guard(store.journal_steps, body))


class GroupStepsUpdate(BaseModel):
    step_ids: list[RowId] = Field(max_length=GROUP_MAX)
    state: StepState | None = None
    existed_before: dict[int, bool] | None = None
    detail: str | None = None


@router.post("/groups/steps/update", summary="A group: record how its journalled changes went")
def group_update_steps(body: GroupStepsUpdate, store: Store) -> dict[str, bool]:
    if body.existed_before is not None and set(body.existed_before) != set(body.step_ids):
        raise AgentRefusal(422, "existed_before must name exactly the steps of step_ids")
    _guard(store.update_steps, body.step_ids, state=body.state, existed_before=body.existed_before, detail=body.detail)
    return {"ok": True}


class GroupFinishIn(BaseModel):
    """Deployments of a group (finish, servers, restore plans)."""

    deployment_ids: list[RowId] = Field(max_length=GROUP_MAX)


@router.post("/groups/finish", summary="A group: its proven deployments Deployed")
def group_finish(body: GroupFinishIn, store: Store) -> dict[int, list[StaleBackup]]:
    return dict(_guard(store.finish_group, body.deployment_ids))


@router.post("/groups/forget-backups", summary="A group: older backups were removed from the server")
def group_forget(body: dict[int, list[StaleBackup]], store: Store) -> dict[str, bool]:
    _guard(store.forget_group, body)
    return {"ok": True}


@router.post("/groups/servers", summary="A group: the server of each deployment (to roll back per server)")
def group_servers(body: GroupFinishIn, store: Store) -> dict[int, int]:
    return dict(_guard(store.deployment_servers, body.deployment_ids))


@router.post("/groups/restore-plans", summary="A group: what each deployment's rollback must undo")
def group_restore_plans(body: GroupFinishIn, store: Store) -> dict[int, RestorePlan]:
    return dict(_guard(store.restore_plans, body.deployment_ids))


@router.post("/groups/close", summary="A group: end deployments that were rolled back or failed")
def group_close(body: Annotated[dict[int, CloseIn], MaxLen(GROUP_MAX)], store: Store) -> dict[int, list[StaleBackup]]:
    if any(c.status not in (DeploymentStatus.ROLLED_BACK, DeploymentStatus.FAILED) for c in body.values()):
        raise AgentRefusal(422, "status must be Rolled Back or Failed (Deployed is reported by /groups/finish)")
    return dict(_guard(store.close_group, {d: (c.status, c.reason) for d, c in body.items()}))


# --- discovery: the runs a bot carries out in its network, recorded into its own runs ------------------------


class EndpointRunIn(BaseModel):
    bot_id: int | None = None
    targets: list[str] | None = None
    ports: str | list[int] = "443"
    options: dict[str, float | int] = Field(default_factory=dict)
    flow_run_id: str | None = Field(default=None, max_length=40)  # the column holds 40 (a Prefect UUID: 36)


@router.post("/discovery/endpoint-runs", status_code=201, summary="Open a network scan run as this bot")
def open_endpoint_run(body: EndpointRunIn, store: Discovery) -> OpenedRun:
    try:
        options = ScanOptions(**body.options)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise AgentRefusal(422, f"options: {exc}") from None
    return _guard(store.open_endpoint_run, body.bot_id, body.targets, body.ports, options, body.flow_run_id)  # type: ignore[no-any-return]


class PlanIn(BaseModel):
    endpoints_total: int = Field(ge=0)
    notes: list[str] = []


@router.post("/discovery/runs/{run_id}/plan", summary="How many endpoints the bot expanded the targets to")
def set_plan(run_id: RowId, body: PlanIn, store: Discovery) -> dict[str, bool]:
    _guard(store.set_plan, run_id, body.endpoints_total, body.notes)
    return {"ok": True}


class FilesRunIn(BaseModel):
    bot_id: int | None = None
    server_ids: list[int] | None = None
    extra_paths: list[str] = []
    flow_run_id: str | None = Field(default=None, max_length=40)  # the column holds 40 (a Prefect UUID: 36)


@router.post("/discovery/file-runs", status_code=201, summary="Open a file scan run of this bot's servers")
def open_files_run(body: FilesRunIn, store: Discovery) -> OpenedRun:
    return _guard(store.open_files_run, body.bot_id, body.server_ids, body.extra_paths, body.flow_run_id)  # type: ignore[no-any-return]


class FileJobIn(BaseModel):
    server_id: int
    extra_paths: list[str] = []


@router.post("/discovery/runs/{run_id}/file-job", summary="A server's folders and credentials, for its file scan")
def file_scan_job(run_id: RowId, body: FileJobIn, store: Discovery) -> FileScanJob:
    return _guard(store.file_scan_job, run_id, body.server_id, body.extra_paths)  # type: ignore[no-any-return]


class RecordIn(BaseModel):
    sightings: list[SightingWire] = Field(default_factory=list, max_length=500)
    misses: list[MissWire] = Field(default_factory=list, max_length=5000)


@router.post("/discovery/runs/{run_id}/record", summary="Record what the scan saw into the inventory")
def record(run_id: RowId, body: RecordIn, store: Discovery) -> RecordSummary:
    sightings = [x.sighting() for x in body.sightings]
    return _guard(store.record, run_id, sightings, [x.miss() for x in body.misses])  # type: ignore[no-any-return]


@router.post("/discovery/runs/{run_id}/counts", summary="Add a batch's counts to the run")
def add_counts(run_id: RowId, body: RunCounts, store: Discovery) -> dict[str, bool]:
    _guard(store.add_counts, run_id, body)
    return {"ok": True}


class FinishIn(BaseModel):
    status: str = Field(pattern="^(Completed|Failed)$")
    errors: list[str] = []


@router.post("/discovery/runs/{run_id}/finish", summary="End the run: Completed or Failed, with its errors")
def finish_run(run_id: RowId, body: FinishIn, store: Discovery) -> dict[str, bool]:
    _guard(store.finish, run_id, body.status, body.errors)
    return {"ok": True}
