"""rotate-batch's global concurrency limits: created when missing, updated when their slots differ, and left alone
(no write) when Prefect already has them right; every page of Prefect's limits is read."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client

from certfleet.flows import rotation as rotation_flow
from certfleet.tasks.ca_slots import ca_limit
from certfleet.tasks.rotation import PlanOutline, server_limit


def _slots(name: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).limit


def _plan(connector_ids: list[int], server_ids: list[int]) -> PlanOutline:
    return PlanOutline(counted=0, connector_ids=connector_ids, server_ids=server_ids, canaries=[], rest=[])


def test_missing_limits_are_created_wrong_ones_updated_right_ones_not_written(monkeypatch: pytest.MonkeyPatch) -> None:
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(server_limit(7101), 3)  # right already
        client.upsert_global_concurrency_limit_by_name(server_limit(7102), 9)  # the batch wants 3
    writes: list[str] = []
    real = rotation_flow._write_limit

    def counted(client: SyncPrefectClient, name: str, slots: int, exists: bool) -> None:
        writes.append(name)
        real(client, name, slots, exists)

    monkeypatch.setattr(rotation_flow, "_write_limit", counted)
    rotation_flow._ensure_limits(_plan([7100], [7101, 7102, 7103]), ca_concurrency=4, server_concurrency=3)

    assert sorted(writes) == sorted([ca_limit(7100), server_limit(7102), server_limit(7103)])
    assert _slots(ca_limit(7100)) == 4
    assert [_slots(server_limit(i)) for i in (7101, 7102, 7103)] == [3, 3, 3]
    writes.clear()
    rotation_flow._ensure_limits(_plan([7100], [7101, 7102, 7103]), ca_concurrency=4, server_concurrency=3)
    assert writes == []  # a second batch over the same servers writes nothing


def test_limits_beyond_the_first_page_are_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotation_flow, "LIMITS_PAGE", 2)  # several pages with a handful of limits
    with get_client(sync_client=True) as client:
        for server_id in range(7201, 7206):
            client.upsert_global_concurrency_limit_by_name(server_limit(server_id), 1)
        found = rotation_flow._limits_of(client, {server_limit(i) for i in range(7201, 7206)} | {"absent"})
    assert found == {server_limit(i): 1 for i in range(7201, 7206)}


def test_a_limit_created_meanwhile_by_another_run_is_updated_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(server_limit(7301), 5)  # "another run", after our read
        rotation_flow._write_limit(client, server_limit(7301), 2, exists=False)
    assert _slots(server_limit(7301)) == 2
