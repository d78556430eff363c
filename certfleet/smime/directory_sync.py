"""Applying what Azure AD lists to the S/MIME users of one profile.

Rules (issue 14):
- a user is keyed by userPrincipalName within its profile; Name = displayName, Email = mail, Designation =
  jobTitle, Source = the profile's description;
- no `mail`: the userPrincipalName is used when it is a mail address, else the user is reported, not stored;
- values must pass the shared field rules (certfleet.fields); a user whose values do not is reported;
- an address another profile already holds is reported; a manually imported user with the same address is
  taken over by the profile (its status and certificate stay);
- a user Graph lists as disabled is flagged "Disabled in directory"; a user the profile had but Graph no longer
  lists is flagged "Not in directory" once a sync has read every page; neither is ever deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Integer,
    String,
    any_,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from certfleet.connectors.directory.azure_ad import (
    DEFAULT_AUTHORITY_HOST,
    DEFAULT_GRAPH_BASE,
    AzureADSettings,
    DirectoryUser,
)
from certfleet.fields import InputError
from certfleet.models import repo
from certfleet.models.orm import DirectoryProfile, SmimeStatus, SmimeUser, utcnow
from certfleet.smime.service import DESIGNATION, EMAIL, USER_NAME

DISABLED = "Disabled in directory"
VANISHED = "Not in directory"
MAX_REPORTED = 200  # problems kept on the profile; the count says how many there were
RUNNING, SUCCEEDED, FAILED = "Running", "Succeeded", "Failed"


@dataclass
class SyncReport:
    seen: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    disabled: int = 0
    vanished: int = 0
    reported: int = 0
    problems: list[str] = field(default_factory=list)

    def report(self, problem: str) -> None:
        self.reported += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(problem)

    def as_json(self) -> dict[str, object]:
        return {
            "seen": self.seen,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "disabled": self.disabled,
            "vanished": self.vanished,
            "reported": self.reported,
            "problems": list(self.problems),
        }

    @classmethod
    def from_json(cls, data: dict[str, object] | None) -> SyncReport:
        report = cls()
        for key, value in (data or {}).items():
            if key == "problems" and isinstance(value, list):
                report.problems = [str(v) for v in value]
            elif hasattr(report, key) and isinstance(value, int):
                setattr(report, key, value)
        return report


def directory_settings(profile: DirectoryProfile) -> AzureADSettings:
    if not profile.client_secret:
        raise InputError(f"profile {profile.name}: no client secret is stored", field="client_secret")
    return AzureADSettings(
        tenant_id=profile.tenant_id,
        client_id=profile.client_id,
        client_secret=profile.client_secret,
        authority_host=profile.authority_host or DEFAULT_AUTHORITY_HOST,
        graph_base=profile.graph_base or DEFAULT_GRAPH_BASE,
        ca_bundle_pem=profile.ca_bundle_pem,
    )


def mark_started(session: Session, profile_id: int) -> None:
    profile = repo.get(session, DirectoryProfile, profile_id)
    profile.last_sync_status = RUNNING
    profile.last_sync_error = None


def mark_failed(session: Session, profile_id: int, message: str, report: SyncReport) -> None:
    profile = repo.get(session, DirectoryProfile, profile_id)
    profile.last_sync_status = FAILED
    profile.last_sync_error = message
    profile.last_sync_at = utcnow()
    profile.last_sync_report = report.as_json()
    repo.audit(session, actor="flow:sync-directory", action="sync-directory", obj=profile, outcome="failure",
               detail=message[:500])  # fmt: skip


def _address(user: DirectoryUser) -> tuple[str | None, str | None]:
    """(address, problem): mail, else a userPrincipalName that is a mail address."""
    if user.mail:
        problem = EMAIL.problem(user.mail)
        return (None, f"{user.user_principal_name}: mail {user.mail!r}: {problem}") if problem else (user.mail, None)
    upn = user.user_principal_name or ""
    if upn and EMAIL.problem(upn) is None:
        return upn, None
    return (
        None,
        f"{upn or user.id or '(no userPrincipalName)'}: no mail, and the userPrincipalName is not a mail address",
    )


# The columns a sync compares and writes: read as plain rows, never as ORM objects (10,000 users a sync).
_ROW = (
    SmimeUser.id,
    SmimeUser.name,
    SmimeUser.email,
    SmimeUser.designation,
    SmimeUser.source,
    SmimeUser.profile_id,
    SmimeUser.directory_key,
    SmimeUser.directory_state,
)
_SYNCED = ("name", "email", "designation", "source", "profile_id", "directory_key", "directory_state")
CHUNK = 500  # ids per IN (...) list: well under SQLite's and PostgreSQL's bound-parameter limits


@dataclass(frozen=True)
class _Listed:
    """One directory user that passed the field rules."""

    key: str
    address: str
    name: str
    designation: str | None
    state: str | None


def _checked(entry: DirectoryUser, report: SyncReport) -> _Listed | None:
    """The user's values, or None once the problem is reported."""
    key = entry.user_principal_name
    if not key:
        report.report(f"{entry.id or '(no id)'}: Graph gave no userPrincipalName")
        return None
    address, problem = _address(entry)
    if address is None:
        report.report(problem or key)
        return None
    name = entry.display_name if entry.display_name is not None else ""
    name_problem = USER_NAME.problem(name)
    if name_problem:
        report.report(f"{key}: name {name!r}: {name_problem}")
        return None
    designation = entry.job_title
    if designation is not None and (designation_problem := DESIGNATION.problem(designation)):
        report.report(f"{key}: designation {designation!r}: {designation_problem}")
        return None
    return _Listed(key, address, name, designation, None if entry.account_enabled else DISABLED)


