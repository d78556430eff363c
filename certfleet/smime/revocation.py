"""Revoking S/MIME users' certificates: leavers (flagged by the directory sync) and anyone on request.

The checks here refuse with the reason (422) before a `revoke-smime-user` run starts; the run asks the connector
that issued each serial to revoke it (the TLS revocation's own call, certfleet.tasks.revocation.revoke_serial),
then records it. By default every certificate of the user that is still valid is revoked (after a renewal the
previous one is valid too); `serial_number` names one. The user becomes Revoked, with reason and time, when their
newest certificate is revoked; an order still waiting for its certificate is cancelled. The user is never deleted,
and renewal and rollout leave a Revoked user alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Exists

from certfleet.fields import InputError
from certfleet.models import repo
from certfleet.models.orm import AuditEvent, SmimeOrder, SmimeStatus, SmimeUser, utcnow
from certfleet.revocation import parse_reason
from certfleet.smime.directory_sync import DISABLED, VANISHED

FLOW = "revoke-smime-user"
REVOKED = SmimeStatus.REVOKED.value  # an order's state once its serial is revoked
CANCELLED = "Cancelled"  # an order that had no certificate yet when its user was revoked
LEAVER_STATES = (DISABLED, VANISHED)
# CA/Browser Forum S/MIME Baseline Requirements 4.9.1.1: the subscriber is no longer authorised to use the address.
LEAVER_REASON = x509.ReasonFlags.cessation_of_operation.value
_SERIAL = re.compile(r"[0-9A-F]{1,80}")
ACTOR = "flow:revoke-smime-user"


def valid_orders(session: Session, user_id: int, now: datetime) -> list[SmimeOrder]:
    """The user's certificates that are issued, not revoked and not expired, newest first."""
    return list(
        session.scalars(
            select(SmimeOrder)
            .where(
                SmimeOrder.user_id == user_id,
                SmimeOrder.serial_number.is_not(None),
                SmimeOrder.state != REVOKED,
                or_(SmimeOrder.expires_on.is_(None), SmimeOrder.expires_on > now),
            )
            .order_by(SmimeOrder.id.desc())
        )
    )


def has_valid_certificate(now: datetime) -> Exists:
    """SQL EXISTS, per SmimeUser row: the user holds a valid certificate (for tiles and lists)."""
    return exists().where(
        SmimeOrder.user_id == SmimeUser.id,
        SmimeOrder.serial_number.is_not(None),
        SmimeOrder.state != REVOKED,
        or_(SmimeOrder.expires_on.is_(None), SmimeOrder.expires_on > now),
    )


def leavers_to_revoke(session: Session) -> int:
    """Users the directory lists disabled or no longer lists who still hold a valid certificate."""
    return int(
        session.scalar(
            select(func.count(SmimeUser.id)).where(
                and_(SmimeUser.directory_state.in_(LEAVER_STATES), has_valid_certificate(utcnow()))
            )
        )
        or 0
    )


@dataclass(frozen=True)
class Revocable:
    user_id: int
    email: str
    serials: list[str]
    leaver: bool


