"""The order journal of S/MIME orders: what a remote CA connector (DigiCert, emSign) records on `smime_orders`.

Like the TLS orders' journal (certfleet.tasks.ca_runtime.DbOrderJournal), each write is its own committed unit of
work, so the CA's order id survives a crash between "the CA accepted" and the rollout recording the result, and a
retry polls that order instead of placing another.
"""

from __future__ import annotations

from sqlalchemy import select

from certfleet.connectors.ca.journal import IssuedOrder, PriorOrder
from certfleet.models.db import session_scope
from certfleet.models.orm import SmimeOrder
from certfleet.pki.parse import serial_hex


class SmimeOrderJournal:
    def __init__(self, connector_id: int) -> None:
        self.connector_id = connector_id

    def prior(self, idempotency_key: str) -> PriorOrder:
        with session_scope() as s:
            order = s.scalar(select(SmimeOrder).where(SmimeOrder.idempotency_key == idempotency_key))
            if order is None:
                return PriorOrder()
            # ca_submits counts this attempt too (certfleet.smime.rollout.start_submit wrote it before the call).
            return PriorOrder(order.ca_order_id, max(0, order.ca_submits - 1), order.ca_request_ref)

    def sending(self, idempotency_key: str, request_ref: str) -> None:
        with session_scope() as s:
            order = s.scalar(select(SmimeOrder).where(SmimeOrder.idempotency_key == idempotency_key))
            if order is not None:
                order.ca_request_ref = request_ref

    def placed(self, idempotency_key: str, ca_order_id: str) -> None:
        with session_scope() as s:
            order = s.scalar(select(SmimeOrder).where(SmimeOrder.idempotency_key == idempotency_key))
            if order is not None:
                order.ca_order_id = ca_order_id

    def latest(self) -> str | None:
        with session_scope() as s:
            return s.scalar(
                select(SmimeOrder.ca_order_id)
                .where(SmimeOrder.ca_connector_id == self.connector_id, SmimeOrder.ca_order_id.is_not(None))
                .order_by(SmimeOrder.id.desc())
                .limit(1)
            )

    def issued(self, serial_number: int) -> IssuedOrder | None:
        with session_scope() as s:
            order = s.scalar(
                select(SmimeOrder)
                .where(
                    SmimeOrder.ca_connector_id == self.connector_id,
                    SmimeOrder.serial_number == serial_hex(serial_number),
                )
                .order_by(SmimeOrder.id.desc())
                .limit(1)
            )
            return None if order is None else IssuedOrder(order.ca_order_id, order.pem_chain)