def _one_of(
    column: ColumnElement[Any] | InstrumentedAttribute[Any], values: list[str], dialect: str
) -> ColumnElement[bool]:
    """`column IN (...)`; on PostgreSQL `= ANY(array)`: one bound array instead of a page's 999 parameters, which
    psycopg would otherwise parse out of a new statement text every page."""
    if dialect == "postgresql":
        return column == any_(cast(bindparam("values", values, type_=ARRAY(String)), ARRAY(String)))
    return column.in_(values)


def apply_page(session: Session, profile_id: int, users: Iterable[DirectoryUser], report: SyncReport) -> None:
    """Upsert one page of directory users into the profile's S/MIME users: two indexed SELECTs of plain rows, then
    the writes (`_write`), in the caller's transaction."""
    source = repo.get(session, DirectoryProfile, profile_id).name
    listed: list[_Listed] = []
    for entry in users:
        report.seen += 1
        if (checked := _checked(entry, report)) is not None:
            listed.append(checked)
    rows: dict[int, dict[str, Any]] = {}  # id -> the stored row, shared by both lookups
    mine: dict[str, dict[str, Any]] = {}
    by_email: dict[str, dict[str, Any]] = {}
    keys = list({u.key for u in listed})
    addresses = list({u.address.lower() for u in listed})
    dialect = session.get_bind().dialect.name
    for row in session.execute(
        select(*_ROW).where(SmimeUser.profile_id == profile_id, _one_of(SmimeUser.directory_key, keys, dialect))
    ).mappings():
        mine[row["directory_key"]] = rows.setdefault(row["id"], dict(row))
    for row in session.execute(
        select(*_ROW).where(_one_of(func.lower(SmimeUser.email), addresses, dialect))
    ).mappings():
        by_email[row["email"].lower()] = rows.setdefault(row["id"], dict(row))
    inserts: list[dict[str, Any]] = []
    changed: dict[int, dict[str, Any]] = {}
    moved: set[int] = set()  # ids of stored users whose address changes
    for u in listed:
        user = mine.get(u.key)
        holder = by_email.get(u.address.lower())
        if holder is not None and holder is not user:
            if holder["profile_id"] is not None and holder["profile_id"] != profile_id:
                report.report(f"{u.key}: {u.address} is already listed from another profile")
                continue
            if holder["profile_id"] == profile_id and holder["directory_key"] not in (None, u.key):
                report.report(f"{u.key}: {u.address} is already the address of {holder['directory_key']}")
                continue
            if user is None:
                user = holder  # a manually imported user (or one without a key): the profile takes it over
        if u.state == DISABLED:
            report.disabled += 1
        new = {
            "name": u.name,
            "email": u.address,
            "designation": u.designation,
            "source": source,
            "profile_id": profile_id,
            "directory_key": u.key,
            "directory_state": u.state,
        }
        if user is None:
            user = {"id": None, **new}
            inserts.append(user)
            by_email[u.address.lower()] = mine[u.key] = user
            report.added += 1
            continue
        if all(user[k] == v for k, v in new.items()):
            report.unchanged += 1
            continue
        if user["email"].lower() != u.address.lower():
            by_email.pop(user["email"].lower(), None)
            by_email[u.address.lower()] = user
        if user["id"] is not None and user["email"] != u.address:
            moved.add(user["id"])
        user.update(new)
        if user["id"] is not None:
            changed[user["id"]] = user
        report.updated += 1
    _write(session, dialect, changed, moved, inserts, source, profile_id)


