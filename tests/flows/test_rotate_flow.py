"""rotate-batch against real TLS listeners (built-in CA): canaries, failure budget, rollback, re-runs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlalchemy import func, select

from certfleet.demo.fleet import plan_fleet, register_fleet
from certfleet.flows.rotation import RotationStopped, rotate_batch
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, CertificateStatus, Order, RotationItem
from certfleet.tasks.rotation import ca_limit, server_limit
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
    # One story after the rollback: each row says the server serves what it served before the batch (the
    # certificate the batch issued stays the newest, issued but not deployed), the failed one's too.
    for site in fleet:
        issued, served, status = _story(site)
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
    for site in fleet:
        issued, served, status = _story(site)
        assert site.served_serial() == served == first[site.certificate_id] != issued
        assert status is CertificateStatus.ROLLED_BACK


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
