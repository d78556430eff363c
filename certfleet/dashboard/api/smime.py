"""/api/v1/smime-users and /api/v1/directory-profiles: S/MIME provisioning users and Azure AD profiles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, File, Form, UploadFile
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy import select

from certfleet import fields
from certfleet.dashboard.api.ids import RowId
from certfleet.dashboard.deps import Admin, DbSession, Operator, Viewer
from certfleet.dashboard.flows import FlowRunRef
from certfleet.dashboard.lists import add_list_api
from certfleet.dashboard.services import smime as svc
from certfleet.input_model import InputModel
from certfleet.models import repo
from certfleet.models.orm import DirectoryProfile, SmimeOrder, SmimeUser
from certfleet.revocation import REASONS
from certfleet.smime import bulk_import, delivery_targets
from certfleet.smime import service as smime
from certfleet.smime.selection import UserFilter

router = APIRouter(tags=["S/MIME"])
add_list_api(router, svc.SMIME_USERS, tag="S/MIME")


class ImportIn(InputModel):
    name: Annotated[str, smime.USER_NAME]
    email: Annotated[str, fields.Email()]
    designation: Annotated[str, smime.DESIGNATION] | None = None


class ProfileIn(InputModel):
    client_id: str
    client_secret: Annotated[str, Field(description="empty on update: keep the stored secret")] = ""
    tenant_id: str
    description: Annotated[str, smime.PROFILE_NAME]
    ca_connector_id: RowId | None = None
    authority_host: Annotated[str | None, Field(description="empty: https://login.microsoftonline.com")] = None
    graph_base: Annotated[str | None, Field(description="empty: https://graph.microsoft.com")] = None
    ca_bundle_pem: Annotated[str | None, Field(description="PEM CA certificates; empty: the system trust store")] = None


def user_json(u: SmimeUser) -> dict[str, Any]:
    return {
        "id": u.id,
        "name": u.name,
        "email": u.email,
        "designation": u.designation,
        "source": u.source,
        "status": u.status.value,
        "expires_on": u.expires_on.isoformat() if u.expires_on else None,
        "directory_state": u.directory_state,  # None, "Disabled in directory" or "Not in directory"
        "revocation_reason": u.revocation_reason,  # RFC 5280 name, when status is Revoked
        "revoked_at": u.revoked_at.isoformat() if u.revoked_at else None,
        "renewal_attempts": u.renewal_attempts,
    }


def order_json(o: SmimeOrder) -> dict[str, Any]:
    return {
        "id": o.id,
        "state": o.state,
        "serial_number": o.serial_number,
        "ca_connector_id": o.ca_connector_id,
        "not_before": o.not_before.isoformat() if o.not_before else None,
        "expires_on": o.expires_on.isoformat() if o.expires_on else None,
        "revocation_reason": o.revocation_reason,
        "revoked_at": o.revoked_at.isoformat() if o.revoked_at else None,
        "error": o.error,
        "connector_note": o.connector_note,  # a renewal that could not use the connector of the certificate it renews
        "created_at": o.created_at.isoformat(),
    }


def profile_json(p: DirectoryProfile) -> dict[str, Any]:
    return {
        "id": p.id,
        "description": p.name,
        "client_id": p.client_id,
        "tenant_id": p.tenant_id,
        "has_client_secret": bool(p.client_secret),
        "ca_connector_id": p.ca_connector_id,
        "last_sync_at": p.last_sync_at.isoformat() if p.last_sync_at else None,
        "last_sync_status": p.last_sync_status,
        "last_sync_error": p.last_sync_error,
        "last_sync_report": p.last_sync_report,
        "authority_host": p.authority_host,
        "graph_base": p.graph_base,
        "has_ca_bundle": bool(p.ca_bundle_pem),
        # The profile's own delivery target (never its password); None: the S/MIME delivery setting's.
        "delivery": delivery_targets.profile_delivery_detail(p),
    }


def run_json(run: FlowRunRef) -> dict[str, str]:
    return {"id": run.id, "name": run.name, "url": run.url}


def saved_json(db: DbSession, p: DirectoryProfile, actor: str) -> dict[str, Any]:
    """The saved profile and its sync run (or why the run did not start: the profile stays saved)."""
    run, problem = svc.try_start_sync(db, p.id, actor)
    return {**profile_json(p), "sync_run": run_json(run) if run else None, "sync_error": problem}


@router.post("/smime-users", status_code=201, summary="Import Manually: add a user for S/MIME provisioning")
def import_user(body: ImportIn, db: DbSession, who: Operator) -> dict[str, Any]:
    return user_json(
        smime.import_user(db, name=body.name, email=body.email, designation=body.designation, actor=who.username)
    )


@router.post(
    "/smime-users/import",
    summary="Bulk import from a CSV or Excel file (Name, Email ID, Designation)",
    responses={
        201: {"description": "every row stored, or the good rows when accept_good is true"},
        422: {"description": "nothing stored: the per-row report says why"},
    },
)
def import_users(
    db: DbSession,
    who: Operator,
    file: Annotated[UploadFile, File(description="a .csv (UTF-8) or .xlsx file with a header row")],
    accept_good: Annotated[bool, Form(description="store the good rows even if some rows fail")] = False,
) -> JSONResponse:
    data = file.file.read()
    with db.begin_nested():
        report = bulk_import.import_file(
            db, data, file.filename or "upload", accept_good=accept_good, actor=who.username
        )
    return JSONResponse(report.as_json(), status_code=201 if report.stored or not report.bad else 422)


class RolloutIn(InputModel):
    user_ids: Annotated[list[RowId] | None, Field(description="default: every user awaiting an order")] = None
    ca_connector_id: Annotated[RowId | None, Field(description="default: the profile's, else the built-in CA")] = None
    filter: Annotated[UserFilter | None, Field(description="only the users awaiting an order that match it")] = None
    delivery: Annotated[
        str | None,
        Field(
            description="one target for the whole run: setting, profile:<id> (that profile's own target) or "
            "folder:<absolute path>; default: each user's profile's own target, else the S/MIME delivery setting"
        ),
    ] = None


@router.post(
    "/smime-users/rollout",
    status_code=202,
    summary="Start smime-rollout: order, issue and deliver (all awaiting, a selection, or a filter)",
    description="`users` is how many users match now (the run looks again when it starts). A filter part that "
    "cannot match (unknown source or profile, a status a rollout never orders for) is refused with 422.",
)
def start_rollout(body: RolloutIn, db: DbSession, who: Operator) -> dict[str, Any]:
    run = svc.start_rollout(db, who.username, body.user_ids, body.ca_connector_id, body.filter, body.delivery)
    return {**run_json(run), "users": svc.rollout_matches(db, body.user_ids, body.filter)}


class RevokeIn(InputModel):
    reason: str = Field(description="RFC 5280 reason name: " + ", ".join(REASONS))
    serial_number: str | None = Field(
        default=None, description="one serial (hex) of the user's; default: every valid certificate of the user"
    )


@router.get("/smime-users/{user_id}", summary="An S/MIME user and their orders (serials, states, revocations)")
def user_detail(user_id: RowId, db: DbSession, who: Viewer) -> dict[str, Any]:
    user = repo.get(db, SmimeUser, user_id)
    orders = db.scalars(select(SmimeOrder).where(SmimeOrder.user_id == user.id).order_by(SmimeOrder.id.desc()))
    return {**user_json(user), "orders": [order_json(o) for o in orders]}


@router.post(
    "/smime-users/{user_id}/revoke",
    status_code=202,
    summary="Start a revoke-smime-user run: the issuing CA revokes the user's certificates (RFC 5280 reason)",
    description="For a leaver (flagged by the directory sync) or any user on request; the user becomes Revoked "
    "with reason and time, never deleted. Refused with 422 and the reason when nothing valid is left to revoke, "
    "the serial is not the user's, or `reason` is not an RFC 5280 reason name.",
)
def revoke(user_id: RowId, body: RevokeIn, db: DbSession, who: Operator) -> dict[str, str]:
    return run_json(svc.start_revocation(db, user_id, body.reason, who.username, body.serial_number))


@router.post(
    "/smime-users/{user_id}/reenroll",
    summary="Re-enroll a Revoked user: back to Awaiting Order, so the next rollout orders a new certificate",
    description="A rollout never picks a Revoked user by itself; this puts them back on purpose (audited). Refused "
    "with 422 and the reason when the user is not Revoked, or the directory lists them disabled or no longer.",
)
def reenroll(user_id: RowId, db: DbSession, who: Operator) -> dict[str, Any]:
    return user_json(smime.reenroll(db, user_id, who.username))


@router.post("/smime-users/{user_id}/ignore", summary="Ignore Email: exclude the user from provisioning")
def ignore(user_id: RowId, db: DbSession, who: Operator) -> dict[str, Any]:
    return user_json(smime.ignore_email(db, user_id, who.username))


@router.get("/directory-profiles", summary="Azure AD profiles (never their secrets)")
def profiles(db: DbSession, who: Viewer) -> list[dict[str, Any]]:
    return [profile_json(p) for p in smime.profiles(db)]


@router.post("/directory-profiles", status_code=201, summary="Create a new profile (Azure AD app credentials)")
def create_profile(body: ProfileIn, db: DbSession, who: Admin) -> dict[str, Any]:
    """Starts a sync-directory run for the new profile (`sync_run`; `sync_error` says why when it could not)."""
    return saved_json(db, smime.save_profile(db, smime.ProfileFields(**body.model_dump()), who.username), who.username)


@router.put(
    "/directory-profiles/{profile_id}", summary="Change a profile (an empty client_secret keeps the stored one)"
)
def update_profile(profile_id: RowId, body: ProfileIn, db: DbSession, who: Admin) -> dict[str, Any]:
    fields_in = smime.ProfileFields(**body.model_dump())
    return saved_json(db, smime.save_profile(db, fields_in, who.username, profile_id=profile_id), who.username)


@router.post("/directory-profiles/{profile_id}/sync", summary="Sync now: start a sync-directory run for the profile")
def sync_profile(profile_id: RowId, db: DbSession, who: Operator) -> dict[str, Any]:
    return run_json(svc.start_sync(db, profile_id, who.username))


_DELIVERY = Body(description="method (folder, smb, email) and that method's fields; the password is write-only")


@router.put(
    "/directory-profiles/{profile_id}/delivery",
    summary="Set the profile's own delivery target (folder, SMB share or e-mail) for its users",
    description="The same flat body as PUT /smime-delivery; the password is stored encrypted and never returned "
    "(left out when the method stays the same, the stored one is kept). A refused value is a 422 naming the field.",
)
def put_profile_delivery(
    profile_id: RowId, db: DbSession, who: Admin, body: dict[str, Any] = _DELIVERY
) -> dict[str, Any]:
    return profile_json(delivery_targets.save_profile_delivery(db, profile_id, body, who.username))


@router.delete(
    "/directory-profiles/{profile_id}/delivery",
    summary="Clear the profile's own delivery target: its users go to the S/MIME delivery setting's",
)
def delete_profile_delivery(profile_id: RowId, db: DbSession, who: Admin) -> dict[str, Any]:
    return profile_json(delivery_targets.clear_profile_delivery(db, profile_id, who.username))


@router.delete("/directory-profiles/{profile_id}", summary="Delete a profile (its users stay, unlinked)")
def delete_profile(profile_id: RowId, db: DbSession, who: Admin) -> dict[str, Any]:
    return {"deleted": profile_id, "description": smime.delete_profile(db, profile_id, who.username)}
