"""The checks and the audit around starting the S/MIME runs (sync-directory, smime-rollout).

Whoever starts a run (the dashboard, the API, the CLI) checks its parameters here, starts the Prefect run itself,
then records the start here: the same rules and audit events whichever way the run was asked for.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from certfleet.fields import InputError
from certfleet.models import repo
from certfleet.models.orm import AuditEvent, CAConnector, DirectoryProfile, SmimeUser
from certfleet.smime import delivery_targets, selection
from certfleet.smime.rollout import smime_problem
from certfleet.smime.selection import UserFilter

SYNC_FLOW = "sync-directory"
ROLLOUT_FLOW = "smime-rollout"


def sync_parameters(session: Session, profile_id: int | None) -> dict[str, Any]:
    """One profile's run (an unknown id is refused), or every profile's when `profile_id` is None."""
    if profile_id is None:
        return {}
    return {"profile_id": repo.get(session, DirectoryProfile, profile_id).id}


def record_sync_start(session: Session, profile_id: int | None, actor: str, run_name: str) -> None:
    if profile_id is None:
        session.add(AuditEvent(actor=actor, action="start-sync-directory", object_type="DirectoryProfile",
                               outcome="success", detail=f"{run_name}: every profile"))  # fmt: skip
        return
    profile = repo.get(session, DirectoryProfile, profile_id)
    repo.audit(session, actor=actor, action="start-sync-directory", obj=profile, detail=run_name)


def rollout_parameters(
    session: Session,
    user_ids: list[int] | None = None,
    ca_connector_id: int | None = None,
    user_filter: UserFilter | None = None,
    delivery: str | None = None,
) -> dict[str, Any]:
    """The run's parameters once every named user exists, the connector issues S/MIME certificates, every part
    of the filter can match (certfleet.smime.selection) and `delivery` (one target for the whole run:
    certfleet.smime.delivery_targets) names a target."""
    if ca_connector_id is not None:
        check_smime_connector(repo.get(session, CAConnector, ca_connector_id))
    for user_id in user_ids or []:
        repo.get(session, SmimeUser, user_id)
    parameters: dict[str, Any] = {}
    if user_ids is not None:
        parameters["user_ids"] = user_ids
    if ca_connector_id is not None:
        parameters["ca_connector_id"] = ca_connector_id
    if delivery is not None:
        delivery_targets.run_target(session, delivery)
        parameters["delivery"] = delivery
    if user_filter is not None and not user_filter.is_empty():
        parameters["user_filter"] = selection.check(session, user_filter).model_dump(mode="json", exclude_none=True)
    return parameters


def check_smime_connector(connector: CAConnector, field: str = "ca_connector_id") -> None:
    """Refuse, before any run starts, a connector that cannot issue S/MIME certificates (ACME, AD CS, emCA)."""
    problem = smime_problem(connector)
    if problem:
        raise InputError(f"{field}: {problem}", field=field)


def record_rollout_start(
    session: Session,
    actor: str,
    run_name: str,
    user_ids: list[int] | None = None,
    user_filter: UserFilter | None = None,
    delivery: str | None = None,
) -> None:
    who = "users " + ", ".join(map(str, user_ids)) if user_ids is not None else "all awaiting"
    if user_filter is not None and not user_filter.is_empty():
        who += f" matching {user_filter.describe()}"
    if delivery is not None:
        who += f"; delivered to {delivery}"
    session.add(AuditEvent(actor=actor, action="start-smime-rollout", object_type="SmimeUser", outcome="success",
                           detail=f"{run_name}: {who}"))  # fmt: skip
