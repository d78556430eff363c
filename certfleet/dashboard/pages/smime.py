"""S/MIME Provisioning pages: the users list, Import Manually, Create a new profile, Ignore Email."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from certfleet.dashboard.deps import Admin, DbSession, Operator, Viewer
from certfleet.dashboard.errors import InputError, flash
from certfleet.dashboard.lists import add_export_page, page_context
from certfleet.dashboard.services import smime as svc
from certfleet.dashboard.templating import render
from certfleet.models import repo
from certfleet.models.orm import CAConnector, SmimeOrder, SmimeStatus, SmimeUser
from certfleet.revocation import REASONS
from certfleet.smime import bulk_import, delivery_targets, revocation, selection
from certfleet.smime import service as smime
from certfleet.smime.selection import UserFilter

router = APIRouter()
add_export_page(router, svc.SMIME_USERS)


@router.get("/smime", response_class=HTMLResponse)
def smime_page(request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    sources = list(db.scalars(select(SmimeUser.source).distinct().order_by(SmimeUser.source)))
    orderable = [s.value for s in selection.ORDERABLE]
    profiles = smime.profiles(db)
    delivery_choices = [("", "— each user's profile's target, else the delivery setting —"),
                        ("setting", "the S/MIME delivery setting, for everyone")]  # fmt: skip
    delivery_choices += [(f"profile:{p.id}", f"{p.name}'s target, for everyone") for p in profiles if p.delivery_method]
    ctx = page_context(request, db, who, svc.SMIME_USERS, counts=smime.counts(db), profiles=profiles,
                       sources=sources, orderable=orderable, delivery_choices=delivery_choices)  # fmt: skip
    return render(request, "smime/list.html", ctx)


@router.get("/smime/import", response_class=HTMLResponse)
def import_form(request: Request, who: Operator) -> HTMLResponse:
    return render(request, "smime/import.html", {"title": "Import Manually", "v": {}})


@router.post("/smime/import", response_class=HTMLResponse)
def import_user(
    request: Request,
    db: DbSession,
    who: Operator,
    name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    designation: Annotated[str, Form()] = "",
) -> Response:
    try:
        # An empty designation input means none (a form cannot send null).
        user = smime.import_user(db, name=name, email=email, designation=designation or None, actor=who.username)
    except InputError as exc:
        v = {"name": name, "email": email, "designation": designation}
        return render(request, "smime/import.html", {"title": "Import Manually", "v": v, "error": exc}, 422)
    response = RedirectResponse("/smime", status_code=303)
    flash(response, f"{user.email} added: Awaiting Order", "success")
    return response


@router.post("/smime/import/file", response_class=HTMLResponse)
def import_file(
    request: Request,
    db: DbSession,
    who: Operator,
    file: Annotated[UploadFile, File()],
    accept_good: Annotated[str, Form()] = "",
) -> Response:
    """A CSV or Excel file: every row checked; stored all, or the good rows when the user accepts them, or nothing."""
    data = file.file.read()
    ctx: dict[str, object] = {"title": "Import Manually", "v": {}, "accept_good": bool(accept_good)}
    try:
        with db.begin_nested():
            report = bulk_import.import_file(
                db, data, file.filename or "upload", accept_good=bool(accept_good), actor=who.username
            )
    except InputError as exc:
        return render(request, "smime/import.html", {**ctx, "bulk_error": exc}, 422)
    status = 422 if report.bad and not report.stored else 200
    return render(request, "smime/import.html", {**ctx, "report": report, "filename": file.filename}, status)


@router.post("/smime/rollout")
def rollout(
    db: DbSession,
    who: Operator,
    source: Annotated[str, Form()] = "",
    status: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
    delivery: Annotated[str, Form()] = "",
    delivery_folder: Annotated[str, Form()] = "",
) -> Response:
    """Every user awaiting an order, or (from the filter form) those matching source, status and name/e-mail;
    delivered to each user's target, or to one target for the whole run (Deliver to, or a folder)."""
    try:
        wanted = UserFilter(source=source or None, status=[SmimeStatus(status)] if status else None, text=text or None)
    except ValueError:
        raise InputError(f"status: not a status a rollout orders for: {status!r}", field="status") from None
    if delivery and delivery_folder:
        raise InputError("delivery_folder: choose a target in Deliver to or a folder, not both", "delivery_folder")
    choice = f"folder:{delivery_folder}" if delivery_folder else delivery or None
    run = svc.start_rollout(db, who.username, user_filter=wanted, delivery=choice)
    matched = svc.rollout_matches(db, None, wanted)
    response = RedirectResponse("/smime", status_code=303)
    what = "" if wanted.is_empty() else f" for {matched} user(s) matching {wanted.describe()}"
    what += f", delivered to {choice}" if choice else ""
    flash(
        response,
        f"started {run.name}{what}: statuses change as each user's certificate is issued and delivered",
        "success",
    )
    return response


@router.post("/smime/{user_id}/ignore")
def ignore(user_id: int, db: DbSession, who: Operator) -> Response:
    user = smime.ignore_email(db, user_id, who.username)
    response = RedirectResponse("/smime", status_code=303)
    flash(response, f"{user.email} is ignored", "success")
    return response


