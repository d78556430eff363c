"""/api/v1/users: users and roles (admin only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from certfleet import fields
from certfleet.dashboard.api.ids import RowId
from certfleet.dashboard.deps import Admin, DbSession, require_role
from certfleet.dashboard.lists import add_list_api
from certfleet.dashboard.services import users as svc
from certfleet.input_model import InputModel
from certfleet.models.orm import User

router = APIRouter(tags=["Users"], dependencies=[Depends(require_role("admin"))])
add_list_api(router, svc.USERS, tag="Users")


Password = Annotated[str, fields.Secret(svc.MAX_PASSWORD)]


class UserIn(InputModel):
    username: str
    password: Password
    role: str = "viewer"


class UserUpdate(InputModel):
    role: str | None = None
    disabled: bool | None = None
    password: Password | None = None


def user_json(u: User) -> dict[str, Any]:
    return {
        "id": u.id,
        "username": u.username,
        "role": u.role.value,
        "disabled": u.disabled,
        "created_at": u.created_at.isoformat(),
        "created_by": u.created_by,
    }


@router.post("/users", status_code=201, summary="Create a user")
def create_user(body: UserIn, db: DbSession, who: Admin) -> dict[str, Any]:
    return user_json(
        svc.create_user(db, username=body.username, password=body.password, role=body.role, actor=who.username)
    )


@router.patch("/users/{user_id}", summary="Change a user's role, password, or disable them")
def update_user(user_id: RowId, body: UserUpdate, db: DbSession, who: Admin) -> dict[str, Any]:
    user = svc.update_user(
        db, user_id, actor=who.username, role=body.role, disabled=body.disabled, password=body.password
    )
    return user_json(user)
