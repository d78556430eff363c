"""/api/v1/smime-users and /api/v1/directory-profiles: S/MIME provisioning users and Azure AD profiles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from certfleet import fields
from certfleet.dashboard.api.ids import RowId
from certfleet.dashboard.deps import Admin, DbSession, Operator, Viewer
from certfleet.dashboard.flows import FlowRunRef
from certfleet.dashboard.lists import add_list_api
from certfleet.dashboard.services import smime as svc
from certfleet.models.orm import DirectoryProfile, SmimeUser
from certfleet.smime import bulk_import
from certfleet.smime import service as smime

router = APIRouter(tags=["S/MIME"])
add_list_api(router, svc.SMIME_USERS, tag="S/MIME")


class ImportIn(BaseModel):
    name: Annotated[str, smime.USER_NAME]
    email: Annotated[str, fields.Email()]
    designation: Annotated[str, smime.DESIGNATION] | None = None


class ProfileIn(BaseModel):
    client_id: str
    client_secret: Annotated[str, Field(description="empty on update: keep the stored secret")] = ""
    tenant_id: str
    description: Annotated[str, smime.PROFILE_NAME]
    ca_connector_id: int | None = None
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


class RolloutIn(BaseModel):
    user_ids: Annotated[list[int] | None, Field(description="default: every user awaiting an order")] = None
    ca_connector_id: Annotated[int | None, Field(description="default: the profile's, else the built-in CA")] = None


@router.post("/smime-users/rollout", status_code=202, summary="Start smime-rollout: order, issue and deliver")
def start_rollout(body: RolloutIn, db: DbSession, who: Operator) -> dict[str, str]:
    return run_json(svc.start_rollout(db, who.username, body.user_ids, body.ca_connector_id))


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


@router.delete("/directory-profiles/{profile_id}", summary="Delete a profile (its users stay, unlinked)")
def delete_profile(profile_id: RowId, db: DbSession, who: Admin) -> dict[str, Any]:
    return {"deleted": profile_id, "description": smime.delete_profile(db, profile_id, who.username)}
