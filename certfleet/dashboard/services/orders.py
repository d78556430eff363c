"""Provisioning Orders and the audit log: read-only lists."""

from __future__ import annotations

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from certfleet.dashboard.listing import ColType, Column, ListSpec
from certfleet.models.orm import AuditEvent, CAConnector, Certificate, Order, OrderState

ORDERS = ListSpec(
    name="orders",
    title="Provisioning Orders",
    base=lambda: (
        select(Order.id)
        .join(Certificate, Certificate.id == Order.certificate_id)
        .join(CAConnector, CAConnector.id == Order.ca_connector_id)
    ),
    pk=Order.id,
    default_sort="-id",
    columns=(
        Column("id", "Order", Order.id, ColType.NUMBER, default=True, width=8),
        Column("common_name", "Certificate", Certificate.common_name, default=True, width=28),
        Column("profile", "Profile", Certificate.profile, default=True, width=10),
        Column("ca_connector", "CA Connector", CAConnector.name, default=True),
        Column("state", "State", Order.state, ColType.ENUM, default=True, choices=tuple(OrderState), width=12),
        Column("ca_order_id", "CA Order ID", Order.ca_order_id, default=True),
        Column("serial_number", "Serial Number", Order.serial_number, default=True, width=34),
        Column("created_at", "Created", Order.created_at, ColType.DATE, default=True),
        Column("updated_at", "Updated", Order.updated_at, ColType.DATE),
        Column("error", "Error", Order.error, width=40),
        Column("flow_run_id", "Flow Run", Order.flow_run_id, filterable=False, sortable=False, width=36),
    ),
)

AUDIT = ListSpec(
    name="audit",
    title="Audit Log",
    base=lambda: select(AuditEvent.id),
    pk=AuditEvent.id,
    default_sort="-id",
    columns=(
        Column("at", "When", AuditEvent.at, ColType.DATE, default=True),
        Column("actor", "Who", AuditEvent.actor, default=True),
        Column("action", "Action", AuditEvent.action, default=True),
        Column("object_type", "Object", AuditEvent.object_type, default=True, width=14),
        Column("object_id", "Object ID", AuditEvent.object_id, default=True, width=10),
        Column("outcome", "Outcome", AuditEvent.outcome, default=True, width=10),
        Column("detail", "Detail", AuditEvent.detail, default=True, width=40),
    ),
)

CSR_PENDING = (OrderState.CREATED,)  # CSR made, not yet submitted to the CA


def tile_counts(session: Session) -> dict[str, int]:
    total, csr_pending, issued = session.execute(
        select(
            func.count(Order.id),
            func.sum(case((Order.state.in_(CSR_PENDING), 1), else_=0)),
            func.sum(case((Order.state == OrderState.ISSUED, 1), else_=0)),
        )
    ).one()
    return {"total": int(total or 0), "csr_pending": int(csr_pending or 0), "issued": int(issued or 0)}
