"""The S/MIME users list as the dashboard shows it, and starting the S/MIME runs from the web process.

The domain rules (users, profiles, counts, the checks and audit of a run's start) live in certfleet.smime.
"""

from __future__ import annotations

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from certfleet.dashboard.flows import FlowRunRef, start_flow
from certfleet.dashboard.listing import ColType, Column, ListSpec
from certfleet.fields import InputError
from certfleet.models.orm import SmimeOrder, SmimeStatus, SmimeUser
from certfleet.smime import revocation, selection, starts
from certfleet.smime.rollout import OPEN_STATES
from certfleet.smime.selection import UserFilter

# Why the user's open order is stuck (e.g. a delivery the share or the mail server refused), else why their newest
# order went to another CA connector than the one that issued the certificate it renews; None when neither.
_NEWEST_ORDER = (
    select(SmimeOrder.id)
    .where(SmimeOrder.user_id == SmimeUser.id)
    .order_by(SmimeOrder.id.desc())
    .limit(1)
    .correlate(SmimeUser)
    .scalar_subquery()
)
OPEN_ORDER_ERROR = (
    select(
        func.coalesce(
            case((SmimeOrder.state.in_(OPEN_STATES), SmimeOrder.error), else_=None), SmimeOrder.connector_note
        )
    )
    .where(SmimeOrder.id == _NEWEST_ORDER)
    .correlate(SmimeUser)
    .scalar_subquery()
)

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
        Column("last_error", "Last Error", OPEN_ORDER_ERROR, default=True, width=40),
        Column("created_at", "Added On", SmimeUser.created_at, ColType.DATE),
    ),
)


def start_sync(session: Session, profile_id: int, actor: str) -> FlowRunRef:
    """A sync-directory run for one profile (never the Graph calls in the web process)."""
    run = start_flow(starts.SYNC_FLOW, starts.sync_parameters(session, profile_id))
    starts.record_sync_start(session, profile_id, actor, run.name)
    return run


def try_start_sync(session: Session, profile_id: int, actor: str) -> tuple[FlowRunRef | None, str | None]:
    """After a save: the run, or why it could not start (the profile stays saved; Sync now starts it later)."""
    try:
        return start_sync(session, profile_id, actor), None
    except InputError as exc:
        return None, exc.message


def start_rollout(
    session: Session,
    actor: str,
    user_ids: list[int] | None = None,
    ca_connector_id: int | None = None,
    user_filter: UserFilter | None = None,
    delivery: str | None = None,
) -> FlowRunRef:
    """An smime-rollout run for the users awaiting an order (or the given ones, or those the filter matches);
    `delivery`: one target for the whole run (certfleet.smime.delivery_targets)."""
    parameters = starts.rollout_parameters(session, user_ids, ca_connector_id, user_filter, delivery)
    run = start_flow(starts.ROLLOUT_FLOW, parameters)
    starts.record_rollout_start(session, actor, run.name, user_ids, user_filter, delivery)
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
