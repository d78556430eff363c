"""/api/v1: who am I, my API tokens, my column choices."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field

from certfleet.dashboard import lists, prefs
from certfleet.dashboard.api.ids import RowId
from certfleet.dashboard.deps import DbSession, Viewer
from certfleet.dashboard.services import users
from certfleet.input_model import InputModel

router = APIRouter(tags=["Account"])


@router.get("/me", summary="The calling user")
def me(who: Viewer) -> dict[str, Any]:
    return {"id": who.user_id, "username": who.username, "role": who.role.value, "via": who.via}


class TokenIn(InputModel):
    name: Annotated[str, users.TOKEN_NAME]
    scope: str = Field(default="all", description='"all" (what your role may do) or "metrics" (only GET /metrics)')


@router.get("/tokens", summary="My API tokens (never the tokens themselves)")
def my_tokens(db: DbSession, who: Viewer) -> list[dict[str, Any]]:
    return [
        {
            "id": t.id,
            "name": t.name,
            "prefix": t.token_prefix,
            "created_at": t.created_at.isoformat(),
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
            "revoked": t.revoked_at is not None,
            "scope": t.scope,
        }
        for t in users.tokens_of(db, who.user_id)
    ]


@router.post("/tokens", status_code=201, summary="Create an API token: the token is in this answer only")
def create_token(body: TokenIn, db: DbSession, who: Viewer) -> dict[str, Any]:
    made = users.create_api_token(db, who.user_id, body.name, who.username, body.scope)
    return {"id": made.id, "name": made.name, "token": made.token, "prefix": made.prefix, "scope": body.scope}


@router.delete("/tokens/{token_id}", summary="Revoke an API token")
def revoke_token(token_id: RowId, db: DbSession, who: Viewer) -> dict[str, Any]:
    row = users.revoke_api_token(db, token_id, user_id=who.user_id, is_admin=who.has("admin"), actor=who.username)
    return {"id": row.id, "revoked": True}


class ColumnsIn(InputModel):
    columns: list[str]


@router.put("/preferences/columns/{list_name}", summary="Remember my columns for a list (empty = defaults)")
def save_columns(list_name: str, body: ColumnsIn, db: DbSession, who: Viewer) -> dict[str, Any]:
    spec = lists.spec_named(list_name)
    return {"list": list_name, "columns": prefs.save_columns(db, who.user_id, spec, body.columns)}
