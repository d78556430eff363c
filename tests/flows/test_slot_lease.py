"""How the connector rate limit's local lease sizes and renews its chunks: never more than the limit grants.

The Prefect call is replaced by a recorder (the live limit is tested in test_ca_rate_limit.py): what is checked
here is the arithmetic that keeps a slow Prefect server from stalling the threads while each chunk stays within
half the burst and is used only within its own decay time.
"""

from __future__ import annotations

import threading
import time

import pytest

from certfleet.tasks.ca_runtime import MAX_WINDOW_S, MIN_WINDOW_S, _SlotLease


def _lease(monkeypatch: pytest.MonkeyPatch, rate: float, burst: int, latency: float) -> tuple[_SlotLease, list[int]]:
    lease = _SlotLease("ca-connector-1", rate, burst)
    asked: list[int] = []

    def acquire(chunk: int) -> float:
        asked.append(chunk)
        return latency

    monkeypatch.setattr(lease, "_acquire", acquire)
    return lease, asked


def _settled(lease: _SlotLease) -> None:
    deadline = time.monotonic() + 5
    while lease.fetching and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not lease.fetching


def test_a_slow_prefect_call_makes_chunks_cover_four_times_its_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    lease, asked = _lease(monkeypatch, rate=200.0, burst=1000, latency=0.45)
    lease.take()
    _settled(lease)
    # A quarter second of 200/s first; the call took 0.45 s, so the next chunk (asked for at once, in the
    # background, as the first lives less than half a window) is 1.8 s worth, good for 1.8 s from its grant.
    assert asked == [50, 360]
    assert lease.next is not None
    assert lease.next[0] == 360
    assert lease.next[1] - time.monotonic() == pytest.approx(1.8, abs=0.1)


def test_the_next_chunk_is_used_without_waiting_for_prefect(monkeypatch: pytest.MonkeyPatch) -> None:
    lease, asked = _lease(monkeypatch, rate=40.0, burst=1000, latency=0.6)
    lease.take()
    _settled(lease)
    assert asked == [10, 80]  # the first chunk, and the next one in the background
    for _ in range(9):  # the rest of the first chunk
        lease.take()
    assert asked == [10, 80]
    lease.take()
    assert lease.left == 79  # the prefetched chunk took over without a call
    _settled(lease)
    assert asked == [10, 80]  # the third is asked for only once this one has less than half a window left


def test_an_expired_chunk_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    lease, asked = _lease(monkeypatch, rate=40.0, burst=100, latency=0.0)
    lease.take()
    _settled(lease)
    lease.next = (10, time.monotonic() - 0.01)  # granted, but the server has already counted it as decayed
    lease.expires = time.monotonic() - 0.01
    lease.take()
    assert asked[-1] == 10
    assert lease.left == 9  # a fresh chunk, asked for in the foreground


def test_a_chunk_never_exceeds_half_the_burst_or_the_longest_window(monkeypatch: pytest.MonkeyPatch) -> None:
    lease, _ = _lease(monkeypatch, rate=20.0, burst=400, latency=5.0)
    lease.take()
    _settled(lease)
    assert lease.window == MAX_WINDOW_S
    assert lease.size() == (40, pytest.approx(2.0))  # 2 s of 20/s
    lease, _ = _lease(monkeypatch, rate=15.0, burst=5, latency=5.0)
    lease.take()
    _settled(lease)
    assert lease.size() == (2, pytest.approx(2 / 15))  # half the burst, good only until it decays


def test_a_fast_prefect_call_keeps_quarter_second_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    lease, asked = _lease(monkeypatch, rate=20.0, burst=40, latency=0.01)
    lease.take()
    _settled(lease)
    assert lease.window == MIN_WINDOW_S
    assert asked == [5]  # ceil(20 / 4) slots per call
    assert lease.size() == (5, pytest.approx(0.25))


def test_a_take_waits_for_the_chunk_asked_for_in_the_background_instead_of_asking_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lease = _SlotLease("ca-connector-1", 40.0, 1000)
    asked: list[int] = []
    granting = threading.Event()

    def acquire(chunk: int) -> float:
        asked.append(chunk)
        if len(asked) == 2:  # the background call: Prefect answers only when the test says so
            granting.wait(30)
        return 0.6

    monkeypatch.setattr(lease, "_acquire", acquire)
    lease.take()
    assert lease.fetching  # the next chunk is under way in the background
    lease.expires = time.monotonic() - 0.01  # the first chunk ran out meanwhile
    taker = threading.Thread(target=lease.take)
    taker.start()
    taker.join(0.5)  # it waits for the chunk under way (with a second call it would be done by now)
    granting.set()
    taker.join(30)
    assert not taker.is_alive()
    assert asked == [10, 80]  # no second call while one was under way
    assert lease.left == 79


def test_the_next_chunk_is_sized_to_what_the_threads_take_when_that_is_less_than_the_limits_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lease, asked = _lease(monkeypatch, rate=200.0, burst=1000, latency=0.5)
    lease.take()
    _settled(lease)
    assert asked == [50, 400]  # nothing measured yet: a quarter second, then a full 2 s window of the rate
    lease.left = 0  # the first chunk is spent
    lease.take()  # the prefetched chunk comes into use
    assert lease.chunk == 400
    # The threads took 11 slots in the last second of this chunk, which has half a window left.
    lease.started = time.monotonic() - 1.0
    lease.left = lease.chunk - 11
    lease.expires = time.monotonic() + 0.9
    lease.take()
    _settled(lease)
    # Twice 11-12 slots/s over the chunk's 2 s, not 400: slots dropped unused would only spend the limit.
    assert len(asked) == 3
    assert 40 <= asked[-1] <= 48
    assert lease.next is not None
    assert lease.next[1] - time.monotonic() == pytest.approx(2.0, abs=0.2)  # good for a full chunk's decay time
