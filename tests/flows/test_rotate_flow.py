"""rotate-batch against real TLS listeners (built-in CA): canaries, failure budget, rollback, re-runs."""

from __future__ import annotations

import contextvars
import gc
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun
from sqlalchemy import func, select

from certfleet.demo.fleet import plan_fleet, register_fleet
from certfleet.deployments.names import bot_queue
from certfleet.deployments.serve import register, runner_deployments
from certfleet.flows import rotation as rotation_flow
from certfleet.flows.deployment import deploy_certificate
from certfleet.flows.rotation import RotationStopped, rotate_batch
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, Certificate, CertificateStatus, Order, RotationItem, utcnow
from certfleet.rotation.service import IGNORING_WINDOWS
from certfleet.tasks.ca_slots import ca_limit
from certfleet.tasks.rotation import server_limit
from certfleet.tasks.server_slots import StageSlots
from tests.flows.conftest import Site


@pytest.fixture
def fleet(boot: Bootstrapped, tmp_path: Path) -> Iterator[list[Site]]:
    hosts = plan_fleet(tmp_path / "fleet", 4)
    ids = register_fleet(hosts, ca_connector_id=boot.ca_connector_id, bot_id=boot.local_bot_id)
    sites = [Site(host, cert_id, host.listener()) for host, cert_id in zip(hosts, ids, strict=True)]
    for site in sites:
        site.listener.launch()
    try:
        yield sites
    finally:
        for site in sites:
            site.listener.stop()


def _break_reload(site: Site) -> None:
    """The operator pointed the server's reload at a command that does nothing: the new serial is never served."""
    with session_scope() as s:
        repo.get(s, Certificate, site.certificate_id).targets[0].server.reload_command = "true"


def _fix_reload(site: Site, command: str) -> None:
    with session_scope() as s:
        repo.get(s, Certificate, site.certificate_id).targets[0].server.reload_command = command


def _reload_of(site: Site) -> str:
    with session_scope() as s:
        return repo.get(s, Certificate, site.certificate_id).targets[0].server.reload_command or ""


def _orders(site: Site) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Order).where(Order.certificate_id == site.certificate_id)) or 0


def _items(key: str) -> dict[int, tuple[str, bool]]:
    with session_scope() as s:
        rows = s.scalars(select(RotationItem).where(RotationItem.batch_key == key))
        return {r.certificate_id: (r.state, r.canary) for r in rows}


def _story(site: Site) -> tuple[str | None, str | None, CertificateStatus]:
    """The row's newest issued serial, the serial it says is served, and its status."""
    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        return cert.serial_number, cert.served_serial_number, cert.status


def _status(site: Site) -> CertificateStatus:
    with session_scope() as s:
        return repo.get(s, Certificate, site.certificate_id).status


def test_a_batch_by_batch_name_rekeys_reissues_and_deploys_every_certificate(
    boot: Bootstrapped, fleet: list[Site]
) -> None:
    before = {site.certificate_id: site.served_serial() for site in fleet}
    with session_scope() as s:  # in the batch, but nothing to deploy it to
        lone = Certificate(common_name="lone.test", batch_name="demo", ca_connector_id=boot.ca_connector_id)
        s.add(lone)
        s.flush()
        lone_id = lone.id
    key = f"all-good-{uuid.uuid4().hex[:8]}"  # artifacts stay in the session's Prefect server: one key per run
    counts = rotate_batch(batch_name="demo", batch_key=key)
    assert counts["done"] == 4
    assert counts["skipped"] == 1
    assert counts["rolled_back"] == counts["failed"] == counts["not_started"] == counts["issued_not_deployed"] == 0
    with session_scope() as s:
        skipped = s.scalars(select(RotationItem).where(RotationItem.certificate_id == lone_id)).one()
        assert (skipped.state, skipped.reason) == ("Skipped", "no deployment targets: add one first")
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"rotation-{key}"]))
        )
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert sorted((r["server"].split(" (")[0], r["done"], r["rolled_back"], r["not_started"]) for r in rows) == sorted(
        [(f"Demo web server {site.host.name}", 1, 0, 0) for site in fleet] + [("(no server)", 0, 0, 0)]
    )
    for site in fleet:
        with session_scope() as s:
            cert = repo.get(s, Certificate, site.certificate_id)
            serial, status = cert.serial_number, cert.status
        assert status is CertificateStatus.DEPLOYED
        assert site.served_serial() == serial != before[site.certificate_id]
        assert _orders(site) == 1
    assert _items(key) == {
        lone_id: ("Skipped", False),
        **{site.certificate_id: ("Deployed", n == 0) for n, site in enumerate(fleet)},
    }  # one server type (generic): one canary, the first server's
    with get_client(sync_client=True) as client:  # the limits the batch took its slots from
        assert client.read_global_concurrency_limit_by_name(ca_limit(boot.ca_connector_id)).limit == 4
        server_id = _server_id(fleet[0])
        assert client.read_global_concurrency_limit_by_name(server_limit(server_id)).limit == 1


