"""rotate-batch deploys a server's certificates in groups: one config test and one reload per group, exact rollback."""

from __future__ import annotations

import shlex
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from certfleet.bots import service as bots_service
from certfleet.ca_admin import service as ca_service
from certfleet.ca_admin.forms import AdvancedOptions, DigiCertForm
from certfleet.connectors.base import IssueResult
from certfleet.connectors.servers.probe import fetch_served_chain
from certfleet.dashboard.app import create_app
from certfleet.demo.fleet import DEMO_DOMAIN, listener_server, placeholder_certificate
from certfleet.demo.listener import SITE_CERT, SITE_KEY, ListenerProcess, free_port
from certfleet.flows.deployment import deploy_certificate
from certfleet.flows.rollback import rollback_deployment
from certfleet.flows.rotation import RotationStopped, rotate_batch
from certfleet.jobs.api_store import ApiJobStore
from certfleet.jobs.db_store import CONFIG_TEST, RELOAD
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Bot,
    BotPurpose,
    Certificate,
    CertificateStatus,
    Deployment,
    DeploymentStatus,
    DeploymentStep,
    DeploymentTarget,
    Order,
    OrderState,
    RotationItem,
    Server,
)
from certfleet.pki.parse import serial_hex
from certfleet.rotation.service import RotationRequest
from certfleet.tasks import deploy_group as deploy_group_tasks
from certfleet.tasks import restore_group as restore_group_tasks
from certfleet.tasks import rotation as rotation_tasks
from certfleet.tasks.issuance import CaCalls, Submitted
from certfleet.tasks.restore_group import roll_back_deployments
from certfleet.tasks.rotation import plan_rotation
from tests.emulators.digicert import DigiCertEmulator
from tests.emulators.pki import TlsIdentity

SITES = 5


@dataclass
class SharedServer:
    """One listener serving SITES sites by SNI, registered as one server with one certificate per site."""

    listener: ListenerProcess
    server_id: int
    certificates: dict[str, int]  # fqdn -> certificate id

    def served(self, fqdn: str) -> str:
        leaf = fetch_served_chain("127.0.0.1", self.listener.port, server_name=fqdn, timeout=5)[0]
        return serial_hex(leaf.serial_number)

    def reloads(self) -> int:
        return self.listener.log_text().count("reloaded: now serving")


@pytest.fixture
def shared(boot: Bootstrapped, tmp_path: Path) -> Iterator[SharedServer]:
    sites_dir = tmp_path / "server" / "sites"
    sites_dir.mkdir(parents=True)
    listener = ListenerProcess.for_sites("127.0.0.1", free_port(), sites_dir, workdir=tmp_path / "server")
    fqdns = [f"group-{n}.{DEMO_DOMAIN}" for n in range(SITES)]
    for fqdn in fqdns:
        (sites_dir / fqdn).mkdir()
        cert_pem, key_pem = placeholder_certificate(fqdn)
        (sites_dir / fqdn / SITE_CERT).write_bytes(cert_pem)
        (sites_dir / fqdn / SITE_KEY).write_bytes(key_pem)
    certificates = {}
    with session_scope() as s:
        server = listener_server(listener, description="shared server", bot_id=boot.local_bot_id, created_by="test")
        s.add(server)
        s.flush()
        for fqdn in fqdns:
            cert = Certificate(
                common_name=fqdn,
                sans=[fqdn],
                ca_connector_id=boot.ca_connector_id,
                provisioning_bot_id=boot.local_bot_id,
                key_spec="ec-p256",
                validity_days=30,
                batch_name="groups",
            )
            cert.targets.append(
                DeploymentTarget(
                    server_id=server.id,
                    port=listener.port,
                    server_name=fqdn,
                    cert_path=str(sites_dir / fqdn / SITE_CERT),
                    key_path=str(sites_dir / fqdn / SITE_KEY),
                )
            )
            s.add(cert)
            s.flush()
            certificates[fqdn] = cert.id
        server_id = server.id
    listener.launch()
    try:
        yield SharedServer(listener, server_id, certificates)
    finally:
        listener.stop()


