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

from sqlalchemy import func, select
from sqlalchemy.orm import Session

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


def apply_page(session: Session, profile_id: int, users: Iterable[DirectoryUser], report: SyncReport) -> None:
    """Upsert one page of directory users into the profile's S/MIME users."""
    profile = repo.get(session, DirectoryProfile, profile_id)
    page = list(users)
    keys = [u.user_principal_name for u in page if u.user_principal_name]
    mine = {
        u.directory_key: u
        for u in session.scalars(
            select(SmimeUser).where(SmimeUser.profile_id == profile_id, SmimeUser.directory_key.in_(keys))
        )
    }
    addresses = [a.lower() for a in (_address(u)[0] for u in page) if a]
    by_email = {
        u.email.lower(): u for u in session.scalars(select(SmimeUser).where(func.lower(SmimeUser.email).in_(addresses)))
    }
    for entry in page:
        report.seen += 1
        key = entry.user_principal_name
        if not key:
            report.report(f"{entry.id or '(no id)'}: Graph gave no userPrincipalName")
            continue
        address, problem = _address(entry)
        if address is None:
            report.report(problem or key)
            continue
        name = entry.display_name if entry.display_name is not None else ""
        name_problem = USER_NAME.problem(name)
        if name_problem:
            report.report(f"{key}: name {name!r}: {name_problem}")
            continue
        designation = entry.job_title
        if designation is not None and (designation_problem := DESIGNATION.problem(designation)):
            report.report(f"{key}: designation {designation!r}: {designation_problem}")
            continue
        state = None if entry.account_enabled else DISABLED
        user = mine.get(key)
        holder = by_email.get(address.lower())
        if holder is not None and holder is not user:
            if holder.profile_id is not None and holder.profile_id != profile_id:
                report.report(f"{key}: {address} is already listed from another profile")
                continue
            if holder.profile_id == profile_id and holder.directory_key not in (None, key):
                report.report(f"{key}: {address} is already the address of {holder.directory_key}")
                continue
            if user is None:
                user = holder  # a manually imported user (or one without a key): the profile takes it over
        if state == DISABLED:
            report.disabled += 1
        if user is None:
            user = SmimeUser(
                name=name,
                email=address,
                designation=designation,
                source=profile.name,
                profile_id=profile_id,
                directory_key=key,
                directory_state=state,
                status=SmimeStatus.AWAITING_ORDER,
                created_at=utcnow(),
            )
            session.add(user)
            by_email[address.lower()] = user
            mine[key] = user
            report.added += 1
            continue
        new = {
            "name": name,
            "email": address,
            "designation": designation,
            "source": profile.name,
            "profile_id": profile_id,
            "directory_key": key,
            "directory_state": state,
        }
        if all(getattr(user, k) == v for k, v in new.items()):
            report.unchanged += 1
            continue
        if user.email.lower() != address.lower():
            by_email.pop(user.email.lower(), None)
            by_email[address.lower()] = user
        for k, v in new.items():
            setattr(user, k, v)
        report.updated += 1
    session.flush()


def finish(session: Session, profile_id: int, seen_keys: set[str], report: SyncReport) -> None:
    """After every page was read: flag the profile's users Graph no longer lists; record the outcome."""
    profile = repo.get(session, DirectoryProfile, profile_id)
    for user in session.scalars(
        select(SmimeUser).where(SmimeUser.profile_id == profile_id, SmimeUser.directory_key.is_not(None))
    ):
        if user.directory_key not in seen_keys and user.directory_state != VANISHED:
            user.directory_state = VANISHED
            report.vanished += 1
    profile.last_sync_status = SUCCEEDED
    profile.last_sync_error = None
    profile.last_sync_at = utcnow()
    profile.last_sync_report = report.as_json()
    summary = ", ".join(f"{k} {v}" for k, v in report.as_json().items() if k != "problems")
    repo.audit(session, actor="flow:sync-directory", action="sync-directory", obj=profile, detail=summary)