def _server_id(site: Site) -> int:
    with session_scope() as s:
        return repo.get(s, Certificate, site.certificate_id).targets[0].server_id


def test_a_failing_canary_stops_the_batch_before_anything_else_starts(fleet: list[Site]) -> None:
    before = {site.certificate_id: site.served_serial() for site in fleet}
    _break_reload(fleet[0])  # the first server's certificate is the canary
    with pytest.raises(RotationStopped, match="canary failed"):
        rotate_batch(certificate_ids=[s.certificate_id for s in fleet], batch_key="canary-fails")
    items = _items("canary-fails")
    assert items[fleet[0].certificate_id] == ("Failed", True)
    for site in fleet[1:]:
        assert items[site.certificate_id] == ("Not Started", False)
        assert _orders(site) == 0  # never ordered from the CA
        assert _status(site) is CertificateStatus.INITIATED
    assert [_active(_server_id(site)) for site in fleet] == [0, 0, 0, 0]  # the stopped stage gave its slots back
    assert {site.certificate_id: site.served_serial() for site in fleet} == before
    # One story: the canary's new certificate is issued, not served; the row says what the server serves.
    issued, served, status = _story(fleet[0])
    assert (served, status) == (before[fleet[0].certificate_id], CertificateStatus.ROLLED_BACK)
    assert issued is not None
    assert issued != served


def test_a_spent_failure_budget_stops_the_batch_and_rolls_back_what_it_deployed(fleet: list[Site]) -> None:
    before = {site.certificate_id: site.served_serial() for site in fleet}
    _break_reload(fleet[-1])
    with pytest.raises(RotationStopped, match="failure budget exceeded: 1 failed, at most 0 of 4"):
        rotate_batch(batch_name="demo", batch_key="budget")
    states = _items("budget")
    assert states[fleet[-1].certificate_id] == ("Failed", False)
    assert "Deployed" not in {state for state, _ in states.values()}
    assert states[fleet[0].certificate_id] == ("Rolled Back", True)  # the canary had succeeded
    # Every server serves what it served before the batch: nothing the batch changed is left.
    assert {site.certificate_id: site.served_serial() for site in fleet} == before
    for site in fleet:
        if states[site.certificate_id][0] == "Rolled Back":
            assert _status(site) is CertificateStatus.ROLLED_BACK
    # One story after the rollback: each row the batch issued a certificate for says the server serves what it
    # served before the batch (the new one stays the newest, issued but not deployed), the failed one's too.
    # (Under load a server's task may not have started before the stop: that row was never touched.)
    for site in fleet:
        issued, served, status = _story(site)
        if states[site.certificate_id][0] == "Not Started":
            assert (issued, served, status) == (None, None, CertificateStatus.INITIATED)
            continue
        assert served == before[site.certificate_id] != issued, site.certificate_id
        assert status is CertificateStatus.ROLLED_BACK


def test_a_stopped_rerotation_leaves_each_row_serving_its_previous_certificate(fleet: list[Site]) -> None:
    """After a first batch deployed everything, a second one stops: the rows' served serials are the first
    batch's again, their newest the second's (issued, not deployed), as after a failed renewal."""
    rotate_batch(batch_name="demo", batch_key="first-pass")
    first = {site.certificate_id: _story(site)[0] for site in fleet}
    _break_reload(fleet[-1])
    with pytest.raises(RotationStopped):
        rotate_batch(batch_name="demo", batch_key="second-pass")
    states = _items("second-pass")
    for site in fleet:
        issued, served, status = _story(site)
        if states[site.certificate_id][0] == "Not Started":  # its server's task had not started before the stop
            assert site.served_serial() == served == first[site.certificate_id] == issued
            assert status is CertificateStatus.DEPLOYED
            continue
        assert site.served_serial() == served == first[site.certificate_id] != issued
        assert status is CertificateStatus.ROLLED_BACK
    assert sum(state == "Not Started" for state, _ in states.values()) < len(fleet) - 1  # the canary, the failure


