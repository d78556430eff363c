"""Starting a run: a Prefect server busy with its SQLite database (503) is asked again soon, not after 2 s."""

from __future__ import annotations

import httpx
import pytest
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES

from certfleet.deployments import starts


def _answer(status: int) -> PrefectHTTPStatusError:
    request = httpx.Request("POST", "http://prefect.test/api/deployments/x/create_flow_run")
    return PrefectHTTPStatusError("busy", request=request, response=httpx.Response(status, request=request))


def test_a_busy_server_is_asked_again_without_prefects_own_waits() -> None:
    retries_seen: list[int] = []

    def call() -> str:
        retries_seen.append(PREFECT_CLIENT_MAX_RETRIES.value())
        if len(retries_seen) < 3:
            raise _answer(503)
        return "created"

    assert starts.retry_busy_soon(call) == "created"
    assert retries_seen == [0, 0, 0]  # each try without the client's retries (their first wait is 2 s)


def test_any_other_failure_gets_one_call_with_prefects_own_retries() -> None:
    retries_seen: list[int] = []

    def call() -> str:
        retries_seen.append(PREFECT_CLIENT_MAX_RETRIES.value())
        if len(retries_seen) == 1:
            raise httpx.ConnectError("refused")
        return "created"

    assert starts.retry_busy_soon(call) == "created"
    assert retries_seen == [0, PREFECT_CLIENT_MAX_RETRIES.value()]
    assert retries_seen[1] > 0


def test_a_refusal_is_not_hidden() -> None:
    calls = []

    def call() -> str:
        calls.append(1)
        raise _answer(422)

    with pytest.raises(PrefectHTTPStatusError):
        starts.retry_busy_soon(call)
    assert len(calls) == 2  # the quick try, then the one with Prefect's retries, which fails the same way


def test_a_server_that_stays_busy_gets_prefects_retries_in_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(starts, "BUSY_FAST_RETRY_S", 0.2)
    retries_seen: list[int] = []

    def call() -> str:
        retries_seen.append(PREFECT_CLIENT_MAX_RETRIES.value())
        if retries_seen[-1] == 0:
            raise _answer(503)
        return "created"

    assert starts.retry_busy_soon(call) == "created"
    assert retries_seen[:-1] == [0] * (len(retries_seen) - 1)
    assert retries_seen[-1] > 0
