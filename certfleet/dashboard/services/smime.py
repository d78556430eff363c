"""The S/MIME users list as the dashboard shows it; the domain rules live in certfleet.smime."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet.dashboard.flows import FlowRunRef, start_flow
from certfleet.dashboard.listing import ColType, Column, ListSpec
from certfleet.fields import InputError
from certfleet.models import repo
from certfleet.models.orm import DirectoryProfile, SmimeStatus, SmimeUser
from certfleet.smime.service import (
    CLIENT_SECRET,
    DESIGNATION,
    MANUAL_SOURCE,
    PROFILE_NAME,
    PROVISIONED,
    USER_NAME,
    ProfileFields,
    counts,
    delete_profile,
    ignore_email,
    import_user,
    profiles,
    save_profile,
)

# The pages and the API call the domain through this module.
__all__ = [
    "CLIENT_SECRET",
    "DESIGNATION",
    "MANUAL_SOURCE",
    "PROFILE_NAME",
    "PROVISIONED",
    "SMIME_USERS",
    "USER_NAME",
    "ProfileFields",
    "counts",
    "delete_profile",
    "ignore_email",
    "import_user",
    "profiles",
    "save_profile",
]

SMIME_USERS = ListSpec(
    name="smime_users",
    title="S/MIME Provisioning",
    base=lambda: select(SmimeUser.id),
    pk=SmimeUser.id,
    default_sort="name",
    columns=(
        Column("name", "Name", SmimeUser.name, default=True, width=24),
        Column("email", "Email", SmimeUser.email, default=True, width=30),
        Column("status", "Status", SmimeUser.status, ColType.ENUM, default=True, choices=tuple(SmimeStatus)),
        Column("designation", "Designation", SmimeUser.designation, default=True),
        Column("source", "Source", SmimeUser.source, default=True),
        Column("expires_on", "Expiry Date", SmimeUser.expires_on, ColType.DATE, default=True),
        Column("directory_state", "Directory", SmimeUser.directory_state),
        Column("created_at", "Added On", SmimeUser.created_at, ColType.DATE),
    ),
)


SYNC_FLOW = "sync-directory"


def start_sync(session: Session, profile_id: int, actor: str) -> FlowRunRef:
    """A sync-directory run for one profile (never the Graph calls in the web process)."""
    profile = repo.get(session, DirectoryProfile, profile_id)
    run = start_flow(SYNC_FLOW, {"profile_id": profile.id})
    repo.audit(session, actor=actor, action="start-sync-directory", obj=profile, detail=run.name)
    return run


def try_start_sync(session: Session, profile_id: int, actor: str) -> tuple[FlowRunRef | None, str | None]:
    """After a save: the run, or why it could not start (the profile stays saved; Sync now starts it later)."""
    try:
        return start_sync(session, profile_id, actor), None
    except InputError as exc:
        return None, exc.message
