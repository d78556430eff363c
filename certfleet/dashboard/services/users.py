"""Users, roles, passwords and API tokens."""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certfleet import fields
from certfleet.dashboard import security
from certfleet.dashboard.errors import InputError
from certfleet.dashboard.listing import ColType, Column, ListSpec
from certfleet.models import repo
from certfleet.models.orm import ApiToken, User, UserRole, utcnow

MIN_PASSWORD = 10
MAX_PASSWORD = 1024
TOKEN_NAME = fields.Name(120)
# What a token may do: everything its user's role allows, or only scrape /metrics (for Prometheus).
TOKEN_SCOPES = ("all", "metrics")
FIRST_ADMIN = "admin"
_USERNAME = re.compile(r"^[A-Za-z0-9._@-]{2,120}$")


@dataclass(frozen=True)
class FirstAdmin:
    username: str
    password: str | None  # the generated password, to print once; None when it came from the environment


def _check_password(password: str) -> None:
    fields.Secret(MAX_PASSWORD).check(password, "password")
    if len(password) < MIN_PASSWORD:
        raise InputError(f"the password must have at least {MIN_PASSWORD} characters", field="password")


def ensure_first_admin(session: Session, password: str | None) -> FirstAdmin | None:
    """Creates the `admin` user when there are no users yet. Returns what to tell the operator, or None."""
    if session.scalar(select(func.count(User.id))):
        return None
    generated = None
    if password is None:
        generated = password = secrets.token_urlsafe(12)
    _check_password(password)
    user = User(
        username=FIRST_ADMIN,
        password_hash=security.hash_password(password),
        role=UserRole.ADMIN,
        created_by="certfleet",
    )
    session.add(user)
    session.flush()
    repo.audit(session, actor="certfleet", action="create-user", obj=user, detail="first admin")
    return FirstAdmin(FIRST_ADMIN, generated)


@functools.cache
def _dummy_hash() -> str:
    """A hash made once with the same parameters as real ones: unknown users cost one verification too."""
    return security.hash_password(secrets.token_urlsafe(16))


def warm_up() -> None:
    _dummy_hash()


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The user, or None. Unknown, disabled and wrong-password answers all cost exactly one password check, so
    their timing does not tell which usernames exist."""
    user = session.scalar(select(User).where(User.username == username.strip()))
    matches = security.verify_password(password, user.password_hash if user is not None else _dummy_hash())
    if user is None or user.disabled or not matches:
        return None
    user.last_login_at = utcnow()
    return user


def parse_role(value: str) -> UserRole:
    try:
        return UserRole(value.strip().lower())
    except ValueError:
        raise InputError(f"role must be admin, operator or viewer, not {value!r}", field="role") from None


def create_user(session: Session, *, username: str, password: str, role: str, actor: str) -> User:
    if not _USERNAME.fullmatch(username):  # fullmatch: "$" alone would let a final newline through
        raise InputError("username: 2-120 letters, digits or . _ @ - (no spaces)", field="username")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise InputError(f"a user named {username!r} already exists; choose another name", field="username")
    _check_password(password)
    user = User(
        username=username, password_hash=security.hash_password(password), role=parse_role(role), created_by=actor
    )
    session.add(user)
    session.flush()
    repo.audit(session, actor=actor, action="create-user", obj=user, detail=f"role {user.role.value}")
    return user


def update_user(
    session: Session,
    user_id: int,
    *,
    actor: str,
    role: str | None = None,
    disabled: bool | None = None,
    password: str | None = None,
) -> User:
    user = repo.get(session, User, user_id)
    changes = []
    if role is not None and parse_role(role) is not user.role:
        if user.role is UserRole.ADMIN and _admins_left(session, excluding=user.id) == 0:
            raise InputError("this is the last admin: make another user admin first", field="role")
        user.role = parse_role(role)
        changes.append(f"role {user.role.value}")
    if disabled is not None and disabled != user.disabled:
        if disabled and user.role is UserRole.ADMIN and _admins_left(session, excluding=user.id) == 0:
            raise InputError("this is the last admin and cannot be disabled", field="disabled")
        user.disabled = disabled
        changes.append("disabled" if disabled else "enabled")
    if password:
        _check_password(password)
        user.password_hash = security.hash_password(password)
        user.session_generation += 1  # whoever knew the old password is logged out everywhere
        changes.append("password changed, sessions ended")
    if changes:
        repo.audit(session, actor=actor, action="update-user", obj=user, detail=", ".join(changes))
    return user


def end_sessions(session: Session, user_id: int, *, actor: str, why: str) -> None:
    """Ends every dashboard session of the user (API tokens stay: they are revoked one by one)."""
    user = repo.get(session, User, user_id)
    user.session_generation += 1
    repo.audit(session, actor=actor, action=why, obj=user, detail="all dashboard sessions ended")


def _admins_left(session: Session, excluding: int) -> int:
    return int(
        session.scalar(
            select(func.count(User.id)).where(
                User.role == UserRole.ADMIN, User.disabled.is_(False), User.id != excluding
            )
        )
        or 0
    )


@dataclass(frozen=True)
class IssuedToken:
    id: int
    name: str
    token: str  # shown once
    prefix: str


def create_api_token(session: Session, user_id: int, name: str, actor: str, scope: str = "all") -> IssuedToken:
    if not name:
        raise InputError("name: empty; give the token a name, e.g. the script that will use it", field="name")
    TOKEN_NAME.check(name, "name")
    if scope not in TOKEN_SCOPES:
        raise InputError(f"scope: {scope!r} is not one of {', '.join(TOKEN_SCOPES)}", field="scope")
    made = security.new_token(security.USER_TOKEN_PREFIX)
    row = ApiToken(user_id=user_id, name=name, token_hash=made.hash, token_prefix=made.prefix, scope=scope)
    session.add(row)
    session.flush()
    repo.audit(
        session, actor=actor, action="create-api-token", obj=row, detail=f"{name} ({made.prefix}…, scope {scope})"
    )
    return IssuedToken(row.id, row.name, made.token, made.prefix)


def revoke_api_token(session: Session, token_id: int, *, user_id: int, is_admin: bool, actor: str) -> ApiToken:
    row = repo.get(session, ApiToken, token_id)
    if row.user_id != user_id and not is_admin:
        raise repo.NotFound(f"ApiToken {token_id} does not exist")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        repo.audit(session, actor=actor, action="revoke-api-token", obj=row, detail=row.token_prefix + "…")
    return row


def tokens_of(session: Session, user_id: int) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc())))


USERS = ListSpec(
    name="users",
    title="Users",
    base=lambda: select(User.id),
    pk=User.id,
    default_sort="username",
    columns=(
        Column("username", "Username", User.username, default=True),
        Column("role", "Role", User.role, ColType.ENUM, default=True, choices=tuple(UserRole)),
        Column("disabled", "Disabled", User.disabled, ColType.BOOL, default=True),
        Column("last_login_at", "Last Login", User.last_login_at, ColType.DATE, default=True),
        Column("created_at", "Created Date", User.created_at, ColType.DATE, default=True),
        Column("created_by", "Created By", User.created_by, default=True),
    ),
    hidden=(Column("raw_role", "", User.role), Column("raw_disabled", "", User.disabled)),
)
