"""Queries and small writes shared by tasks, the CLI and the dashboard. Each takes the session first."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from cryptography import x509
from sqlalchemy import insert, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import InstrumentedAttribute, Session

from certfleet.models.orm import (
    AuditEvent,
    Base,
    CAConnector,
    ConnectorStatus,
    Deployment,
    DeploymentStep,
    Order,
    OrderState,
    Revocation,
    StepState,
    utcnow,
)
from certfleet.pki.parse import serial_hex

T = TypeVar("T", bound=Base)


class NotFound(LookupError):
    """An id names no row; the message says which."""


def get(session: Session, model: type[T], ident: int) -> T:
    row = session.get(model, ident)
    if row is None:
        raise NotFound(f"{model.__name__} {ident} does not exist")
    return row


def audit(
    session: Session,
    *,
    actor: str,
    action: str,
    obj: Base,
    outcome: str = "success",
    detail: str | None = None,
) -> None:
    event = {
        "at": utcnow(),
        "actor": actor,
        "action": action,
        "object_type": type(obj).__name__,
        "object_id": str(getattr(obj, "id", "")),
        "outcome": outcome,
        "detail": detail,
    }
    batch = session.info.get(_AUDIT_BATCH)
    if batch is not None:
        batch.append(event)
    else:
        session.add(AuditEvent(**event))


_AUDIT_BATCH = "certfleet.audit-batch"


@contextmanager
def audits_together(session: Session) -> Iterator[None]:
    """The audit events of the block written at its end in one statement (a group's: the ORM writes each new row
    on its own, to learn its id, which no one needs of an audit event). Inside another such block: that one's.
    An exception out of the block writes none of them: use it where that exception rolls the transaction back."""
    if _AUDIT_BATCH in session.info:
        yield
        return
    events: list[dict[str, Any]] = []
    session.info[_AUDIT_BATCH] = events
    try:
        yield
    finally:
        del session.info[_AUDIT_BATCH]
    if events:
        session.execute(insert(AuditEvent), events)


def insert_ids(
    session: Session, model: type[Base], rows: list[dict[str, Any]], *key: InstrumentedAttribute[Any]
) -> dict[tuple[Any, ...], int]:
    """Rows of `model` inserted in one statement; each new id by the row's values of `key` (unique among the rows).

    RETURNING rows come in no promised order (SQLite promises none), and asking SQLAlchemy for the rows' order
    makes it insert one row at a time on SQLite, as the unit of work does to learn each id: so ids are matched by
    a key instead."""
    if not rows:
        return {}
    (id_column,) = sa_inspect(model).primary_key
    added = session.execute(insert(model).returning(id_column, *key), rows)
    return {tuple(row[1:]): row[0] for row in added}


def note_order(order: Order, state: OrderState, note: str = "") -> None:
    """Move an order to a state and keep the step in its history."""
    order.state = state
    order.history = [*(order.history or []), {"at": utcnow().isoformat(), "state": state.value, "note": note}]


OPEN_ORDER_STATES = (OrderState.CREATED, OrderState.SUBMITTED, OrderState.PENDING)


def open_order_for(session: Session, certificate_id: int) -> Order | None:
    """The order still under way for a certificate, which a rerun must reuse instead of ordering again."""
    return open_orders_for(session, [certificate_id]).get(certificate_id)


def open_orders_for(session: Session, certificate_ids: list[int]) -> dict[int, Order]:
    """`open_order_for` of many certificates in one query: by certificate, its newest open order."""
    rows = session.scalars(
        select(Order)
        .where(Order.certificate_id.in_(certificate_ids), Order.state.in_(OPEN_ORDER_STATES))
        .order_by(Order.id)
    )
    return {order.certificate_id: order for order in rows}  # the newest is written last: it wins


def connector_credentials(connector: CAConnector) -> dict[str, Any]:
    return dict(json.loads(connector.credentials)) if connector.credentials else {}


def set_connector_credentials(connector: CAConnector, values: dict[str, Any]) -> None:
    connector.credentials = json.dumps(values)


def active_connector(session: Session, connector_id: int | None) -> CAConnector:
    if connector_id is None:
        raise NotFound("no CA connector is configured for this certificate")
    connector = get(session, CAConnector, connector_id)
    if connector.status is not ConnectorStatus.ACTIVE:
        raise NotFound(f"CA connector {connector.name!r} is disabled: it places no new orders")
    return connector


def next_step_seq(deployment: Deployment) -> int:
    return max((s.seq for s in deployment.steps), default=0) + 1


def journal(
    session: Session,
    deployment: Deployment,
    *,
    action: str,
    path: str | None = None,
    backup_path: str | None = None,
    detail: str | None = None,
    undo: dict[str, Any] | None = None,
) -> DeploymentStep:
    step = DeploymentStep(
        deployment=deployment,
        seq=next_step_seq(deployment),
        action=action,
        path=path,
        backup_path=backup_path,
        detail=detail,
        undo=undo,
        state=StepState.PLANNED,
    )
    session.add(step)
    return step


class DbRevocationStore:
    """The built-in CA's revocation list, kept in the `revocations` table."""

    def __init__(self, session: Session, connector_id: int) -> None:
        self.session = session
        self.connector_id = connector_id

    def add(self, serial_number: int, reason: x509.ReasonFlags, at: datetime) -> None:
        serial = serial_hex(serial_number)
        exists = self.session.scalar(
            select(Revocation).where(
                Revocation.ca_connector_id == self.connector_id, Revocation.serial_number == serial
            )
        )
        if exists is None:  # revoking twice keeps the first date, as a CA must
            self.session.add(
                Revocation(
                    ca_connector_id=self.connector_id,
                    serial_number=serial,
                    reason=reason.value,
                    revoked_at=at,
                )
            )
            self.session.flush()

    def revoked(self) -> Sequence[tuple[int, x509.ReasonFlags, datetime]]:
        rows = self.session.scalars(
            select(Revocation).where(Revocation.ca_connector_id == self.connector_id).order_by(Revocation.id)
        )
        return [(int(r.serial_number, 16), x509.ReasonFlags(r.reason), r.revoked_at) for r in rows]
