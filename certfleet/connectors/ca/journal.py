"""What a CA connector needs to know about certfleet's own orders, without touching the database.

The task layer writes an Order row (with its idempotency key) before any CA is called. A connector
records the CA's order id through `OrderJournal.placed` the moment the CA answers, in its own committed
unit of work, so a crash while polling or downloading resumes that CA order instead of placing another.
On a retry, `prior` tells the connector what an earlier attempt left behind.

The CA may accept an order and the process die before the answer is recorded (the worker killed, the
connection dropped after the request went out). For that window a connector writes, just before the call,
whatever will let it find the order again (`sending`: emSign's transaction id), and a retry whose earlier
outcome is unknown (`PriorOrder.unknown`) reconciles with the CA before it orders again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class PriorOrder:
    """What earlier attempts of the same order left: the CA's order id (if recorded) and how many ran."""

    ca_order_id: str | None = None
    attempts: int = 0  # earlier submissions of this order; >0 with no id means an earlier outcome is unknown
    request_ref: str | None = None  # what the last attempt wrote just before calling the CA (`sending`)

    @property
    def unknown(self) -> bool:
        """An earlier attempt may have reached the CA, and no CA order id was recorded."""
        return self.ca_order_id is None and self.attempts > 0


@dataclass(frozen=True)
class IssuedOrder:
    """An issued certificate as certfleet recorded it: the CA's order id and the PEM chain it received."""

    ca_order_id: str | None
    pem_chain: str | None


class OrderJournal(Protocol):
    def prior(self, idempotency_key: str) -> PriorOrder: ...

    def sending(self, idempotency_key: str, request_ref: str) -> None: ...

    def placed(self, idempotency_key: str, ca_order_id: str) -> None: ...

    def issued(self, serial_number: int) -> IssuedOrder | None: ...

    def latest(self) -> str | None:
        """The CA order id this connector recorded last (AD CS: the newest request id certfleet knows)."""
        ...


@dataclass
class MemoryOrderJournal:
    """The journal of a connector used outside a flow (tests, test-connection): kept in memory."""

    orders: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    by_serial: dict[int, IssuedOrder] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def prior(self, idempotency_key: str) -> PriorOrder:
        with self._lock:
            seen = self.attempts.get(idempotency_key, 0)
            self.attempts[idempotency_key] = seen + 1
            return PriorOrder(self.orders.get(idempotency_key), seen, self.refs.get(idempotency_key))

    def sending(self, idempotency_key: str, request_ref: str) -> None:
        with self._lock:
            self.refs[idempotency_key] = request_ref

    def placed(self, idempotency_key: str, ca_order_id: str) -> None:
        with self._lock:
            self.orders.pop(idempotency_key, None)
            self.orders[idempotency_key] = ca_order_id  # dicts keep insertion order: the last is the latest

    def latest(self) -> str | None:
        with self._lock:
            return next(reversed(self.orders.values()), None)

    def issued(self, serial_number: int) -> IssuedOrder | None:
        with self._lock:
            return self.by_serial.get(serial_number)

    def remember_issued(self, serial_number: int, ca_order_id: str | None, pem_chain: str | None) -> None:
        with self._lock:
            self.by_serial[serial_number] = IssuedOrder(ca_order_id, pem_chain)