_TABLE = SmimeUser.metadata.tables[SmimeUser.__tablename__]
_PER_ROW = ("name", "email", "designation", "directory_key", "directory_state")  # source, profile_id: the page's


def _write(
    session: Session,
    dialect: str,
    changed: dict[int, dict[str, Any]],
    moved: set[int],
    inserts: list[dict[str, Any]],
    source: str,
    profile_id: int,
) -> None:
    """The page's writes, updates first (as the ORM's flush orders them: an address a user gives up may be taken
    by a new user). Users whose address changes are updated one statement each, in page order, since the unique
    address is checked row by row. On PostgreSQL the other updates and the inserts are one statement each over
    arrays (`unnest`), so the server plans and runs one statement a page, not one a user; SQLite runs
    executemany, which costs it no round trips."""
    in_order = [{"user_id": i, **{k: r[k] for k in _SYNCED}} for i, r in changed.items() if i in moved]
    if in_order:
        session.execute(update(_TABLE).where(_TABLE.c.id == bindparam("user_id")), in_order)
    rest = [(i, r) for i, r in changed.items() if i not in moved]
    if dialect == "postgresql":
        if rest:
            v = _unnest({"id": ([i for i, _ in rest], Integer), **_columns([r for _, r in rest])})
            session.execute(
                update(_TABLE)
                .where(_TABLE.c.id == v.c.id)
                .values({**{k: v.c[k] for k in _PER_ROW}, "source": source, "profile_id": profile_id})
            )
        if inserts:
            v = _unnest(_columns(inserts))
            session.execute(
                insert(_TABLE).from_select(
                    [*_PER_ROW, "source", "profile_id", "status", "created_at", "renewal_attempts"],
                    select(
                        *(v.c[k] for k in _PER_ROW),
                        literal(source, String),
                        literal(profile_id, Integer),
                        literal(SmimeStatus.AWAITING_ORDER, _TABLE.c.status.type),
                        literal(utcnow(), _TABLE.c.created_at.type),
                        literal(0, Integer),
                    ),
                )
            )
        return
    if rest:
        session.execute(
            update(_TABLE).where(_TABLE.c.id == bindparam("user_id")),
            [{"user_id": i, **{k: r[k] for k in _SYNCED}} for i, r in rest],
        )
    if inserts:
        now = utcnow()
        session.execute(
            insert(_TABLE),
            [{**{k: r[k] for k in _SYNCED}, "status": SmimeStatus.AWAITING_ORDER, "created_at": now} for r in inserts],
        )


def _columns(rows: list[dict[str, Any]]) -> dict[str, tuple[list[Any], type[String]]]:
    return {k: ([r[k] for r in rows], String) for k in _PER_ROW}


def _unnest(columns: dict[str, tuple[list[Any], Any]]) -> Any:
    """PostgreSQL: the rows as one derived table `v`, from one bound array per column."""
    arrays = [
        cast(bindparam(f"a_{k}", values, type_=ARRAY(kind)), ARRAY(kind)) for k, (values, kind) in columns.items()
    ]
    return func.unnest(*arrays).table_valued(*columns).render_derived(name="v")


def finish(session: Session, profile_id: int, seen_keys: set[str], report: SyncReport) -> None:
    """After every page was read: flag the profile's users Graph no longer lists; record the outcome."""
    profile = repo.get(session, DirectoryProfile, profile_id)
    listed = session.execute(
        select(SmimeUser.id, SmimeUser.directory_key, SmimeUser.directory_state).where(
            SmimeUser.profile_id == profile_id, SmimeUser.directory_key.is_not(None)
        )
    )
    gone = [i for i, key, state in listed if key not in seen_keys and state != VANISHED]
    for start in range(0, len(gone), CHUNK):
        chunk = gone[start : start + CHUNK]
        session.execute(update(SmimeUser).where(SmimeUser.id.in_(chunk)).values(directory_state=VANISHED))
    report.vanished += len(gone)
    profile.last_sync_status = SUCCEEDED
    profile.last_sync_error = None
    profile.last_sync_at = utcnow()
    profile.last_sync_report = report.as_json()
    summary = ", ".join(f"{k} {v}" for k, v in report.as_json().items() if k != "problems")
    repo.audit(session, actor="flow:sync-directory", action="sync-directory", obj=profile, detail=summary)
