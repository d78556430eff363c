"""S/MIME users and directory profiles: import, Ignore Email, profiles (secret encrypted), counts.

The dashboard, the API, the CLI and the flows all call these; field rules come from certfleet.fields.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session

from certfleet import fields
from certfleet.ca_admin.forms import https_url
from certfleet.fields import InputError
from certfleet.models import repo
from certfleet.models.orm import CAConnector, DirectoryProfile, SmimeOrder, SmimeStatus, SmimeUser, utcnow
from certfleet.smime.rollout import smime_problem

MANUAL_SOURCE = "Manual Import"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
PROVISIONED = (SmimeStatus.CERTIFICATE_ISSUED, SmimeStatus.CERTIFICATE_INSTALLED)

USER_NAME = fields.Name(200)
DESIGNATION = fields.Name(200)
PROFILE_NAME = fields.Name(120)  # shown as the profile's "description" (the manual's label)
CLIENT_SECRET = fields.Secret(1024)
EMAIL = fields.Email()


def email_taken(session: Session, address: str) -> bool:
    return (
        session.scalar(
            select(SmimeUser.id).where(or_(SmimeUser.email == address, func.lower(SmimeUser.email) == address.lower()))
        )
        is not None
    )


def import_user(session: Session, *, name: str, email: str, designation: str | None, actor: str) -> SmimeUser:
    """Stored exactly as sent; an address already listed in any letter case is refused."""
    full_name = USER_NAME.check(name, "name")
    address = EMAIL.check(email, "email")
    if email_taken(session, address):
        raise InputError(f"email: {address} is already in the S/MIME list", field="email")
    user = SmimeUser(
        name=full_name,
        email=address,
        designation=DESIGNATION.check_optional(designation, "designation"),
        source=MANUAL_SOURCE,
        status=SmimeStatus.AWAITING_ORDER,
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    repo.audit(session, actor=actor, action="import-smime-user", obj=user, detail=address)
    return user


def ignore_email(session: Session, user_id: int, actor: str) -> SmimeUser:
    user = repo.get(session, SmimeUser, user_id)
    user.status = SmimeStatus.IGNORED
    repo.audit(session, actor=actor, action="ignore-smime-user", obj=user, detail=user.email)
    return user


def reenroll(session: Session, user_id: int, actor: str) -> SmimeUser:
    """Put a Revoked user back to Awaiting Order, on purpose (a rollout never picks a Revoked user by itself): the
    next rollout orders a new key and certificate. Their orders keep the revocation history; the user's revocation
    reason, time and Expiry Date (of the revoked certificate) are cleared. Refused with the reason for a user who
    is not Revoked, or whom the directory lists disabled or no longer lists (a rollout would leave them alone)."""
    user = repo.get(session, SmimeUser, user_id)
    if user.status is not SmimeStatus.REVOKED:
        raise InputError(f"{user.email} is {user.status.value}, not Revoked: only a revoked user is re-enrolled")
    if user.directory_state is not None:
        raise InputError(f"{user.email} is {user.directory_state.lower()}: enable the user in the directory and "
                         "sync, then re-enroll")  # fmt: skip
    was = f"{user.revocation_reason or 'unspecified'}"
    if user.revoked_at is not None:
        was += f", {user.revoked_at:%Y-%m-%d %H:%M} UTC"
    user.status = SmimeStatus.AWAITING_ORDER
    user.revocation_reason, user.revoked_at, user.expires_on = None, None, None
    user.renewal_attempts, user.renewal_next_attempt_at = 0, None
    repo.audit(session, actor=actor, action="reenroll-smime-user", obj=user,
               detail=f"{user.email}: Revoked ({was}) -> Awaiting Order")  # fmt: skip
    return user


@dataclass(frozen=True)
class ProfileFields:
    client_id: str
    client_secret: str  # empty on edit: keep the stored one
    tenant_id: str
    description: str
    ca_connector_id: str | int | None = None
    # Empty or None: the public cloud's endpoints and the system trust store.
    authority_host: str | None = None
    graph_base: str | None = None
    ca_bundle_pem: str | None = None


def _guid(value: str, field: str) -> str:
    """A GUID as Azure shows it; stored as written (Azure compares GUIDs without regard to case)."""
    if not _GUID.fullmatch(value or ""):  # fullmatch: "$" alone would let a final newline through
        raise InputError(f"{field}: must be a GUID like 00000000-0000-0000-0000-000000000000", field=field)
    return value


def _endpoint(value: str | None, field: str) -> str | None:
    if not value:
        return None
    try:
        if value != value.strip():
            raise ValueError(f"{field} has spaces around it")
        https_url(value, field)
    except ValueError as exc:
        raise InputError(f"{field}: {exc}", field=field) from None
    return value


def _bundle(value: str | None) -> str | None:
    if not value:
        return None
    if "-----BEGIN CERTIFICATE-----" not in value:
        raise InputError("ca_bundle_pem: must be PEM certificates (-----BEGIN CERTIFICATE-----)", field="ca_bundle_pem")
    try:
        ssl.create_default_context(cadata=value)
    except (ssl.SSLError, ValueError) as exc:
        raise InputError(f"ca_bundle_pem: not valid PEM certificates ({exc})", field="ca_bundle_pem") from None
    return value


def save_profile(
    session: Session, profile_fields: ProfileFields, actor: str, profile_id: int | None = None
) -> DirectoryProfile:
    name = PROFILE_NAME.check(profile_fields.description, "description")
    clash = session.scalar(
        select(DirectoryProfile.id).where(DirectoryProfile.name == name, DirectoryProfile.id != (profile_id or -1))
    )
    if clash is not None:
        raise InputError(f"a profile named {name!r} already exists", field="description")
    profile = repo.get(session, DirectoryProfile, profile_id) if profile_id else DirectoryProfile(created_at=utcnow())
    profile.name = name
    profile.client_id = _guid(profile_fields.client_id, "client_id")
    profile.tenant_id = _guid(profile_fields.tenant_id, "tenant_id")
    if profile_fields.client_secret:
        profile.client_secret = CLIENT_SECRET.check(profile_fields.client_secret, "client_secret")
    elif profile_id is None:
        raise InputError("client_secret: required", field="client_secret")
    if profile_fields.ca_connector_id not in (None, "", "none"):
        try:
            connector = repo.get(session, CAConnector, int(profile_fields.ca_connector_id))
        except (ValueError, repo.NotFound):
            raise InputError("choose an existing CA connector", field="ca_connector_id") from None
        problem = smime_problem(connector)  # the profile's users are ordered from it
        if problem:
            raise InputError(f"ca_connector_id: {problem}", field="ca_connector_id")
        profile.ca_connector_id = connector.id
    profile.authority_host = _endpoint(profile_fields.authority_host, "authority_host")
    profile.graph_base = _endpoint(profile_fields.graph_base, "graph_base")
    profile.ca_bundle_pem = _bundle(profile_fields.ca_bundle_pem)
    if profile_id is None:
        session.add(profile)
    else:  # a renamed profile renames the Source of its users
        session.execute(update(SmimeUser).where(SmimeUser.profile_id == profile.id).values(source=name))
    session.flush()
    repo.audit(session, actor=actor, action="save-directory-profile", obj=profile, detail=name)
    return profile


def profiles(session: Session) -> list[DirectoryProfile]:
    return list(session.scalars(select(DirectoryProfile).order_by(DirectoryProfile.name)))


def delete_profile(session: Session, profile_id: int, actor: str) -> str:
    profile = repo.get(session, DirectoryProfile, profile_id)
    session.execute(update(SmimeUser).where(SmimeUser.profile_id == profile.id).values(profile_id=None))
    repo.audit(session, actor=actor, action="delete-directory-profile", obj=profile, detail=profile.name)
    session.delete(profile)
    return profile.name


def counts(session: Session) -> dict[str, int]:
    from certfleet.smime.revocation import leavers_to_revoke  # it imports directory_sync, which imports this module

    total, awaiting, provisioned, revoked = session.execute(
        select(
            func.count(SmimeUser.id),
            func.sum(case((SmimeUser.status == SmimeStatus.AWAITING_ORDER, 1), else_=0)),
            func.sum(case((SmimeUser.status.in_(PROVISIONED), 1), else_=0)),
            func.sum(case((SmimeUser.status == SmimeStatus.REVOKED, 1), else_=0)),
        )
    ).one()
    # Orders the CA issued: a renewed user's earlier order stays Installed; a revoked one was issued all the same.
    issued_states = [SmimeStatus.CERTIFICATE_ISSUED.value, SmimeStatus.CERTIFICATE_INSTALLED.value,
                     SmimeStatus.REVOKED.value]  # fmt: skip
    orders, csr_pending, issued = session.execute(
        select(
            func.count(SmimeOrder.id),
            func.sum(case((SmimeOrder.state == SmimeStatus.CSR_PENDING.value, 1), else_=0)),
            func.sum(case((SmimeOrder.state.in_(issued_states), 1), else_=0)),
        )
    ).one()
    return {
        "total": int(total or 0),
        "awaiting": int(awaiting or 0),
        "provisioned": int(provisioned or 0),
        "revoked": int(revoked or 0),
        "leavers_to_revoke": leavers_to_revoke(session),
        "orders": int(orders or 0),  # S/MIME orders only (TLS orders are on the Orders page)
        "orders_csr_pending": int(csr_pending or 0),
        "orders_issued": int(issued or 0),
    }
