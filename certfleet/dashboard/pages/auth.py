"""Login, logout, my API tokens, and saving Customize Columns."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from certfleet.dashboard import lists, login_throttle, prefs, security
from certfleet.dashboard.deps import CSRF_FIELD, DbSession, Viewer, session_data
from certfleet.dashboard.errors import flash
from certfleet.dashboard.services import users
from certfleet.dashboard.templating import render
from certfleet.models import repo
from certfleet.models.orm import User

router = APIRouter()


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/") and not target.startswith("//") else "/"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    users.warm_up()  # the unknown-user hash exists before the first login is checked
    return render(request, "auth/login.html", {"title": "Log in", "next": _safe_next(next)})


@router.post("/login")
def login(
    request: Request,
    db: DbSession,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    if not security.csrf_ok(session_data(request).sid, csrf_token):
        return render(request, "auth/login.html", {"error": "the form expired: try again", "next": next}, 400)
    throttle = login_throttle.for_app(request.app)
    address = request.client.host if request.client else "unknown"
    refusal = throttle.begin(username, address)
    if refusal is not None:
        ctx = {"error": refusal.message, "next": next, "username": username}
        response = render(request, "auth/login.html", ctx, 429)
        response.headers["Retry-After"] = str(refusal.retry_after_s)
        return response
    outcome: bool | None = None
    try:
        user = users.authenticate(db, username, password)
        outcome = user is not None
    finally:
        lockouts = throttle.finish(username, address, outcome)
    failed_as = User(username=username[:120])
    for sentence in lockouts:
        repo.audit(db, actor="certfleet", action="login-lockout", obj=failed_as, outcome="failure",
                   detail=f"{sentence} (last try from {address})")  # fmt: skip
    if user is None:
        repo.audit(db, actor=username[:120] or "?", action="login", obj=failed_as, outcome="failure")
        return render(
            request, "auth/login.html", {"error": "wrong username or password", "next": next, "username": username}, 401
        )
    repo.audit(db, actor=user.username, action="login", obj=user)
    # A new id at login: no session fixation.
    request.state.new_session = security.new_session(user.id, user.session_generation)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, db: DbSession, who: Viewer) -> Response:
    users.end_sessions(db, who.user_id, actor=who.username, why="logout")  # a copied cookie dies with it
    request.state.new_session = security.new_session(None)
    return RedirectResponse("/login", status_code=303)


@router.get("/account/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    return render(request, "auth/tokens.html", {"title": "API Tokens", "tokens": users.tokens_of(db, who.user_id)})


@router.post("/account/tokens", response_class=HTMLResponse)
def create_token(
    request: Request,
    db: DbSession,
    who: Viewer,
    name: Annotated[str, Form()] = "",
    scope: Annotated[str, Form()] = "all",
) -> HTMLResponse:
    made = users.create_api_token(db, who.user_id, name, who.username, scope)
    db.flush()
    response = render(
        request,
        "auth/tokens.html",
        {"title": "API Tokens", "tokens": users.tokens_of(db, who.user_id), "new_token": made},
    )
    response.headers["Cache-Control"] = "no-store"  # the token is in this page only
    return response


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(token_id: int, db: DbSession, who: Viewer) -> Response:
    users.revoke_api_token(db, token_id, user_id=who.user_id, is_admin=who.has("admin"), actor=who.username)
    response = RedirectResponse("/account/tokens", status_code=303)
    flash(response, "token revoked", "success")
    return response


@router.post("/prefs/columns/{list_name}")
def save_columns(
    list_name: str,
    db: DbSession,
    who: Viewer,
    columns: Annotated[list[str], Form()] = [],  # noqa: B006
    reset: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "/",
) -> Response:
    prefs.save_columns(db, who.user_id, lists.spec_named(list_name), [] if reset else columns)
    return RedirectResponse(_safe_next(back), status_code=303)
