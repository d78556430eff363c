"""rotate-batch's slots of `rotate-ca-<id>`: held by the process, lent to one thread at a time, given back."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prefect.client.orchestration import get_client

from certfleet.tasks import ca_slots
from certfleet.tasks.ca_slots import ca_limit, ca_slot, release_ca_slots

USERS = 6


def _active(name: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


def _limit(name: str, slots: int) -> None:
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, slots)


def test_threads_share_the_slots_the_process_holds_never_more_than_the_limit_and_give_them_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = ca_limit(9001)
    _limit(name, 2)
    monkeypatch.setattr(ca_slots, "LINGER_S", 3600.0)  # kept until the batch ends: reuse is certain
    taken: list[int] = []
    real = ca_slots.concurrency

    @contextmanager
    def counted(*args: Any, **kwargs: Any) -> Iterator[None]:
        taken.append(1)
        with real(*args, **kwargs):
            yield

    monkeypatch.setattr(ca_slots, "concurrency", counted)
    lock = threading.Lock()
    using = 0
    most = 0
    seen_at_prefect: list[int] = []

    def use() -> None:
        nonlocal using, most
        for _ in range(3):
            with ca_slot(9001):
                with lock:
                    using += 1
                    most = max(most, using)
                seen_at_prefect.append(_active(name))
                with lock:
                    using -= 1

    # Each thread runs in a copy of this context, as Prefect's task runner threads do: the test server's API URL
    # is a settings context here, not an environment variable.
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(use,)) for _ in range(USERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads)
    assert len(seen_at_prefect) == 3 * USERS
    assert 1 <= most <= 2  # one thread per held slot
    assert all(1 <= n <= 2 for n in seen_at_prefect)  # each use held a slot at Prefect
    assert 1 <= len(taken) <= 2  # 18 uses, one or two slots taken from Prefect
    release_ca_slots()
    assert _active(name) == 0


def test_an_idle_slot_is_given_back_after_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    name = ca_limit(9002)
    _limit(name, 1)
    monkeypatch.setattr(ca_slots, "LINGER_S", 0.2)
    with ca_slot(9002):
        assert _active(name) == 1
    pool = ca_slots._pool(9002)
    for holder in list(pool.holders):
        holder.join(60)
    assert _active(name) == 0
    release_ca_slots()


def test_a_missing_limit_fails_the_thread_that_asks() -> None:
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError

    with pytest.raises(ConcurrencySlotAcquisitionError), ca_slot(9003):
        pass
    release_ca_slots()
