"""FastAPI dependencies every router uses: the DB session, the logged-in principal, roles and CSRF.

    @router.post("/things")
    def create(db: DbSession, who: Operator) -> ...:   # operator or admin; CSRF checked for cookie logins

`DbSession` commits when the endpoint returns (before the response is sent) and rolls back on an exception.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet.dashboard import security
from certfleet.dashboard.errors import Forbidden, LoginRequired
from certfleet.models.db import session_scope
from certfleet.models.orm import ApiToken, User, UserRole, utcnow

SESSION_COOKIE = "certfleet_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_RANK = {UserRole.VIEWER: 0, UserRole.OPERATOR: 1, UserRole.ADMIN: 2}
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
METRICS_SCOPE = "metrics"


def _db() -> Iterator[Session]:
    with session_scope() as session:
        yield session


# scope="function": the commit happens when the endpoint returns, so the next request sees the change.
DbSession = Annotated[Session, Depends(_db, scope="function")]


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: UserRole
    via: Literal["session", "token"]
    scope: str = "all"  # a token's scope: "metrics" tokens may only scrape /metrics

    def has(self, role: UserRole | str) -> bool:
        return _RANK[self.role] >= _RANK[UserRole(role)]

    @property
    def metrics_only(self) -> bool:
        return self.scope == METRICS_SCOPE


def session_data(request: Request) -> security.SessionData:
    """The visitor's session (the middleware in app.py always sets one, anonymous or not)."""
    data = getattr(request.state, "session", None)
    assert isinstance(data, security.SessionData), "session middleware not installed"
    return data


def _from_token(token: str) -> Principal | None:
    with session_scope() as s:
        row = s.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == security.token_hash(token), ApiToken.revoked_at.is_(None))
        ).first()
        if row is None or row[1].disabled:
            return None
        api_token, user = row
        now = utcnow()
        if api_token.last_used_at is None or (now - api_token.last_used_at).total_seconds() > 60:
            api_token.last_used_at = now  # at most once a minute: no write per API call
        return Principal(user.id, user.username, user.role, "token", api_token.scope)


def _from_session(user_id: int, generation: int) -> Principal | None:
    with session_scope() as s:
        user = s.get(User, user_id)
        if user is None or user.disabled or user.session_generation != generation:
            return None  # gone, disabled, logged out or password changed since this session began
        return Principal(user.id, user.username, user.role, "session")


def optional_principal(request: Request) -> Principal | None:
    """Who is calling: a user API token (`Authorization: Bearer cfu_...`) or the session cookie; None if nobody."""
    cached = getattr(request.state, "principal", False)
    if cached is None or isinstance(cached, Principal):
        return cached
    principal: Principal | None = None
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        token = auth[7:].strip()
        principal = _from_token(token) if token.startswith(security.USER_TOKEN_PREFIX) else None
        if principal is None:
            raise LoginRequired("the API token is unknown, revoked or its user is disabled")
    else:
        data = session_data(request)
        principal = _from_session(data.user_id, data.generation) if data.user_id is not None else None
    request.state.principal = principal
    return principal


async def _check_csrf(request: Request, principal: Principal) -> None:
    if principal.via != "session" or request.method in _SAFE_METHODS:
        return
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if not security.csrf_ok(session_data(request).sid, presented):
        raise Forbidden("the form is stale or did not come from this site (CSRF check failed): reload the page")


def require_role(role: UserRole | str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller must be logged in with at least `role`; unsafe cookie requests need a CSRF token."""
    needed = UserRole(role)

    async def dependency(
        request: Request, principal: Annotated[Principal | None, Depends(optional_principal)]
    ) -> Principal:
        if principal is None:
            raise LoginRequired("log in first")
        if principal.metrics_only:
            raise Forbidden("this API token may only scrape /metrics (its scope is metrics)")
        if not principal.has(needed):
            raise Forbidden(f"this needs the {needed.value} role; you are {principal.role.value}")
        await _check_csrf(request, principal)
        return principal

    return dependency


async def _scraper(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    """GET /metrics: any logged-in user or API token, including a metrics-only token."""
    if principal is None:
        raise LoginRequired("send an API token (Authorization: Bearer cfu_...)")
    return principal


Scraper = Annotated[Principal, Depends(_scraper)]
Viewer = Annotated[Principal, Depends(require_role(UserRole.VIEWER))]
Operator = Annotated[Principal, Depends(require_role(UserRole.OPERATOR))]
Admin = Annotated[Principal, Depends(require_role(UserRole.ADMIN))]
