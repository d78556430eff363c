"""Users page (admin): create users, change roles, disable."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from certfleet.dashboard import security
from certfleet.dashboard.deps import Admin, DbSession, require_role
from certfleet.dashboard.errors import flash
from certfleet.dashboard.lists import add_export_page, page_context
from certfleet.dashboard.services import users as svc
from certfleet.dashboard.templating import render

router = APIRouter(dependencies=[Depends(require_role("admin"))])  # the export too: it lists every account
add_export_page(router, svc.USERS)


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, db: DbSession, who: Admin) -> HTMLResponse:
    return render(
        request, "users/list.html", page_context(request, db, who, svc.USERS, roles=["viewer", "operator", "admin"])
    )


@router.post("/users")
def create_user(
    db: DbSession,
    who: Admin,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "viewer",
) -> Response:
    user = svc.create_user(db, username=username, password=password, role=role, actor=who.username)
    response = RedirectResponse("/users", status_code=303)
    flash(response, f"user {user.username} created with role {user.role.value}", "success")
    return response


@router.post("/users/{user_id}")
def update_user(
    request: Request,
    user_id: int,
    db: DbSession,
    who: Admin,
    role: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    disabled = {"disable": True, "enable": False}.get(action)
    user = svc.update_user(
        db, user_id, actor=who.username, role=role or None, disabled=disabled, password=password or None
    )
    if password and user.id == who.user_id:  # my own password: my other sessions end, this one goes on
        request.state.new_session = security.new_session(user.id, user.session_generation)
    response = RedirectResponse("/users", status_code=303)
    flash(response, f"user {user.username} saved", "success")
    return response