def _active(server_id: int) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(server_limit(server_id)).active_slots


def _until(condition: Callable[[], bool], seconds: float = 120.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_batch_waits_for_its_servers_turn_while_another_batch_holds_one_and_gives_every_slot_back(
    fleet: list[Site],
) -> None:
    servers = [_server_id(site) for site in fleet]
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(server_limit(servers[2]), 1)
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["counts"] = rotate_batch(batch_name="demo", batch_key="waits-its-turn")
        except BaseException as exc:
            outcome["error"] = exc

    with StageSlots([servers[2]]):  # another batch's stage is on the third server
        runner = threading.Thread(target=contextvars.copy_context().run, args=(run,))  # the test server's URL
        runner.start()
        # The canary's server is free: the canary stage goes ahead.
        assert _until(lambda: _items("waits-its-turn").get(fleet[0].certificate_id) == ("Deployed", True))
        # The other stage waits for the third server's turn, and starts none of its servers meanwhile.
        runner.join(3)
        assert runner.is_alive()
        assert {state for c, (state, _) in _items("waits-its-turn").items() if c != fleet[0].certificate_id} == {
            "Not Started"
        }
        assert [_active(server) for server in servers] == [0, 0, 1, 0]
    runner.join(300)
    assert not runner.is_alive()
    assert "error" not in outcome, outcome
    counts = outcome["counts"]
    assert isinstance(counts, dict)
    assert counts["done"] == 4
    assert [_active(server) for server in servers] == [0, 0, 0, 0]


def test_small_servers_packed_in_one_task_are_all_deployed(fleet: list[Site], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotation_flow, "PARALLEL_SERVERS", 1)  # the three servers after the canary: one pack
    before = {site.certificate_id: site.served_serial() for site in fleet}
    counts = rotate_batch(batch_name="demo", batch_key="packed")
    assert counts["done"] == 4
    for site in fleet:
        serial, served, status = _story(site)
        assert site.served_serial() == served == serial != before[site.certificate_id]
        assert status is CertificateStatus.DEPLOYED
        assert _orders(site) == 1


def test_the_batch_runs_its_stages_with_earlier_objects_frozen_and_puts_them_back(
    fleet: list[Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector's full collections skip what was there before the batch while its stages run (README,
    Performance), and everything is put back when it ends."""
    gc.unfreeze()
    frozen: list[int] = []
    run_stage = rotation_flow._run_stage

    def recording(*args: Any, **kwargs: Any) -> None:
        frozen.append(gc.get_freeze_count())
        run_stage(*args, **kwargs)

    monkeypatch.setattr(rotation_flow, "_run_stage", recording)
    assert rotate_batch(batch_name="demo", batch_key="frozen")["done"] == len(fleet)
    assert frozen
    assert all(count > 0 for count in frozen)
    assert gc.get_freeze_count() == 0


def test_a_server_whose_config_test_fails_in_a_pack_fails_alone_and_the_packs_other_servers_are_deployed(
    fleet: list[Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rotation_flow, "PARALLEL_SERVERS", 1)  # the three servers after the canary: one pack
    before = {site.certificate_id: site.served_serial() for site in fleet}
    with session_scope() as s:  # the operator broke the middle server's config test
        repo.get(s, Certificate, fleet[2].certificate_id).targets[0].server.config_test_command = "false"
    counts = rotate_batch(batch_name="demo", batch_key="packed-test-fails", failure_budget=0.5)
    assert (counts["done"], counts["failed"]) == (3, 1)
    items = _items("packed-test-fails")
    assert items[fleet[2].certificate_id] == ("Failed", False)
    assert fleet[2].served_serial() == before[fleet[2].certificate_id]  # its files were put back
    for site in (fleet[0], fleet[1], fleet[3]):  # each server of the pack tested and reloaded on its own
        serial, served, status = _story(site)
        assert site.served_serial() == served == serial != before[site.certificate_id]
        assert status is CertificateStatus.DEPLOYED


def test_a_stop_in_a_pack_of_small_servers_rolls_back_what_the_pack_deployed(
    fleet: list[Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rotation_flow, "PARALLEL_SERVERS", 1)  # the three servers after the canary: one pack
    before = {site.certificate_id: site.served_serial() for site in fleet}
    _break_reload(fleet[1])  # the pack's first server: its new certificate is never served
    with pytest.raises(RotationStopped, match="failure budget exceeded"):
        rotate_batch(batch_name="demo", batch_key="packed-stop", failure_budget=0.0)
    items = _items("packed-stop")
    assert items[fleet[0].certificate_id] == ("Rolled Back", True)
    assert items[fleet[1].certificate_id] == ("Failed", False)
    # Deployed together with the failed one (each server reloaded on its own), then rolled back with the batch.
    assert [items[site.certificate_id] for site in fleet[2:]] == [("Rolled Back", False), ("Rolled Back", False)]
    assert {site.certificate_id: site.served_serial() for site in fleet} == before


def test_a_rerun_of_a_stopped_batch_continues_and_never_issues_twice(fleet: list[Site]) -> None:
    reload = _reload_of(fleet[-1])
    _break_reload(fleet[-1])
    with pytest.raises(RotationStopped):
        rotate_batch(batch_name="demo", batch_key="again", failure_budget=0.0)
    with session_scope() as s:
        issued = {
            r.certificate_id: r.issued_serial
            for r in s.scalars(select(RotationItem).where(RotationItem.batch_key == "again"))
        }
    orders_after_stop = {site.certificate_id: _orders(site) for site in fleet}
    assert orders_after_stop[fleet[-1].certificate_id] == 1  # it was issued, then its deployment failed

    _fix_reload(fleet[-1], reload)
    # The same key alone: the same four certificates, each issued at most once.
    counts = rotate_batch(batch_key="again")
    assert counts["done"] == 4
    for site in fleet:
        assert _orders(site) == 1
        with session_scope() as s:
            serial = repo.get(s, Certificate, site.certificate_id).serial_number
        if issued[site.certificate_id] is not None:
            assert serial == issued[site.certificate_id]  # what the first run issued is what is served now
        assert site.served_serial() == serial
        assert _status(site) is CertificateStatus.DEPLOYED


# Maintenance windows (issue 15): the batch issues, and a server outside its window gets the deploy-certificate
# run Prefect starts at the window's opening, as a single deploy does. The deploy-certificate deployments are
# registered but not served, so a scheduled run stays where Prefect put it and the test reads it back.


def _window_away(sites: list[Site]) -> datetime:
    """A daily one-hour window opening 12 hours from now (on the hour) on the sites' servers: they are outside."""
    opening = (utcnow() + timedelta(hours=12)).replace(minute=0, second=0, microsecond=0)
    with session_scope() as s:
        for site in sites:
            server = repo.get(s, Certificate, site.certificate_id).targets[0].server
            server.maintenance_cron, server.maintenance_duration_minutes = f"0 {opening.hour} * * *", 60
    return opening


def _waiting_runs(site: Site, opening: datetime, since: datetime) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        # Filtered on the server: an unfiltered read returns only Prefect's default page of 200 runs (id order),
        # and the session's Prefect server holds every test's runs.
        named = FlowRunFilter(name=FlowRunFilterName(like_=f"deploy-certificate-{site.certificate_id}-on-"))
        return [
            r
            for r in client.read_flow_runs(flow_run_filter=named)
            if r.parameters.get("certificate_id") == site.certificate_id
            and r.name.endswith(f"-at-{opening:%Y%m%d%H%M}")
            and r.created is not None
            and r.created >= since
        ]


def _artifact_rows(key: str) -> dict[str, dict[str, int]]:
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"rotation-{key}"]))
        )
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    return {r["server"].split(" (")[0]: r for r in rows}


