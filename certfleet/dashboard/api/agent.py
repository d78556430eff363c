"""/api/v1/agent: what a bot's flow runs read and record, with the bot's own token (`Authorization: Bearer cfb_...`).

Each route is a thin adapter over `DbJobStore(bot_id)`, which answers only for servers mapped to the calling
bot (403 otherwise). The bundle and the server credentials leave certfleet only through these routes, over the
authenticated connection, to the bot that deploys them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException
from pydantic import BaseModel

from certfleet.bots.auth import BotTokenRefused, bearer_token, bot_for_token
from certfleet.connectors.errors import ConnectorError
from certfleet.dashboard.api.ids import RowId
from certfleet.jobs.db_store import DbJobStore, NotYourServer
from certfleet.jobs.models import BundleOut, RestorePlan, ServerAccess, StaleBackup, TargetJob
from certfleet.models.db import session_scope
from certfleet.models.orm import DeploymentStatus, StepState
from certfleet.servers.service import CheckOutcome, ConnectivityResult

router = APIRouter(prefix="/agent", tags=["Bot agent"])


def AgentRefusal(status: int, detail: str) -> HTTPException:
    return HTTPException(status, detail, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


def bot_store(authorization: Annotated[str, Header()] = "") -> DbJobStore:
    with session_scope() as s:
        try:
            bot = bot_for_token(s, bearer_token(authorization))
        except BotTokenRefused as exc:
            raise AgentRefusal(401, str(exc)) from None
        return DbJobStore(bot_id=bot.id)


Store = Annotated[DbJobStore, Depends(bot_store)]


def _guard(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Domain refusals become 403 (not this bot's server) or 409 (the job cannot go on, with the reason)."""
    try:
        return call(*args, **kwargs)
    except NotYourServer as exc:
        raise AgentRefusal(403, str(exc)) from None
    except ConnectorError as exc:
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
    flow_run_id: str | None = None


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


@router.post("/deployments/{deployment_id}/steps", status_code=201, summary="Journal a change before making it")
def journal(deployment_id: RowId, body: StepIn, store: Store) -> dict[str, int]:
    return {"id": _guard(store.journal, deployment_id, body.action, body.path, body.backup_path)}


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
def close(deployment_id: RowId, body: CloseIn, store: Store) -> dict[str, bool]:
    if body.status not in (DeploymentStatus.ROLLED_BACK, DeploymentStatus.FAILED):
        raise AgentRefusal(422, "status must be Rolled Back or Failed (Deployed is reported by /finish)")
    _guard(store.close, deployment_id, body.status, body.reason)
    return {"ok": True}


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
