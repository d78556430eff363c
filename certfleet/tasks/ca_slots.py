"""The slots of `rotate-ca-<id>` (a batch's ca_concurrency) that rotate-batch's CA calls hold, lent out by this
process to its threads."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.concurrency.sync import concurrency

LINGER_S = 1.0  # a held slot of `rotate-ca-<id>` nobody used for this long is given back to Prefect
_log = logging.getLogger(__name__)


def ca_limit(connector_id: int) -> str:
    """Not `ca-connector-<id>`: that one is the connector's rate limit (slots decay), this one holds slots."""
    return f"rotate-ca-{connector_id}"


class _CaSlots:
    """Slots of one `rotate-ca-<id>` limit held by this process and lent to its threads, one thread per slot.

    Taking a slot from Prefect is a call to its server, and Prefect queues a process's calls for one limit one
    after another: 1-2 s a slot on a busy server, which rotate-batch paid for every group of every server. Here a
    slot taken from Prefect stays with a holder thread (which entered Prefect's `concurrency()` and keeps its lease
    renewed) while this process's threads use it one after another; it is given back once one of the held slots
    has been idle for LINGER_S, or when the batch ends (`release_ca_slots`). The limit still bounds the CA calls
    of every process together (each call holds one slot, lent to one thread at a time); another process waits at
    most LINGER_S longer for a slot this one no longer uses."""

    def __init__(self, name: str, cap: int) -> None:
        self.name = name
        self.cap = cap  # the limit's slots: no more holders than that ask Prefect at once
        self.cond = threading.Condition()
        self.free = 0  # held slots not lent out
        self.held = 0  # slots held from Prefect
        self.asking = 0  # holders waiting for Prefect's answer
        self.waiting = 0  # threads waiting for a slot
        self.holders: list[threading.Thread] = []
        self.busy_at = time.monotonic()  # when the held slots were last all in use (or one was last given back)
        self.failure: BaseException | None = None
        self.failures = 0
        self.lost = 0  # held slots whose holder failed while they were lent out
        self.closing = False

    @contextmanager
    def slot(self) -> Iterator[None]:
        self._take()
        try:
            yield
        finally:
            with self.cond:
                if self.lost:  # its holder lost the slot at Prefect meanwhile: it is not lent again
                    self.lost -= 1
                else:
                    self.free += 1
                self.cond.notify_all()

    def _take(self) -> None:
        with self.cond:
            self.waiting += 1
            seen = self.failures
            try:
                while self.free == 0:
                    if self.failures != seen and self.failure is not None:
                        raise self.failure
                    if self.asking < self.waiting and self.asking + self.held < self.cap:
                        self.asking += 1
                        holder = threading.Thread(
                            target=contextvars.copy_context().run,  # this run's Prefect settings (API URL)
                            args=(self._hold,),
                            name=f"hold-{self.name}",
                            daemon=True,
                        )
                        self.holders.append(holder)
                        holder.start()
                    self.cond.wait()
                self.free -= 1
                if self.free == 0:
                    self.busy_at = time.monotonic()
            finally:
                self.waiting -= 1

    def _hold(self) -> None:
        granted = released = False
        try:
            with concurrency(self.name, strict=True), self.cond:
                granted = True
                self.asking -= 1
                self.held += 1
                self.free += 1
                self.cond.notify_all()
                while True:
                    idle = time.monotonic() - self.busy_at
                    if self.free > 0 and self.waiting == 0 and (self.closing or idle >= LINGER_S):
                        self.free -= 1
                        self.held -= 1
                        self.busy_at = time.monotonic()
                        released = True
                        break
                    self.cond.wait(timeout=None if self.free == 0 else max(0.01, LINGER_S - idle))
        except BaseException as exc:  # the waiting threads raise it: each would have got it from Prefect
            with self.cond:
                if not granted:
                    self.asking -= 1
                    self.failure = exc
                    self.failures += 1
                elif not released:  # e.g. Prefect could not renew the lease: the slot is no longer lent
                    self.held -= 1
                    if self.free > 0:
                        self.free -= 1
                    else:
                        self.lost += 1
            if granted:  # the slot was lost or not given back: its lease runs out at Prefect
                _log.warning("slot of %s not given back: %s", self.name, exc)
        finally:
            with self.cond:
                self.holders.remove(threading.current_thread())
                self.cond.notify_all()

    def close(self, timeout: float = 10.0) -> None:
        """Give back every held slot once it is no longer lent out (the batch is over)."""
        with self.cond:
            self.closing = True
            self.cond.notify_all()
            holders = list(self.holders)
        for holder in holders:
            holder.join(timeout)


_ca_slots: dict[tuple[str, str], _CaSlots] = {}
_ca_slots_lock = threading.Lock()


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value() or "")


def _pool(connector_id: int) -> _CaSlots:
    key = (ca_limit(connector_id), _api_url())  # a test's Prefect server is not the next one's
    with _ca_slots_lock:
        pool = _ca_slots.get(key)
    if pool is None:
        cap = _slots_of(key[0])  # a call to Prefect: not under the lock
        with _ca_slots_lock:
            pool = _ca_slots.setdefault(key, _CaSlots(key[0], cap))
    return pool


@contextmanager
def ca_slot(connector_id: int) -> Iterator[None]:
    """One slot of `rotate-ca-<id>` for this thread's calls to the CA, from the slots this process holds."""
    with _pool(connector_id).slot():
        yield


def ca_slots(connector_id: int) -> int:
    """How many calls to the CA `rotate-ca-<id>` allows at once (the batch's ca_concurrency)."""
    return _pool(connector_id).cap


def _slots_of(name: str) -> int:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            return max(1, client.read_global_concurrency_limit_by_name(name).limit)
    except ObjectNotFound:  # taking a slot says so (strict)
        return 1


def release_ca_slots() -> None:
    """Give back the `rotate-ca-<id>` slots this process holds (the end of a batch)."""
    with _ca_slots_lock:
        pools = list(_ca_slots.values())
        _ca_slots.clear()
    for pool in pools:
        pool.close()