def test_servers_outside_their_window_are_issued_and_wait_for_it_and_a_rerun_does_not_issue_again(
    boot: Bootstrapped, fleet: list[Site]
) -> None:
    register(runner_deployments(bot_queue(boot.local_bot_id)))  # registered, not served
    before = {site.certificate_id: site.served_serial() for site in fleet}
    waiting = fleet[2:]  # not the canary (the first server's)
    opening = _window_away(waiting)
    started = utcnow()
    key = f"windows-{uuid.uuid4().hex[:8]}"

    counts = rotate_batch(batch_name="demo", batch_key=key, failure_budget=0.0)
    assert counts["done"] == 2
    assert counts["waiting_for_window"] == 2
    assert counts["failed"] == counts["rolled_back"] == counts["not_started"] == 0  # waiting is not failing
    rows = _artifact_rows(key)
    for site in fleet:
        row = rows[f"Demo web server {site.host.name}"]
        assert (row["done"], row["waiting_for_window"]) == ((0, 1) if site in waiting else (1, 0))
    note = f"waiting for maintenance window at {opening:%Y-%m-%d %H:%M} UTC"
    for site in waiting:
        with session_scope() as s:
            mine = (RotationItem.batch_key == key, RotationItem.certificate_id == site.certificate_id)
            item = s.scalars(select(RotationItem).where(*mine)).one()
            cert = repo.get(s, Certificate, site.certificate_id)
            assert (item.state, item.issued_serial) == ("Waiting For Window", cert.serial_number)
            assert note in (item.reason or "")
            assert cert.status is CertificateStatus.ISSUED
            assert note in (cert.status_reason or "")
            assert cert.targets[0].deploy_waits_until == opening
        assert site.served_serial() == before[site.certificate_id]  # nothing deployed outside the window
        (run,) = _waiting_runs(site, opening, started)
        assert run.state is not None
        assert run.state.is_scheduled()
        assert run.state.state_details.scheduled_time == opening
        assert run.parameters["target_ids"] == [_target_id(site)]

    # A re-run of the batch neither issues nor schedules them again.
    again = rotate_batch(batch_key=key)
    assert (again["done"], again["waiting_for_window"]) == (2, 2)
    for site in fleet:
        assert _orders(site) == 1
    for site in waiting:
        assert len(_waiting_runs(site, opening, started)) == 1

    # The window has come: the run Prefect starts then deploys what the batch issued.
    last = waiting[-1]
    (run,) = _waiting_runs(last, opening, started)
    assert deploy_certificate(last.certificate_id, target_ids=run.parameters["target_ids"]) == {
        _target_id(last): "Deployed"
    }
    assert last.served_serial() == _story(last)[0]


