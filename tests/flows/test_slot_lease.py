"""How the connector rate limit's local lease sizes its chunks: never more than the limit grants.

The Prefect call is replaced by a recorder (the live limit is tested in test_ca_rate_limit.py): what is checked
here is the arithmetic that keeps a slow Prefect server from stalling the threads while the chunk stays within
the burst and is dropped after its decay time.
"""

from __future__ import annotations

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


def test_a_slow_prefect_call_makes_the_next_chunk_cover_twice_its_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    lease, asked = _lease(monkeypatch, rate=200.0, burst=1000, latency=0.6)
    lease.take()
    assert asked == [50]  # a quarter second of 200/s to start with
    assert lease.size() == (240, pytest.approx(1.2))  # then 2 x 0.6 s worth, good for its decay time
    lease.left = 0
    lease.take()
    assert asked == [50, 240]


def test_a_chunk_never_exceeds_the_burst_or_the_longest_window(monkeypatch: pytest.MonkeyPatch) -> None:
    lease, _ = _lease(monkeypatch, rate=20.0, burst=40, latency=5.0)
    lease.take()
    assert lease.window == MAX_WINDOW_S
    assert lease.size() == (40, pytest.approx(2.0))  # 2 s of 20/s = 40 = the burst
    lease, _ = _lease(monkeypatch, rate=15.0, burst=5, latency=5.0)
    lease.take()
    assert lease.size() == (5, pytest.approx(5 / 15))  # the burst caps it; good only until it decays


def test_a_fast_prefect_call_keeps_quarter_second_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    lease, asked = _lease(monkeypatch, rate=20.0, burst=40, latency=0.01)
    for _ in range(6):
        lease.take()
    assert lease.window == MIN_WINDOW_S
    assert asked == [5, 5]  # ceil(20 / 4) slots per call, as before