def _profiles_context(db: DbSession, v: dict[str, str], error: InputError | None = None) -> dict[str, object]:
    connectors = [(i, n) for i, n in db.execute(select(CAConnector.id, CAConnector.name).order_by(CAConnector.name))]
    profiles = smime.profiles(db)
    delivery = {}
    for p in profiles:
        own = delivery_targets.profile_delivery_detail(p)
        delivery[p.id] = own["summary"] if own else None
    ctx: dict[str, object] = {"title": "Connect to Azure AD", "profiles": profiles, "connectors": connectors,
                              "delivery": delivery}  # fmt: skip
    ctx.update(v=v, error=error)
    return ctx


@router.get("/smime/profiles", response_class=HTMLResponse)
def profiles_page(request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    return render(request, "smime/profiles.html", _profiles_context(db, {}))


@router.post("/smime/profiles", response_class=HTMLResponse)
def create_profile(
    request: Request,
    db: DbSession,
    who: Admin,
    client_id: Annotated[str, Form()] = "",
    client_secret: Annotated[str, Form()] = "",
    tenant_id: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    ca_connector_id: Annotated[str, Form()] = "",
    authority_host: Annotated[str, Form()] = "",
    graph_base: Annotated[str, Form()] = "",
    ca_bundle_pem: Annotated[str, Form()] = "",
) -> Response:
    fields = smime.ProfileFields(
        client_id, client_secret, tenant_id, description, ca_connector_id, authority_host, graph_base, ca_bundle_pem
    )
    try:
        with db.begin_nested():  # a savepoint: rolling back the request's own transaction broke the page (500)
            profile = smime.save_profile(db, fields, who.username)
    except InputError as exc:
        v = {"client_id": client_id, "tenant_id": tenant_id, "description": description,
             "authority_host": authority_host, "graph_base": graph_base, "ca_bundle_pem": ca_bundle_pem}  # fmt: skip
        return render(request, "smime/profiles.html", _profiles_context(db, v, exc), 422)
    run, problem = svc.try_start_sync(db, profile.id, who.username)
    response = RedirectResponse("/smime/profiles", status_code=303)
    if run is not None:
        flash(response, f"profile {profile.name} saved; started {run.name}: the profile shows the result", "success")
    else:
        flash(response, f"profile {profile.name} saved, but its sync did not start: {problem}", "error")
    return response


@router.post("/smime/profiles/{profile_id}/sync")
def sync_now(profile_id: int, db: DbSession, who: Operator) -> Response:
    run = svc.start_sync(db, profile_id, who.username)
    response = RedirectResponse("/smime/profiles", status_code=303)
    flash(response, f"started {run.name}: the profile shows the result when the run ends", "success")
    return response


@router.post("/smime/profiles/{profile_id}/delete")
def delete_profile(profile_id: int, db: DbSession, who: Admin) -> Response:
    name = smime.delete_profile(db, profile_id, who.username)
    response = RedirectResponse("/smime/profiles", status_code=303)
    flash(response, f"profile {name} deleted", "success")
    return response


# `:int` so /smime/profiles, /smime/import and /smime/delivery (another router) never reach the user's page.
@router.get("/smime/{user_id:int}", response_class=HTMLResponse)
def user_detail(user_id: int, request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    u = repo.get(db, SmimeUser, user_id)
    orders = list(db.scalars(select(SmimeOrder).where(SmimeOrder.user_id == u.id).order_by(SmimeOrder.id.desc())))
    try:
        revocable = revocation.check_revocable(db, u.id)
        serials, refused = revocable.serials, None
    except InputError as exc:
        serials, refused = [], exc.message
    leaver = u.directory_state in revocation.LEAVER_STATES
    revoke = {
        "reasons": REASONS,
        "serials": serials,
        "refused": refused,
        "leaver": leaver,
        "default_reason": revocation.LEAVER_REASON if leaver else "unspecified",
    }
    ctx = {"title": u.email, "u": u, "orders": orders, "revoke": revoke, "connectors": _connector_names(db)}
    return render(request, "smime/detail.html", ctx)


def _connector_names(db: DbSession) -> dict[int, str]:
    return {i: n for i, n in db.execute(select(CAConnector.id, CAConnector.name))}


@router.post("/smime/{user_id:int}/reenroll")
def reenroll(user_id: int, db: DbSession, who: Operator) -> Response:
    user = smime.reenroll(db, user_id, who.username)
    response = RedirectResponse(f"/smime/{user_id}", status_code=303)
    flash(response, f"{user.email} re-enrolled: Awaiting Order; the next rollout orders a new certificate", "success")
    return response


@router.post("/smime/{user_id:int}/revoke")
def revoke(
    user_id: int,
    db: DbSession,
    who: Operator,
    reason: Annotated[str, Form()] = "",
    serial_number: Annotated[str, Form()] = "",
) -> Response:
    run = svc.start_revocation(db, user_id, reason, who.username, serial_number or None)
    response = RedirectResponse(f"/smime/{user_id}", status_code=303)
    flash(response, f"started {run.name} in Prefect: {run.url}", "success")
    return response