def check_revocable(session: Session, user_id: int, serial: str | None = None) -> Revocable:
    """What a revoke would revoke, or InputError with the reason (already revoked, nothing issued, expired)."""
    if serial is not None and not _SERIAL.fullmatch(serial):
        raise InputError("serial_number must be a serial as certfleet lists it: 1 to 80 upper-case hex digits",
                         "serial_number")  # fmt: skip
    user = repo.get(session, SmimeUser, user_id)
    leaver = user.directory_state in LEAVER_STATES
    valid = valid_orders(session, user_id, utcnow())
    if serial is not None:
        named = select(SmimeOrder).where(SmimeOrder.user_id == user_id, SmimeOrder.serial_number == serial)
        order = session.scalar(named)
        if order is None:
            raise InputError(f"serial {serial} was not issued to {user.email} through certfleet", "serial_number")
        if order.state == REVOKED:
            raise InputError(f"serial {serial} of {user.email} is already revoked ({order.revocation_reason})",
                             "serial_number")  # fmt: skip
        if order not in valid:
            raise InputError(f"serial {serial} of {user.email} has expired: a CA no longer revokes or lists it",
                             "serial_number")  # fmt: skip
        return Revocable(user.id, user.email, [serial], leaver)
    if not valid:
        if user.status is SmimeStatus.REVOKED:
            when = f" on {user.revoked_at:%Y-%m-%d %H:%M} UTC" if user.revoked_at else ""
            raise InputError(f"{user.email} is already revoked ({user.revocation_reason or 'unspecified'}){when}")
        raise InputError(f"{user.email} has no valid certificate issued through certfleet (status {user.status.value})")
    return Revocable(user.id, user.email, [o.serial_number for o in valid if o.serial_number], leaver)


def flow_parameters(session: Session, user_id: int, reason: str, serial: str | None = None) -> dict[str, object]:
    flags = parse_reason(reason)
    revocable = check_revocable(session, user_id, serial)
    parameters: dict[str, object] = {"user_id": revocable.user_id, "reason": flags.value}
    if serial is not None:
        parameters["serial_number"] = serial
    return parameters


def record_start(session: Session, user_id: int, reason: str, actor: str, run: str) -> None:
    user = repo.get(session, SmimeUser, user_id)
    repo.audit(session, actor=actor, action=f"start-{FLOW}", obj=user, detail=f"{reason}; {run}")


def orders_to_revoke(session: Session, user_id: int, serial: str | None) -> list[tuple[int, int, str]]:
    """(order id, connector id, serial) for the run: the named serial, or every valid one (re-checked at run time)."""
    valid = valid_orders(session, user_id, utcnow())
    chosen = [o for o in valid if serial is None or o.serial_number == serial]
    return [(o.id, o.ca_connector_id, o.serial_number or "") for o in chosen]


def record_order_revoked(session: Session, order_id: int, reason: str) -> None:
    order = repo.get(session, SmimeOrder, order_id)
    if order.state == REVOKED:
        return  # recorded by an earlier run: keep its time
    order.state, order.revocation_reason, order.revoked_at = REVOKED, reason, utcnow()
    # Issued but not delivered yet: the key (and the sealed PKCS#12) of a revoked certificate are of no use.
    order.private_key, order.pkcs12, order.pkcs12_password = None, None, None
    session.add(AuditEvent(actor=ACTOR, action="revoke-smime", object_type="SmimeUser", object_id=str(order.user_id),
                           outcome="success", detail=f"serial {order.serial_number}; {reason}"))  # fmt: skip


def finish(session: Session, user_id: int, reason: str) -> bool:
    """The user is Revoked (with reason and time) once their newest certificate is; returns whether they are."""
    user = repo.get(session, SmimeUser, user_id)
    newest = session.scalar(
        select(SmimeOrder)
        .where(SmimeOrder.user_id == user_id, SmimeOrder.serial_number.is_not(None))
        .order_by(SmimeOrder.id.desc())
        .limit(1)
    )
    if newest is None or newest.state != REVOKED:
        return False
    if user.status is not SmimeStatus.REVOKED:
        user.status = SmimeStatus.REVOKED
        user.revocation_reason = reason
        user.revoked_at = newest.revoked_at or utcnow()
        user.renewal_attempts, user.renewal_next_attempt_at = 0, None
        repo.audit(session, actor=ACTOR, action="revoke-smime-user", obj=user, detail=f"{user.email}; {reason}")
    waiting = select(SmimeOrder).where(
        SmimeOrder.user_id == user_id,
        SmimeOrder.serial_number.is_(None),
        SmimeOrder.state == SmimeStatus.CSR_PENDING.value,
    )
    for order in session.scalars(waiting):
        order.state, order.error, order.private_key = CANCELLED, f"the user was revoked ({reason})", None
    return True