def _deployments(certificate_id: int) -> list[tuple[int, DeploymentStatus, str | None]]:
    with session_scope() as s:
        rows = s.execute(
            select(Deployment.id, Deployment.status, Deployment.reason)
            .where(Deployment.certificate_id == certificate_id)
            .order_by(Deployment.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def _shared_steps(deployment_id: int) -> list[tuple[str, str, str | None]]:
    with session_scope() as s:
        steps = s.scalars(
            select(DeploymentStep)
            .where(DeploymentStep.deployment_id == deployment_id, DeploymentStep.action.in_([CONFIG_TEST, RELOAD]))
            .order_by(DeploymentStep.seq)
        )
        return [(st.action, st.state.value, st.detail) for st in steps]


def _order_from(shared: SharedServer, digicert: DigiCertEmulator, tls: TlsIdentity, name: str) -> int:
    """A DigiCert connector on the emulator, made the CA of every certificate of the shared server."""
    form = DigiCertForm(
        name=name,
        api_base_url=digicert.base_url,
        api_key=SecretStr(digicert.api_key),
        organization_id=digicert.organization_id,
        certificate_validity=90,
        advanced=AdvancedOptions(tls_ca_bundle=tls.ca_pem, timeout_s=10),
    )
    with session_scope() as s:
        connector_id = ca_service.create_connector(s, form, actor="test")
        for cid in shared.certificates.values():
            repo.get(s, Certificate, cid).ca_connector_id = connector_id
    return connector_id


def test_a_servers_certificates_are_deployed_with_one_config_test_and_one_reload_per_group(
    shared: SharedServer,
) -> None:
    before = {fqdn: shared.served(fqdn) for fqdn in shared.certificates}
    reloads_before = shared.reloads()
    counts = rotate_batch(batch_name="groups", batch_key="groups-all-good")
    assert counts["done"] == SITES
    # The canary alone, then the other four as one group: two reloads of the server for five certificates.
    assert shared.reloads() - reloads_before == 2
    with session_scope() as s:
        items = {r.certificate_id: r for r in s.scalars(select(RotationItem))}
        issued = {cid: items[cid].issued_serial for cid in shared.certificates.values()}
        canary = next(cid for cid, r in items.items() if r.canary)
        for cid in shared.certificates.values():
            assert repo.get(s, Certificate, cid).serial_number == issued[cid]
    for fqdn, cid in shared.certificates.items():
        assert shared.served(fqdn) == issued[cid] != before[fqdn]
        ((deployment_id, status, _),) = _deployments(cid)
        assert status is DeploymentStatus.DEPLOYED
        # Each deployment journals the shared config test and reload, so a rollback of any one of them is exact.
        size = 1 if cid == canary else SITES - 1
        assert _shared_steps(deployment_id) == [
            (CONFIG_TEST, "done", f"once for a group of {size}"),
            (RELOAD, "done", f"once for a group of {size}"),
        ]
    # Rolling back one deployment of the group puts back that site's certificate only, and reloads the server.
    fqdn = next(f for f, c in shared.certificates.items() if c != canary)
    ((deployment_id, _, _),) = _deployments(shared.certificates[fqdn])
    assert rollback_deployment(deployment_id) == DeploymentStatus.ROLLED_BACK.value
    assert shared.served(fqdn) == before[fqdn]
    for other, cid in shared.certificates.items():
        if other != fqdn:
            assert shared.served(other) == issued[cid]


def test_a_certificate_that_breaks_the_groups_config_test_fails_alone_and_the_others_are_deployed(
    shared: SharedServer, tmp_path: Path
) -> None:
    fqdns = list(shared.certificates)
    bad = fqdns[3]  # not the canary (the first): it is in the group of four
    bad_cert = Path(shared.listener.sites_dir or "") / bad / SITE_CERT
    pristine = tmp_path / "pristine.pem"
    shutil.copy(bad_cert, pristine)
    # The server's config test fails whenever the bad site's certificate file changed: as nginx -t fails on one
    # broken server block, whatever the others hold.
    with session_scope() as s:
        repo.get(s, Server, shared.server_id).config_test_command = shlex.join(
            ["cmp", "-s", str(pristine), str(bad_cert)]
        )
    before = {fqdn: shared.served(fqdn) for fqdn in fqdns}
    counts = rotate_batch(batch_name="groups", batch_key="groups-one-bad", failure_budget=0.5)
    assert (counts["done"], counts["failed"]) == (SITES - 1, 1)
    with session_scope() as s:
        items = {r.certificate_id: r for r in s.scalars(select(RotationItem))}
        bad_item = items[shared.certificates[bad]]
        assert bad_item.state == "Failed"
        issued = {cid: items[cid].issued_serial for cid in shared.certificates.values()}
    assert shared.served(bad) == before[bad]
    (_, grouped, _), (_, alone, alone_reason) = _deployments(shared.certificates[bad])
    assert (grouped, alone) == (DeploymentStatus.ROLLED_BACK, DeploymentStatus.ROLLED_BACK)
    assert "config test" in (alone_reason or "")
    assert bad_cert.read_bytes() == pristine.read_bytes()
    for fqdn in fqdns:
        if fqdn in (bad, fqdns[0]):
            continue
        cid = shared.certificates[fqdn]
        assert shared.served(fqdn) == issued[cid] != before[fqdn]
        # First the group's attempt, rolled back when its config test failed; then alone, deployed with the
        # certificate the batch issued once.
        (_, first_status, first_reason), (_, second_status, _) = _deployments(cid)
        assert first_status is DeploymentStatus.ROLLED_BACK
        assert "the config test of a group of 4 failed" in (first_reason or "")
        assert second_status is DeploymentStatus.DEPLOYED


def _failed_alone_and_the_rest_deployed(shared: SharedServer, bad: str, why: str, before: dict[str, str]) -> None:
    """The bad site's deployment rolled back and its item Failed, both saying `why`; every other certificate
    deployed and served, the group's (without the bad one and the canary) with one config test for three."""
    ((_, status, reason),) = _deployments(shared.certificates[bad])
    assert status is DeploymentStatus.ROLLED_BACK, reason
    assert why in (reason or ""), reason
    with session_scope() as s:
        items = {r.certificate_id: r for r in s.scalars(select(RotationItem))}
        assert items[shared.certificates[bad]].state == "Failed"
        assert why in (items[shared.certificates[bad]].reason or "")
        issued = {cid: items[cid].issued_serial for cid in shared.certificates.values()}
    canary = next(iter(shared.certificates))
    for fqdn, cid in shared.certificates.items():
        if fqdn != bad:
            assert shared.served(fqdn) == issued[cid] != before[fqdn]
            ((deployment_id, status, _),) = _deployments(cid)
            assert status is DeploymentStatus.DEPLOYED
            if fqdn != canary:
                assert _shared_steps(deployment_id)[0] == (CONFIG_TEST, "done", "once for a group of 3")


def test_a_certificate_whose_files_cannot_be_written_is_put_back_alone_and_its_group_is_deployed(
    shared: SharedServer,
) -> None:
    """The group's files are journalled, backed up and written a step at a time for all of them: one
    certificate's key file cannot be written (its directory is gone), so its certificate file, already replaced,
    is put back byte for byte and it fails alone; the rest of its group is tested, reloaded and proven once."""
    fqdns = list(shared.certificates)
    bad = fqdns[2]  # not the canary: in the group of four
    bad_cert = Path(shared.listener.sites_dir or "") / bad / SITE_CERT
    pristine = bad_cert.read_bytes()
    with session_scope() as s:
        target = s.scalars(
            select(DeploymentTarget).where(DeploymentTarget.certificate_id == shared.certificates[bad])
        ).one()
        target.key_path = f"/nonexistent-{bad}/{SITE_KEY}"
    before = {fqdn: shared.served(fqdn) for fqdn in fqdns}
    reloads_before = shared.reloads()
    counts = rotate_batch(batch_name="groups", batch_key="groups-one-unwritable", failure_budget=0.5)
    assert (counts["done"], counts["failed"]) == (SITES - 1, 1), counts
    assert shared.reloads() - reloads_before == 2  # the canary's, and the group's (without the bad one)
    assert bad_cert.read_bytes() == pristine
    assert shared.served(bad) == before[bad]
    _failed_alone_and_the_rest_deployed(shared, bad, "does not exist", before)


def test_a_certificate_whose_backup_fails_is_put_back_alone_and_its_group_is_deployed(shared: SharedServer) -> None:
    """One certificate's key file cannot be backed up (the path is a directory, so it cannot be read): nothing of
    that certificate was written yet, its certificate file's backup is removed again, it fails alone with the
    reason, and the rest of its group is tested, reloaded and proven once."""
    fqdns = list(shared.certificates)
    bad = fqdns[3]  # not the canary: in the group of four
    sites = Path(shared.listener.sites_dir or "")
    unreadable = sites / bad / "key-is-a-directory"
    unreadable.mkdir()
    pristine = (sites / bad / SITE_CERT).read_bytes()
    with session_scope() as s:
        target = s.scalars(
            select(DeploymentTarget).where(DeploymentTarget.certificate_id == shared.certificates[bad])
        ).one()
        target.key_path = str(unreadable)
    before = {fqdn: shared.served(fqdn) for fqdn in fqdns}
    reloads_before = shared.reloads()
    counts = rotate_batch(batch_name="groups", batch_key="groups-one-unbackable", failure_budget=0.5)
    assert (counts["done"], counts["failed"]) == (SITES - 1, 1), counts
    assert shared.reloads() - reloads_before == 2  # the canary's, and the group's (without the bad one)
    assert (sites / bad / SITE_CERT).read_bytes() == pristine
    assert unreadable.is_dir()
    assert not any(unreadable.iterdir())
    assert sorted(p.name for p in (sites / bad).iterdir()) == sorted([SITE_CERT, SITE_KEY, unreadable.name])
    assert shared.served(bad) == before[bad]
    _failed_alone_and_the_rest_deployed(shared, bad, "Is a directory", before)


def test_a_refused_deployment_in_a_grouped_rollback_is_reported_and_the_others_roll_back_together(
    shared: SharedServer,
) -> None:
    """A server's deployments rolled back together, one of which a newer deployment has replaced: that one is
    refused with the reason and keeps its status; the other four are put back with one config check and one
    reload, each proven to serve its previous serial again."""
    fqdns = list(shared.certificates)
    sites = Path(shared.listener.sites_dir or "")
    before = {fqdn: shared.served(fqdn) for fqdn in fqdns}
    before_files = {fqdn: (sites / fqdn / SITE_CERT).read_bytes() for fqdn in fqdns}
    assert rotate_batch(batch_name="groups", batch_key="groups-then-rollback")["done"] == SITES
    batch_deployments = {fqdn: _deployments(cid)[0][0] for fqdn, cid in shared.certificates.items()}
    replaced = fqdns[2]
    redeployed = deploy_certificate(shared.certificates[replaced])
    assert list(redeployed.values()) == [DeploymentStatus.DEPLOYED.value], redeployed
    newer = _deployments(shared.certificates[replaced])[-1][0]
    reloads_before = shared.reloads()
    newest_first = sorted(batch_deployments.values(), reverse=True)
    outcome = roll_back_deployments(newest_first, "test rollback")
    assert shared.reloads() - reloads_before == 1
    refused = batch_deployments[replaced]
    assert outcome[refused] == (
        f"deployment {refused} not rolled back: deployment {refused} cannot be rolled back: deployment {newer} "
        f"replaced it on 127.0.0.1:{shared.listener.port}; roll back deployment {newer} instead"
    )
    with session_scope() as s:
        issued = s.scalars(
            select(RotationItem.issued_serial).where(RotationItem.certificate_id == shared.certificates[replaced])
        ).one()
        assert repo.get(s, Deployment, refused).status is not DeploymentStatus.ROLLED_BACK
        assert repo.get(s, Deployment, newer).status is DeploymentStatus.DEPLOYED
    assert shared.served(replaced) == issued != before[replaced]
    for fqdn, deployment_id in batch_deployments.items():
        if fqdn == replaced:
            continue
        assert outcome[deployment_id] == DeploymentStatus.ROLLED_BACK.value
        assert shared.served(fqdn) == before[fqdn]
        assert (sites / fqdn / SITE_CERT).read_bytes() == before_files[fqdn]
        (_, status, reason), *_ = _deployments(shared.certificates[fqdn])
        assert status is DeploymentStatus.ROLLED_BACK
        assert f"serial {before[fqdn]} is served again" in (reason or ""), reason


def test_a_stopped_batch_rolls_back_a_servers_deployments_with_one_reload(shared: SharedServer) -> None:
    """The failure budget is spent in the group (one key file cannot be written): the batch stops and rolls back
    the canary and the group's three deployed certificates together, one config check and one reload of the
    server, each proven to serve its previous serial again, every file byte for byte as before."""
    fqdns = list(shared.certificates)
    sites = Path(shared.listener.sites_dir or "")
    before_files = {fqdn: (sites / fqdn / SITE_CERT).read_bytes() for fqdn in fqdns}
    with session_scope() as s:
        target = s.scalars(
            select(DeploymentTarget).where(DeploymentTarget.certificate_id == shared.certificates[fqdns[2]])
        ).one()
        target.key_path = f"/nonexistent-{fqdns[2]}/{SITE_KEY}"
    before = {fqdn: shared.served(fqdn) for fqdn in fqdns}
    reloads_before = shared.reloads()
    with pytest.raises(Exception, match="failure budget exceeded"):
        rotate_batch(batch_name="groups", batch_key="groups-stopped", failure_budget=0.0)
    # The canary's reload, the group's, and one for the rollback of all four deployed certificates.
    assert shared.reloads() - reloads_before == 3
    for fqdn, cid in shared.certificates.items():
        assert (sites / fqdn / SITE_CERT).read_bytes() == before_files[fqdn]
        assert shared.served(fqdn) == before[fqdn]
        ((_, status, reason),) = _deployments(cid)
        assert status is DeploymentStatus.ROLLED_BACK, (fqdn, status, reason)
        if fqdn != fqdns[2]:
            assert f"serial {before[fqdn]} is served again" in (reason or ""), reason
            assert "batch groups-stopped stopped" in (reason or ""), reason
    with session_scope() as s:
        states = {r.certificate_id: r.state for r in s.scalars(select(RotationItem))}
    assert states == {cid: ("Failed" if f == fqdns[2] else "Rolled Back") for f, cid in shared.certificates.items()}


def test_a_failed_reload_of_the_group_rolls_the_whole_group_back(shared: SharedServer, tmp_path: Path) -> None:
    """The group's one reload fails (the server was not reloaded): every certificate of the group fails with the
    reason, its files are put back byte for byte, and the rollback's own reload leaves the old certificates served."""
    sites = Path(shared.listener.sites_dir or "")
    before_files = {fqdn: (sites / fqdn / SITE_CERT).read_bytes() for fqdn in shared.certificates}
    before = {fqdn: shared.served(fqdn) for fqdn in shared.certificates}
    reload = shlex.join(shared.listener.reload_command())
    failed_once = tmp_path / "reload-failed-once"
    with session_scope() as s:  # the first reload (the group's) fails; the rollback's reload works
        repo.get(s, Server, shared.server_id).reload_command = shlex.join(
            ["sh", "-c", f"if [ -e {shlex.quote(str(failed_once))} ]; then exec {reload}; fi; touch "
             f"{shlex.quote(str(failed_once))}; echo reload refused >&2; exit 3"]
        )  # fmt: skip
    counts = rotate_batch(
        batch_name="groups", batch_key="groups-reload-fails", canary_per_server_type=0, failure_budget=1.0
    )
    assert (counts["done"], counts["failed"]) == (0, SITES), counts
    for fqdn, cid in shared.certificates.items():
        ((_, status, reason),) = _deployments(cid)
        assert status is DeploymentStatus.ROLLED_BACK, (fqdn, status, reason)
        assert (sites / fqdn / SITE_CERT).read_bytes() == before_files[fqdn]
        assert shared.served(fqdn) == before[fqdn]
    with session_scope() as s:
        for item in s.scalars(select(RotationItem)):
            assert item.state == "Failed"
            assert "reload refused" in (item.reason or ""), item.reason


def test_orders_a_group_cannot_settle_go_on_through_the_retrying_tasks_and_are_placed_once(
    shared: SharedServer, emulator_tls: TlsIdentity
) -> None:
    """A group's CA calls that fail transiently (429) or that the CA leaves pending are not settled in the group's
    task run: `issue_once`'s retrying tasks submit or poll them, with the same order, so the CA gets one order per
    certificate and every certificate is issued and deployed."""
    digicert = DigiCertEmulator(emulator_tls, mode="pending", auto_approve_after=1).start()
    digicert.faults.every_nth_429 = 3
    try:
        _order_from(shared, digicert, emulator_tls, "DigiCert groups")
        before = {fqdn: shared.served(fqdn) for fqdn in shared.certificates}
        counts = rotate_batch(batch_name="groups", batch_key="groups-ca-pending", canary_per_server_type=0)
        assert counts["done"] == SITES, counts
        assert digicert.faults.refused_429 >= 1  # the transient path was taken
        assert (digicert.placed, digicert.duplicates) == (SITES, 0)
        with session_scope() as s:
            issued = {r.certificate_id: r.issued_serial for r in s.scalars(select(RotationItem))}
        for fqdn, cid in shared.certificates.items():
            assert shared.served(fqdn) == issued[cid] != before[fqdn]
    finally:
        digicert.stop()


def test_a_groups_orders_are_at_the_ca_at_once_and_a_rerun_orders_none_of_them_again(
    shared: SharedServer, emulator_tls: TlsIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group's orders are sent to the CA concurrently (all of them under way together: with one call after
    another the barrier below breaks and every order fails). One call dies after the CA answered; the re-run with
    the same batch key issues that certificate from its recorded order: the CA got one order per certificate."""
    digicert = DigiCertEmulator(emulator_tls).start()
    try:
        _order_from(shared, digicert, emulator_tls, "DigiCert at once")
        together = threading.Barrier(SITES, timeout=60)
        real = rotation_tasks._ask_ca
        lost: list[int] = []

        def all_at_once(calls: CaCalls, submitted: Submitted, ca_connector_id: int) -> IssueResult:
            together.wait()  # returns only when every order of the group is being sent
            answer = real(calls, submitted, ca_connector_id)
            if not lost:
                lost.append(submitted.order_id)
                raise RuntimeError("the worker died after the CA answered")
            return answer

        monkeypatch.setattr(rotation_tasks, "_ask_ca", all_at_once)
        params = {"batch_name": "groups", "batch_key": "groups-at-once", "canary_per_server_type": 0}
        with pytest.raises(RotationStopped, match="the worker died after the CA answered"):
            rotate_batch(ca_concurrency=SITES, **params)
        assert len(lost) == 1
        assert not together.broken
        assert (digicert.placed, digicert.duplicates) == (SITES, 0)
        monkeypatch.setattr(rotation_tasks, "_ask_ca", real)
        counts = rotate_batch(ca_concurrency=SITES, **params)
        assert counts["done"] == SITES, counts
        assert (digicert.placed, digicert.duplicates) == (SITES, 0)
        with session_scope() as s:
            issued = {r.certificate_id: r.issued_serial for r in s.scalars(select(RotationItem))}
        for fqdn, cid in shared.certificates.items():
            assert shared.served(fqdn) == issued[cid]
    finally:
        digicert.stop()


def _orders_of(certificate_id: int) -> list[Order]:
    with session_scope() as s:
        return list(s.scalars(select(Order).where(Order.certificate_id == certificate_id).order_by(Order.id)))


def _submitted_notes(order: Order) -> int:
    return sum(1 for h in order.history if h["state"] == OrderState.SUBMITTED.value)


class _Crash(BaseException):
    """The process dying: not an Exception that any step catches and records."""


def test_a_rerun_after_a_crash_between_the_groups_orders_and_its_ca_calls_orders_each_certificate_once(
    shared: SharedServer, emulator_tls: TlsIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group's orders are committed (and noted Submitted) before any CA call; the run dies before the first
    call. The re-run sends those same orders (same idempotency keys): the CA gets one order per certificate and
    no certificate gets a second order row."""
    digicert = DigiCertEmulator(emulator_tls).start()
    try:
        _order_from(shared, digicert, emulator_tls, "DigiCert crash")
        real = rotation_tasks._ask_ca

        def crash(calls: CaCalls, submitted: Submitted, ca_connector_id: int) -> IssueResult:
            raise _Crash("the worker died before calling the CA")

        monkeypatch.setattr(rotation_tasks, "_ask_ca", crash)
        params = {"batch_name": "groups", "batch_key": "groups-crash-before-ca", "canary_per_server_type": 0}
        with pytest.raises(BaseException, match="the worker died before calling the CA"):
            rotate_batch(ca_concurrency=2, **params)
        assert digicert.placed == 0
        placed = {}
        for cid in shared.certificates.values():
            (order,) = _orders_of(cid)
            assert order.state is OrderState.SUBMITTED
            assert order.idempotency_key == f"cert-{cid}-gen-1"
            placed[cid] = order.id
        monkeypatch.setattr(rotation_tasks, "_ask_ca", real)
        counts = rotate_batch(ca_concurrency=2, **params)
        assert counts["done"] == SITES, counts
        assert (digicert.placed, digicert.duplicates) == (SITES, 0)
        with session_scope() as s:
            items = {r.certificate_id: r for r in s.scalars(select(RotationItem))}
        for fqdn, cid in shared.certificates.items():
            (order,) = _orders_of(cid)
            assert (order.id, order.state) == (placed[cid], OrderState.ISSUED)
            assert items[cid].order_id == order.id
            assert shared.served(fqdn) == items[cid].issued_serial == order.serial_number
    finally:
        digicert.stop()


def test_a_ca_refusal_of_one_certificate_of_a_group_fails_that_certificate_alone(shared: SharedServer) -> None:
    """The built-in CA refuses one order of the group for good (a validity no TLS client accepts): that order
    fails, recorded by the group (asked once, not again by the retrying tasks), and the rest of the group is
    issued and deployed."""
    fqdns = list(shared.certificates)
    refused = shared.certificates[fqdns[2]]
    with session_scope() as s:
        repo.get(s, Certificate, refused).validity_days = 400
    counts = rotate_batch(
        batch_name="groups", batch_key="groups-one-refused", canary_per_server_type=0, failure_budget=0.5
    )
    assert (counts["done"], counts["failed"]) == (SITES - 1, 1), counts
    with session_scope() as s:
        items = {r.certificate_id: r for r in s.scalars(select(RotationItem))}
        status_reason = repo.get(s, Certificate, refused).status_reason or ""
    assert items[refused].state == "Failed"
    assert "exceeds 398" in (items[refused].reason or ""), items[refused].reason
    (order,) = _orders_of(refused)
    assert order.state is OrderState.FAILED
    assert "exceeds 398" in (order.error or "")
    assert _submitted_notes(order) == 1
    assert status_reason.startswith("order failed: validity of 400 days")
    for fqdn, cid in shared.certificates.items():
        if cid != refused:
            (order,) = _orders_of(cid)
            assert order.state is OrderState.ISSUED
            assert _submitted_notes(order) == 1
            assert shared.served(fqdn) == items[cid].issued_serial == order.serial_number


def test_a_certificate_ignored_after_its_batch_was_planned_is_refused_alone_in_its_group(
    shared: SharedServer,
) -> None:
    """A certificate Ignored between the plan and the run (a continued batch): its group refuses to order it, as
    create_order does, and issues the others."""
    fqdns = list(shared.certificates)
    ignored = shared.certificates[fqdns[1]]
    plan_rotation.fn("groups-ignored", RotationRequest(batch_name="groups", canary_per_server_type=0))
    with session_scope() as s:
        repo.get(s, Certificate, ignored).status = CertificateStatus.IGNORED
    counts = rotate_batch(batch_key="groups-ignored", failure_budget=0.5)
    assert (counts["done"], counts["failed"]) == (SITES - 1, 1), counts
    with session_scope() as s:
        items = {r.certificate_id: r for r in s.scalars(select(RotationItem))}
    assert items[ignored].state == "Failed"
    assert f"certificate {ignored} is ignored" in (items[ignored].reason or ""), items[ignored].reason
    assert _orders_of(ignored) == []
    for fqdn, cid in shared.certificates.items():
        if cid != ignored:
            (order,) = _orders_of(cid)
            assert order.state is OrderState.ISSUED
            assert shared.served(fqdn) == items[cid].issued_serial == order.serial_number


def _bot_api(token: str) -> ApiJobStore:
    """The bot API store a bot's worker uses, calling certfleet's app in this process."""
    client = TestClient(create_app(), base_url="http://127.0.0.1/api/v1/agent")
    client.headers["Authorization"] = f"Bearer {token}"
    return ApiJobStore("http://127.0.0.1", token, client=client)


def test_a_bot_deploys_a_servers_group_through_the_bot_api_with_one_reload(
    shared: SharedServer, boot: Bootstrapped, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert rotate_batch(batch_name="groups", batch_key="groups-bot-first")["done"] == SITES  # issued and deployed
    with session_scope() as s:
        token = bots_service.new_token(s, boot.local_bot_id, "test").token
    api = _bot_api(token)
    monkeypatch.setattr(deploy_group_tasks, "current_group_store", lambda: api)
    ids = list(shared.certificates.values())
    served = {fqdn: shared.served(fqdn) for fqdn in shared.certificates}
    reloads = shared.reloads()

    outcome = deploy_group_tasks.deploy_group.fn(shared.server_id, ids[0], ids)  # as rotate-on-bot runs it

    assert (sorted(outcome.deployed), outcome.failed, outcome.alone) == (sorted(ids), {}, [])
    assert shared.reloads() - reloads == 1
    for fqdn, cid in shared.certificates.items():
        deployment_id = outcome.deployed[cid]
        assert _deployments(cid)[-1][:2] == (deployment_id, DeploymentStatus.DEPLOYED)
        assert _shared_steps(deployment_id) == [
            (CONFIG_TEST, "done", f"once for a group of {SITES}"),
            (RELOAD, "done", f"once for a group of {SITES}"),
        ]
        with session_scope() as s:
            assert repo.get(s, Deployment, deployment_id).previous_serial == served[fqdn]  # the rollback's proof
        assert shared.served(fqdn) == served[fqdn]  # the same certificate, deployed again


def test_the_group_routes_of_the_bot_api_answer_a_bot_only_for_its_own_servers(
    shared: SharedServer, boot: Bootstrapped
) -> None:
    assert rotate_batch(batch_name="groups", batch_key="groups-bot-scope")["done"] == SITES
    with session_scope() as s:
        other = Bot(name="other-bot", purpose=BotPurpose.PROVISIONING, work_queue="other-bot", created_by="test")
        s.add(other)
        s.flush()
        token = bots_service.new_token(s, other.id, "test").token
    ids = list(shared.certificates.values())
    deployment_id = _deployments(ids[0])[-1][0]
    with session_scope() as s:
        step_id = s.scalars(select(DeploymentStep.id).where(DeploymentStep.deployment_id == deployment_id)).first()
        target_id = repo.get(s, Certificate, ids[0]).targets[0].id
    client = _bot_api(token).client
    calls = {
        "/groups/targets": {"server_id": shared.server_id, "certificate_ids": ids},
        "/groups/open": {"served": [{"certificate_id": ids[0], "target_id": target_id}]},
        "/groups/steps": [{"deployment_id": deployment_id, "action": RELOAD}],
        "/groups/steps/update": {"step_ids": [step_id], "detail": "forged"},
        "/groups/finish": {"deployment_ids": [deployment_id]},
        "/groups/forget-backups": {str(deployment_id): [{"step_id": step_id, "path": "/x"}]},
        "/groups/servers": {"deployment_ids": [deployment_id]},
        "/groups/restore-plans": {"deployment_ids": [deployment_id]},
        "/groups/close": {str(deployment_id): {"status": "Rolled Back", "reason": "forged"}},
    }
    for path, body in calls.items():
        response = client.post(path, json=body)
        assert response.status_code == 403, (path, response.text)
        assert "is not mapped to this bot" in response.json()["detail"]
    with session_scope() as s:  # nothing was journalled, marked or opened for the other bot
        assert repo.get(s, DeploymentStep, step_id).detail != "forged"
        assert s.scalar(select(func.count()).select_from(Deployment)) == SITES
        assert repo.get(s, Deployment, deployment_id).status is DeploymentStatus.DEPLOYED


def test_a_bot_rolls_back_a_servers_deployments_together_through_the_bot_api(
    shared: SharedServer, boot: Bootstrapped, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {fqdn: shared.served(fqdn) for fqdn in shared.certificates}
    assert rotate_batch(batch_name="groups", batch_key="groups-bot-back")["done"] == SITES
    with session_scope() as s:
        token = bots_service.new_token(s, boot.local_bot_id, "test").token
    api = _bot_api(token)
    monkeypatch.setattr(restore_group_tasks, "current_group_store", lambda: api)
    ids = [_deployments(cid)[-1][0] for cid in shared.certificates.values()]
    reloads = shared.reloads()

    outcomes = roll_back_deployments(list(reversed(ids)), "stopped by the test")  # as rotate-on-bot rolls back

    assert outcomes == dict.fromkeys(ids, DeploymentStatus.ROLLED_BACK.value)
    assert shared.reloads() - reloads == 1
    assert {fqdn: shared.served(fqdn) for fqdn in shared.certificates} == before
    for cid in shared.certificates.values():
        assert _deployments(cid)[-1][1] is DeploymentStatus.ROLLED_BACK
