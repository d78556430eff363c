"""/api/v1/bots: the list, export, create (token in the answer only), configure, stop/start, tokens, delete,
and the heartbeat bots send with their own token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import Field

from certfleet import fields
from certfleet.bots import queue_state
from certfleet.bots import service as bots
from certfleet.bots.auth import BotTokenRefused, bearer_token
from certfleet.bots.checkin import check_in
from certfleet.dashboard.api.ids import RowId
from certfleet.dashboard.deps import DbSession, Operator, Viewer
from certfleet.dashboard.lists import add_list_api
from certfleet.dashboard.services.bots import BOTS
from certfleet.deployments.api import configured_api_url, prefect_auth_string
from certfleet.deployments.names import BOT_POOL, bot_queue
from certfleet.input_model import InputModel
from certfleet.models import repo
from certfleet.models.orm import Bot, BotPurpose, BotStatus
from certfleet.settings import get_settings

router = APIRouter(tags=["Bots"])
add_list_api(router, BOTS, tag="Bots")


class BotIn(InputModel):
    """Stored exactly as sent, or refused with 422 naming the field and the rule (`certfleet.fields`)."""

    name: Annotated[str, fields.Name(120)]
    ip_address: Annotated[str, fields.Host(64)] | None = None
    description: Annotated[str, fields.Description(bots.DESCRIPTION_MAX)] | None = None
    purpose: str = BotPurpose.PROVISIONING.value
    group: Annotated[str, fields.Name(120)] | None = None
    os: Annotated[str, fields.Name(80)] | None = None
    tags: Annotated[list[str], fields.TagList()] = Field(default_factory=list)


def bot_json(bot: Bot) -> dict[str, Any]:
    return {
        "id": bot.id,
        "name": bot.name,
        "ip_address": bot.ip_address,
        "description": bot.description,
        "status": bot.status.value,
        "last_update": bot.last_update.isoformat() if bot.last_update else None,
        "version": bot.version,
        "purpose": bot.purpose.value,
        "group": bot.group_name,
        "token": f"{bot.token_prefix}…" if bot.token_prefix else None,
        "os": bot.os,
        "work_queue": bot.work_queue,
        "created_at": bot.created_at.isoformat(),
        "created_by": bot.created_by,
        "tags": bot.tags,
    }


def _fields(body: BotIn) -> bots.BotFields:
    return bots.BotFields(**body.model_dump())


@router.get("/bots/{bot_id}", summary="One bot")
def get_bot(bot_id: RowId, db: DbSession, who: Viewer) -> dict[str, Any]:
    return bot_json(repo.get(db, Bot, bot_id))


@router.post("/bots", status_code=201, summary="Create a bot; its token is in this answer only")
def create_bot(body: BotIn, db: DbSession, who: Operator) -> dict[str, Any]:
    made = bots.create_bot(db, _fields(body), who.username)
    return {**bot_json(made.bot), "token": made.token}


@router.put("/bots/{bot_id}", summary="Configure a bot (name, purpose, group, metadata)")
def configure_bot(bot_id: RowId, body: BotIn, db: DbSession, who: Operator) -> dict[str, Any]:
    return bot_json(bots.configure_bot(db, bot_id, _fields(body), who.username))


@router.post("/bots/{bot_id}/stop", summary="Stop (pause) a bot")
def stop_bot(bot_id: RowId, db: DbSession, who: Operator) -> dict[str, Any]:
    return bot_json(bots.set_running(db, bot_id, False, who.username))


@router.post("/bots/{bot_id}/start", summary="Start a stopped bot")
def start_bot(bot_id: RowId, db: DbSession, who: Operator) -> dict[str, Any]:
    return bot_json(bots.set_running(db, bot_id, True, who.username))


@router.post("/bots/{bot_id}/token", summary="Replace a bot's token; the new one is in this answer only")
def regenerate_token(bot_id: RowId, db: DbSession, who: Operator) -> dict[str, Any]:
    made = bots.new_token(db, bot_id, who.username)
    return {**bot_json(made.bot), "token": made.token}


@router.delete("/bots/{bot_id}/token", summary="Revoke a bot's token (the bot can no longer check in)")
def revoke_token(bot_id: RowId, db: DbSession, who: Operator) -> dict[str, Any]:
    return bot_json(bots.revoke_token(db, bot_id, who.username))


@router.delete("/bots/{bot_id}", summary="Delete a bot (its servers and certificates become unmapped)")
def delete_bot(bot_id: RowId, db: DbSession, who: Operator) -> dict[str, Any]:
    return {"deleted": bot_id, "detail": bots.delete_bot(db, bot_id, who.username)}


class HeartbeatIn(InputModel):
    version: str | None = None
    ip_address: str | None = None
    os: str | None = None


@router.post(
    "/bots/heartbeat",
    summary="A bot checks in (Authorization: Bearer <bot token>) and receives its configuration",
    description="Records Last Bot Update, version, OS and IP address. The answer tells the bot agent its status, "
    "its Prefect work pool and queue, and how to reach the Prefect API (URL and auth string: sent only to an "
    "authenticated bot).",
    responses={401: {"description": "unknown, revoked or replaced bot token"}},
)
def heartbeat(
    db: DbSession,
    body: HeartbeatIn | None = None,
    authorization: Annotated[str, Header()] = "",
) -> Any:
    try:
        bot = check_in(
            db,
            bearer_token(authorization),
            version=body.version if body else None,
            ip_address=body.ip_address if body else None,
            os=body.os if body else None,
        )
    except BotTokenRefused as exc:
        return JSONResponse({"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    # certfleet, not the agent, writes the queue: with the bot's row locked, so never from a stale status.
    queue = queue_state.apply(configured_api_url(), prefect_auth_string(), bot)
    settings = get_settings()
    return {
        "id": bot.id,
        "name": bot.name,
        "status": bot.status.value,
        "work_pool": BOT_POOL,
        "work_queue": bot_queue(bot.id),
        "paused": bot.status is BotStatus.STOPPED,
        "queue": queue.detail,
        "prefect_api_url": settings.prefect_public_url or configured_api_url(),
        "prefect_auth_string": prefect_auth_string(),
        "heartbeat_seconds": settings.bot_heartbeat_seconds,
        "last_update": bot.last_update.isoformat() if bot.last_update else None,
    }
