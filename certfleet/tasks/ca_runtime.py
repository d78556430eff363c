"""What remote CA connectors get when tasks build them: the database order journal and a Prefect rate limit.

- `DbOrderJournal` records a CA order id the moment the CA answers, in its own committed unit of work, so
  a crash between "CA accepted" and "recorded" resumes the CA order instead of placing a second one.
- Each connector has a Prefect global concurrency limit named `ca-connector-<id>` used as a rate limit
  (`limit` = burst, `slot_decay_per_second` = requests per second): every HTTP request a connector sends
  inside a flow first takes a slot, so a batch on any number of workers never bursts past what the CA
  allows. The limits are created idempotently: by `ensure_rate_limits()` at start-up, and lazily before
  the first request of a connector in a process.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy import select

from certfleet.ca_admin.runtime import RuntimeHooks
from certfleet.ca_admin.service import rate_limit_of
from certfleet.connectors.ca.journal import IssuedOrder, OrderJournal, PriorOrder
from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError
from certfleet.connectors.servers.transport import Transport
from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector, Order, OrderState
from certfleet.pki.parse import serial_hex

MAX_WAIT_S = 600.0  # longest a request waits for a slot before its task gives up (and retries)
MIN_WINDOW_S, MAX_WINDOW_S = 0.25, 2.0  # seconds of a limit's rate taken from Prefect in one call


def limit_name(connector_id: int) -> str:
    return f"ca-connector-{connector_id}"


class DbOrderJournal:
    def __init__(self, connector_id: int) -> None:
        self.connector_id = connector_id

    def prior(self, idempotency_key: str) -> PriorOrder:
        with session_scope() as s:
            order = s.scalar(select(Order).where(Order.idempotency_key == idempotency_key))
            if order is None:
                return PriorOrder()
            submitted = sum(1 for h in order.history or [] if h.get("state") == OrderState.SUBMITTED.value)
            return PriorOrder(order.ca_order_id, max(0, submitted - 1), order.ca_request_ref)

    def sending(self, idempotency_key: str, request_ref: str) -> None:
        with session_scope() as s:  # committed before the CA is called
            order = s.scalar(select(Order).where(Order.idempotency_key == idempotency_key))
            if order is not None:
                order.ca_request_ref = request_ref

    def placed(self, idempotency_key: str, ca_order_id: str) -> None:
        with session_scope() as s:
            order = s.scalar(select(Order).where(Order.idempotency_key == idempotency_key))
            if order is None:
                return
            order.ca_order_id = ca_order_id
            order.certificate.ca_order_id = ca_order_id

    def latest(self) -> str | None:
        with session_scope() as s:
            return s.scalar(
                select(Order.ca_order_id)
                .where(Order.ca_connector_id == self.connector_id, Order.ca_order_id.is_not(None))
                .order_by(Order.id.desc())
                .limit(1)
            )

    def issued(self, serial_number: int) -> IssuedOrder | None:
        with session_scope() as s:
            order = s.scalar(
                select(Order)
                .where(Order.ca_connector_id == self.connector_id, Order.serial_number == serial_hex(serial_number))
                .order_by(Order.id.desc())
            )
            if order is None:
                return None
            pem = order.pem_chain or order.certificate.pem_chain
            return IssuedOrder(order.ca_order_id, pem)


def transports_for_order(idempotency_key: str) -> Sequence[Transport]:
    """The transports of the servers an order's certificate is deployed to (http-01 through a web root)."""
    from certfleet.tasks.build import build_transport  # build imports this module

    with session_scope() as s:
        order = s.scalar(select(Order).where(Order.idempotency_key == idempotency_key))
        if order is None:
            return []
        return [build_transport(t.server) for t in order.certificate.targets]


_ensured: dict[str, tuple[float, int]] = {}
_ensured_lock = threading.Lock()


def ensure_rate_limit(connector_id: int, per_second: float, burst: int) -> None:
    """Create or update the connector's Prefect rate limit (idempotent; once per process and setting)."""
    name = limit_name(connector_id)
    with _ensured_lock:
        if _ensured.get(name) == (per_second, burst):
            return
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.upsert_global_concurrency_limit_by_name(name, burst, slot_decay_per_second=per_second)
        _ensured[name] = (per_second, burst)


