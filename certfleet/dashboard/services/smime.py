"""The S/MIME users list as the dashboard shows it; the domain rules live in certfleet.smime."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet.dashboard.flows import FlowRunRef, start_flow
from certfleet.dashboard.listing import ColType, Column, ListSpec
from certfleet.fields import InputError
from certfleet.models import repo
from certfleet.models.orm import AuditEvent, CAConnector, DirectoryProfile, SmimeStatus, SmimeUser
from certfleet.smime import revocation, selection
from certfleet.smime.selection import UserFilter
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
        Column(
            "directory_state",
            "Directory",
            SmimeUser.directory_state,
            ColType.ENUM,
            default=True,
            choices=revocation.LEAVER_STATES,
        ),
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


ROLLOUT_FLOW = "smime-rollout"


def start_rollout(
    session: Session,
    actor: str,
    user_ids: list[int] | None = None,
    ca_connector_id: int | None = None,
    user_filter: UserFilter | None = None,
) -> FlowRunRef:
    """An smime-rollout run for the users awaiting an order (or the given ones, or those the filter matches)."""
    if ca_connector_id is not None:
        repo.get(session, CAConnector, ca_connector_id)
    for user_id in user_ids or []:
        repo.get(session, SmimeUser, user_id)
    parameters: dict[str, object] = {}
    if user_ids is not None:
        parameters["user_ids"] = user_ids
    if ca_connector_id is not None:
        parameters["ca_connector_id"] = ca_connector_id
    if user_filter is not None and not user_filter.is_empty():
        parameters["user_filter"] = selection.check(session, user_filter).model_dump(mode="json", exclude_none=True)
    run = start_flow(ROLLOUT_FLOW, parameters)
    who = "users " + ", ".join(map(str, user_ids)) if user_ids is not None else "all awaiting"
    if "user_filter" in parameters and user_filter is not None:
        who += f" matching {user_filter.describe()}"
    session.add(AuditEvent(actor=actor, action="start-smime-rollout", object_type="SmimeUser", outcome="success",
                           detail=f"{run.name}: {who}"))  # fmt: skip
    return run


def rollout_matches(session: Session, user_ids: list[int] | None, user_filter: UserFilter | None) -> int:
    """How many users the rollout would order for now (the run looks again when it starts)."""
    return len(selection.matching(session, user_ids, user_filter))


def start_revocation(
    session: Session, user_id: int, reason: str, actor: str, serial_number: str | None = None
) -> FlowRunRef:
    """A revoke-smime-user run, after the checks that refuse with the reason (certfleet.smime.revocation)."""
    parameters = revocation.flow_parameters(session, user_id, reason, serial_number)
    run = start_flow(revocation.FLOW, parameters)
    revocation.record_start(session, user_id, str(parameters["reason"]), actor, run.name)
    return run
