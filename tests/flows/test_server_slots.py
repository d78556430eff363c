"""A rotate-batch stage's server slots: all taken in one call or none, held until the stage ends, then given back."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError

from certfleet.tasks.rotation import server_limit
from certfleet.tasks.server_slots import LimitMissing, SlotsLost, StageSlots


def _active(server_id: int) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(server_limit(server_id)).active_slots


def _limits(*server_ids: int) -> None:
    with get_client(sync_client=True) as client:
        for server_id in server_ids:
            client.upsert_global_concurrency_limit_by_name(server_limit(server_id), 1)


def _in_thread(fn: Callable[[], None]) -> threading.Thread:
    """Run in a copy of this context, as Prefect's task runner threads do (the test server's API URL)."""
    thread = threading.Thread(target=contextvars.copy_context().run, args=(fn,), daemon=True)
    thread.start()
    return thread


def _until(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_second_stage_on_a_server_waits_for_the_first_and_holds_none_of_its_other_servers_meanwhile() -> None:
    _limits(9101, 9102, 9103)
    granted = threading.Event()
    release_second = threading.Event()

    def second() -> None:
        with StageSlots([9102, 9103]):
            granted.set()
            release_second.wait(60)

    with StageSlots([9101, 9102]) as first:
        assert first.server_ids == {9101, 9102}
        assert (_active(9101), _active(9102)) == (1, 1)
        waiting = _in_thread(second)
        # All or nothing: while it waits for 9102, the second stage holds no slot of 9103, so a third stage on
        # 9103 alone goes ahead (a stage that took 9103 first and then waited would block it).
        with StageSlots([9103]):
            assert _active(9103) == 1
        assert not granted.is_set()
        assert _active(9103) == 0
    assert granted.wait(60)  # the first stage gave its slots back: the second's turn
    assert (_active(9101), _active(9102), _active(9103)) == (0, 1, 1)
    release_second.set()
    waiting.join(60)
    assert not waiting.is_alive()
    assert (_active(9102), _active(9103)) == (0, 0)


def test_a_stage_that_fails_gives_its_slots_back() -> None:
    _limits(9111, 9112)
    seen: list[int] = []

    def stage() -> None:
        with StageSlots([9111, 9112]):
            seen.extend([_active(9111), _active(9112)])
            raise RuntimeError("server task crashed")

    with pytest.raises(RuntimeError, match="server task crashed"):
        stage()
    assert seen == [1, 1]
    assert (_active(9111), _active(9112)) == (0, 0)


def test_a_missing_limit_refuses_the_stage_and_it_holds_nothing() -> None:
    _limits(9121)
    # Prefect grants the limits that exist and skips a missing one, even with strict=True.
    with pytest.raises(LimitMissing, match="rotate-server-9122"):  # rotate-server-9122 was never created
        StageSlots([9121, 9122]).__enter__()
    assert _active(9121) == 0
    with pytest.raises(ConcurrencySlotAcquisitionError):  # none exists: Prefect refuses
        StageSlots([9123]).__enter__()


def test_a_stage_without_servers_asks_prefect_nothing() -> None:
    with StageSlots([]) as slots:
        slots.check()
    assert slots.lost is None


def test_slots_whose_lease_prefect_cannot_renew_are_lost_and_the_stage_starts_nothing_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _limits(9131)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Prefect did not renew the lease")

    monkeypatch.setattr(SyncPrefectClient, "renew_concurrency_lease", refuse)  # renewed at once, then each 225 s
    with StageSlots([9131]) as slots:
        # Prefect's renewal gives up after its retries and raises in the thread that holds the slots.
        assert _until(lambda: slots.lost is not None)
        with pytest.raises(SlotsLost):
            slots.check()