def _target_id(site: Site) -> int:
    with session_scope() as s:
        return repo.get(s, Certificate, site.certificate_id).targets[0].id


def test_a_batch_told_to_ignore_windows_deploys_now_and_is_audited(boot: Bootstrapped, fleet: list[Site]) -> None:
    register(runner_deployments(bot_queue(boot.local_bot_id)))
    _window_away(fleet)
    key = f"ignore-{uuid.uuid4().hex[:8]}"
    counts = rotate_batch(batch_name="demo", batch_key=key, ignore_maintenance_windows=True)
    assert (counts["done"], counts["waiting_for_window"]) == (4, 0)
    for site in fleet:
        serial, served, status = _story(site)
        assert site.served_serial() == served == serial
        assert status is CertificateStatus.DEPLOYED
    with session_scope() as s:
        (event,) = s.scalars(select(AuditEvent).where(AuditEvent.action == IGNORING_WINDOWS))
        assert (event.actor, event.object_type, event.object_id) == ("flow:rotate-batch", "RotationBatch", key)


def test_a_stopped_batch_cancels_the_runs_waiting_for_a_window(boot: Bootstrapped, fleet: list[Site]) -> None:
    """The canary's server is outside its window: it waits (not a failure) and the batch goes on; a later
    failure stops the batch, whose rollback cancels the waiting run so nothing deploys in the window."""
    register(runner_deployments(bot_queue(boot.local_bot_id)))
    before = fleet[0].served_serial()
    opening = _window_away(fleet[:1])
    started = utcnow()
    _break_reload(fleet[-1])
    key = f"stop-{uuid.uuid4().hex[:8]}"
    with pytest.raises(RotationStopped, match="failure budget exceeded"):
        rotate_batch(batch_name="demo", batch_key=key)
    assert _items(key)[fleet[0].certificate_id] == ("Rolled Back", True)
    (run,) = _waiting_runs(fleet[0], opening, started)
    assert run.state is not None
    assert run.state.is_cancelled()
    assert run.state.message == f"rotate-batch {key} stopped"
    issued, _served, status = _story(fleet[0])
    assert fleet[0].served_serial() == before
    assert issued != before
    assert status is CertificateStatus.ISSUED  # issued by the batch, never deployed
    with session_scope() as s:
        cert = repo.get(s, Certificate, fleet[0].certificate_id)
        assert cert.targets[0].deploy_waits_until is None
        assert "cancelled" in (cert.status_reason or "")