def ensure_rate_limits() -> list[str]:
    """At start-up: a rate limit for every remote connector. Returns the limit names."""
    with session_scope() as s:
        rows = [(c.id, *rate_limit_of(c)) for c in s.scalars(select(CAConnector).where(CAConnector.kind != "local"))]
    for connector_id, rate, burst in rows:
        ensure_rate_limit(connector_id, rate, burst)
    return [limit_name(r[0]) for r in rows]


def _in_prefect_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


class _SlotLease:
    """Slots of a connector's rate limit, taken from Prefect a few at a time and handed out locally.

    Measured on Prefect 3.9: `rate_limit(name)` one slot at a time delivers 9 of 20 slots/s, and under
    load far less, because a refused attempt restarts the server's decay clock and the server's
    Retry-After grows with every refusal. So slots are taken in chunks, and after a refusal this waits
    exactly one chunk's decay time before asking again. A chunk is good only for the decay time of a window's
    chunk (see below): slots left over are dropped, never saved up into a burst the limit did not grant.

    A chunk covers a window of the limit's rate: a quarter second, or four times as long as the last call to
    Prefect took (up to MAX_WINDOW_S, and never more than half the burst, so the next chunk can be granted
    while this one is in use). On a busy Prefect server a call took 0.5-0.8 s (rotate-batch on a loaded
    2-core machine): the threads then waited on Prefect for most of each window. So the next chunk is asked
    for in the background once the current one has less than half a window to live; a thread that finds the
    current chunk spent while the next is under way waits for it instead of asking Prefect a second time (two
    chunks at once would spend the limit twice as fast and be refused). Once a chunk has been in use for half a
    window, the next one is sized to twice the slots the threads take in MAX_WINDOW_S, when that is less than the
    limit's rate over it: rotate-batch took 20-60 of a 200/s limit, and full chunks dropped mostly unused spent
    the limit until Prefect refused the next (the threads then waited one chunk's decay time). Such a chunk is
    used only within the decay time of the longest chunk (MAX_WINDOW_S of the rate, at most half the burst) from
    when it was granted, so what the CA sees beyond what Prefect granted is never more than one chunk, as before.
    """

    def __init__(self, name: str, per_second: float, burst: int) -> None:
        self.name = name
        self.per_second = per_second
        self.burst = burst
        self.window = MIN_WINDOW_S
        self.latency = 0.0  # how long the last call to Prefect took
        self.left = 0
        self.expires = 0.0
        self.lock = threading.Lock()
        self.landed = threading.Condition(self.lock)  # a chunk asked for in the background was granted (or not)
        self.next: tuple[int, float] | None = None  # a chunk granted in the background: (slots, good until)
        self.fetching = False
        self.chunk = 0  # slots of the chunk in use
        self.started = 0.0  # when it came into use
        self.demand: float | None = None  # slots/s the threads took, measured over a chunk (None: not yet)

    def size(self, demand: float | None = None) -> tuple[int, float]:
        """Slots to ask for now, and how long they are good for: a window of the limit's rate; or, once the demand
        is measured, twice what the threads take in MAX_WINDOW_S when that is less than the limit's rate over it
        (unused slots are dropped: asking for them only spends the limit and gets the next chunk refused)."""
        full = max(1, min(max(1, self.burst // 2), math.ceil(self.per_second * self.window)))
        if demand is None:
            return full, full / self.per_second  # used only while the server still counts them
        longest = max(1, min(max(1, self.burst // 2), math.ceil(self.per_second * MAX_WINDOW_S)))
        # Good for the decay time of the longest chunk: what the CA sees beyond what Prefect granted is still
        # never more than one chunk.
        return max(1, min(longest, math.ceil(2 * demand * MAX_WINDOW_S))), longest / self.per_second

    def _measured(self, now: float) -> float | None:
        """The demand over the chunk in use, once it has been in use for half a window; else the last one."""
        elapsed = now - self.started
        if self.chunk and elapsed >= self.window / 2:
            return (self.chunk - self.left) / elapsed
        return self.demand

    def take(self) -> None:
        with self.lock:
            now = time.monotonic()
            if self.left <= 0 or now > self.expires:
                # A chunk asked for in the background is waited for, not asked for a second time in the foreground
                # (two chunks at once would spend the limit twice as fast and be refused).
                while self.fetching and (self.next is None or now > self.next[1]):
                    self.landed.wait(timeout=MAX_WAIT_S)
                    now = time.monotonic()
                self.demand = self._measured(now)
                if self.next is not None and now <= self.next[1]:
                    self.left, self.expires = self.next
                else:
                    chunk, ttl = self.size(self.demand)
                    latency = self._acquire(chunk)
                    self.left, self.expires = chunk, time.monotonic() + ttl
                    self.latency = latency
                    self.window = min(MAX_WINDOW_S, max(MIN_WINDOW_S, 4 * latency))
                self.next = None
                self.chunk, self.started = self.left, time.monotonic()
            self.left -= 1
            now = time.monotonic()
            running_out = self.expires - now < self.window / 2 or self.left * 2 < self.chunk
            if self.next is None and not self.fetching and running_out:
                self.fetching = True
                # The thread must see this run's Prefect settings (the API URL is a context variable).
                context = contextvars.copy_context()
                demand = self._measured(now)
                fetcher = threading.Thread(
                    target=context.run, args=(self._prefetch, demand), name=self.name, daemon=True
                )
                fetcher.start()

    def _prefetch(self, demand: float | None = None) -> None:
        try:
            chunk, ttl = self.size(demand)
            latency = self._acquire(chunk)
            with self.lock:
                self.next = (chunk, time.monotonic() + ttl)
                self.latency = latency
                self.window = min(MAX_WINDOW_S, max(MIN_WINDOW_S, 4 * latency))
        except Exception:  # noqa: S110 - the next take() asks in the foreground and reports what fails
            pass
        finally:
            with self.lock:
                self.fetching = False
                self.landed.notify_all()

    def _acquire(self, chunk: int) -> float:
        """Take `chunk` slots, waiting while none are free; returns how long the granting call took."""
        import httpx
        from prefect.client.orchestration import get_client

        deadline = time.monotonic() + MAX_WAIT_S
        with get_client(sync_client=True) as client:
            while True:
                started = time.monotonic()
                try:
                    granted = client.increment_concurrency_slots([self.name], chunk, "rate_limit").json()
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code != 423:  # 423 Locked: no slot free yet
                        raise
                    if time.monotonic() > deadline:
                        raise TransientConnectorError(
                            f"no slot of rate limit {self.name} came free in {MAX_WAIT_S:g} s; will retry"
                        ) from exc
                    time.sleep(chunk / self.per_second * 1.05)
                    continue
                if not granted:
                    raise PermanentConnectorError(f"the Prefect rate limit {self.name} does not exist")
                return time.monotonic() - started


_leases: dict[tuple[str, float, int], _SlotLease] = {}
_leases_lock = threading.Lock()


_throttles: dict[tuple[int, float, int], Callable[[], None]] = {}


def prefect_throttle(connector_id: int, per_second: float, burst: int) -> Callable[[], None]:
    """Take one slot of the connector's rate limit before each CA request (outside flows: no limit). One function
    per connector and setting in a process, so connectors built for each order can share a session (ACME)."""
    with _leases_lock:
        known = _throttles.get((connector_id, per_second, burst))
    if known is not None:
        return known
    name = limit_name(connector_id)

    def throttle() -> None:
        if not _in_prefect_run():
            return
        ensure_rate_limit(connector_id, per_second, burst)
        with _leases_lock:
            lease = _leases.setdefault((name, per_second, burst), _SlotLease(name, per_second, burst))
        lease.take()

    with _leases_lock:
        return _throttles.setdefault((connector_id, per_second, burst), throttle)


def runtime_hooks(connector: CAConnector, journal: OrderJournal | None = None) -> RuntimeHooks:
    rate, burst = rate_limit_of(connector)
    return RuntimeHooks(
        journal=journal or DbOrderJournal(connector.id),
        throttle=prefect_throttle(connector.id, rate, burst),
        transports_for=transports_for_order,
    )
