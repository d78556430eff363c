"""deploy-certificate and rollback-deployment against a real TLS listener that serves files from disk."""

from __future__ import annotations

import shlex
import stat
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from certfleet.bots.routing import NoRoute, rollback_route
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers.probe import fetch_served_chain
from certfleet.demo.listener import ListenerProcess, free_port
from certfleet.flows.deployment import DeploymentFailed, deploy_certificate
from certfleet.flows.issuance import issue_certificate
from certfleet.flows.rollback import rollback_deployment
from certfleet.inventory.record import Sighting, record
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Certificate,
    CertificateLocation,
    CertificateStatus,
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    StepState,
    utcnow,
)
from certfleet.pki.bundle import key_matches_certificate
from certfleet.pki.keys import KeySpec, generate_private_key, load_private_key, private_key_to_pem
from certfleet.pki.parse import load_material, serial_hex
from certfleet.tasks.deployment import install_on_target, start_deployment
from tests.flows.conftest import Site


def _deployments(certificate_id: int) -> list[Deployment]:
    with session_scope() as s:
        rows = s.scalars(select(Deployment).where(Deployment.certificate_id == certificate_id).order_by(Deployment.id))
        return [_with_steps(d) for d in rows]


def _with_steps(d: Deployment) -> Deployment:
    _ = d.steps  # load while the session is open
    return d


def _set_server(site: Site, **fields: str) -> None:
    with session_scope() as s:
        server = repo.get(s, Certificate, site.certificate_id).targets[0].server
        for name, value in fields.items():
            setattr(server, name, value)


def test_deploy_installs_and_proves_the_new_certificate(site: Site) -> None:
    placeholder = site.served_serial()
    serial = issue_certificate(site.certificate_id)
    assert deploy_certificate(site.certificate_id) == {1: "Deployed"}
    assert site.served_serial() == serial

    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        assert cert.status is CertificateStatus.DEPLOYED
        assert cert.last_provisioned_on is not None
        chain = load_material((cert.pem_chain or "").encode()).certificates
    leaf, issuing, root = chain
    served_file = site.host.cert_path.read_bytes()
    assert served_file == b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, issuing))
    assert root.public_bytes(serialization.Encoding.PEM) not in served_file  # clients bring their own root
    assert stat.S_IMODE(site.host.key_path.stat().st_mode) == 0o600
    assert key_matches_certificate(load_private_key(site.host.key_path.read_bytes()), leaf)

    (deployment,) = _deployments(site.certificate_id)
    assert deployment.status is DeploymentStatus.DEPLOYED
    assert (deployment.serial_number, deployment.previous_serial) == (serial, placeholder)
    assert [(st.action, st.state) for st in deployment.steps] == [
        ("replace-file", StepState.DONE),
        ("replace-file", StepState.DONE),
        ("config-test", StepState.DONE),
        ("reload", StepState.DONE),
    ]
    assert all(st.existed_before for st in deployment.steps[:2])
    backup = deployment.steps[0].backup_path or ""
    assert backup.endswith(f".certfleet-backup-{deployment.id}")


def test_rotate_a_second_time(site: Site) -> None:
    first = issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    second = issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    assert site.served_serial() == second
    assert [(d.serial_number, d.previous_serial) for d in _deployments(site.certificate_id)][1] == (
        second,
        first,
    )


def test_reload_that_does_nothing_is_caught_and_rolled_back(site: Site) -> None:
    old = issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    files_before = site.files()
    new = issue_certificate(site.certificate_id)
    _set_server(site, reload_command="true")  # the operator pointed reload at the wrong service

    with pytest.raises(DeploymentFailed, match="Rolled Back"):
        deploy_certificate(site.certificate_id)

    assert site.served_serial() == old
    assert site.files() == files_before
    deployment = _deployments(site.certificate_id)[-1]
    assert deployment.status is DeploymentStatus.ROLLED_BACK
    assert f"expected serial {new} was not served" in (deployment.reason or "")
    assert f"rolled back, serial {old} is served again" in (deployment.reason or "")
    assert [st.state for st in deployment.steps if st.action == "replace-file"] == [StepState.RESTORED] * 2
    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        assert cert.status is CertificateStatus.ROLLED_BACK
        assert cert.status_reason == deployment.reason


def _backups(site: Site) -> list[str]:
    return sorted(p.name for p in site.host.cert_path.parent.iterdir() if ".certfleet-backup-" in p.name)


def test_a_rollback_removes_its_own_backups_and_keeps_those_the_live_deployment_needs(site: Site) -> None:
    """Private-key backups do not pile up after failed deployments (issue 15)."""
    issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    live = _deployments(site.certificate_id)[-1].id
    kept = [f"{site.host.cert_path.name}.certfleet-backup-{live}", f"{site.host.key_path.name}.certfleet-backup-{live}"]
    assert _backups(site) == sorted(kept)
    for _ in range(2):  # two failed rotations
        issue_certificate(site.certificate_id)
        _set_server(site, reload_command="true")
        with pytest.raises(DeploymentFailed, match="Rolled Back"):
            deploy_certificate(site.certificate_id)
    assert _backups(site) == sorted(kept)  # what rolling back the live deployment needs, nothing more
    for deployment in _deployments(site.certificate_id)[1:]:
        assert deployment.status is DeploymentStatus.ROLLED_BACK
        assert all(st.backup_path is None for st in deployment.steps)
        assert all("removed after deployment" in (st.detail or "") for st in deployment.steps if st.existed_before)


def test_a_deployment_that_a_newer_one_replaced_is_refused_and_nothing_changes(site: Site) -> None:
    issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    new = issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    old_id, new_id = (d.id for d in _deployments(site.certificate_id))
    files = site.files()
    expected = (
        f"deployment {old_id} cannot be rolled back: deployment {new_id} replaced it on 127.0.0.1:{site.host.port}; "
        f"roll back deployment {new_id} instead"
    )
    with session_scope() as s, pytest.raises(NoRoute) as refused:
        rollback_route(s, old_id)  # what the dashboard, the API and `certfleet rollback` ask first
    assert str(refused.value) == expected
    with pytest.raises(PermanentConnectorError) as failed:  # started from the Prefect UI: the flow refuses
        rollback_deployment(old_id)
    assert str(failed.value) == expected
    assert site.files() == files
    assert site.served_serial() == new
    assert [d.status for d in _deployments(site.certificate_id)] == [DeploymentStatus.DEPLOYED] * 2
    with session_scope() as s:
        assert repo.get(s, Certificate, site.certificate_id).status is CertificateStatus.DEPLOYED


def test_failing_config_test_rolls_back_before_any_reload(site: Site, tmp_path) -> None:  # type: ignore[no-untyped-def]
    old = issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    files_before = site.files()
    issue_certificate(site.certificate_id)
    stray_key = tmp_path / "stray.key"
    stray_key.write_bytes(private_key_to_pem(generate_private_key(KeySpec(algorithm="ec", size=256))))
    check = [
        sys.executable,
        "-m",
        "certfleet.demo.listener",
        "check",
        "--cert",
        str(site.host.cert_path),
        "--key",
        str(stray_key),
    ]
    _set_server(site, config_test_command=shlex.join(check))

    state = deploy_certificate(site.certificate_id, return_state=True)

    assert state.is_failed()
    assert site.served_serial() == old
    assert site.files() == files_before
    deployment = _deployments(site.certificate_id)[-1]
    assert deployment.status is DeploymentStatus.ROLLED_BACK
    assert "does not match" in (deployment.reason or "")
    assert [st.action for st in deployment.steps] == ["replace-file", "replace-file", "config-test"]
    assert deployment.steps[-1].state is StepState.FAILED


def test_rollback_flow_undoes_a_good_deployment_and_can_run_again(site: Site) -> None:
    old = issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    new = issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    assert site.served_serial() == new
    deployment_id = _deployments(site.certificate_id)[-1].id

    assert rollback_deployment(deployment_id) == "Rolled Back"
    assert site.served_serial() == old
    assert rollback_deployment(deployment_id) == "Rolled Back"  # re-runnable: nothing left to undo
    assert site.served_serial() == old
    deployment = _deployments(site.certificate_id)[-1]
    assert deployment.status is DeploymentStatus.ROLLED_BACK
    assert "rolled back on request" in (deployment.reason or "")


def test_a_rollback_restarts_what_was_there_even_when_the_check_disagrees(site: Site, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The restored files are byte for byte what the server ran: a check that fails on them (a stricter
    version, a file changed by hand) is reported, but the reload still happens and the old serial is proven."""
    old = issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    files_before = site.files()
    issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    stray_key = tmp_path / "stray.key"
    stray_key.write_bytes(private_key_to_pem(generate_private_key(KeySpec(algorithm="ec", size=256))))
    check = [sys.executable, "-m", "certfleet.demo.listener", "check"]
    _set_server(
        site, config_test_command=shlex.join([*check, "--cert", str(site.host.cert_path), "--key", str(stray_key)])
    )

    assert rollback_deployment(_deployments(site.certificate_id)[-1].id) == "Rolled Back"

    assert site.served_serial() == old
    assert site.files() == files_before
    reason = _deployments(site.certificate_id)[-1].reason or ""
    assert "configuration check of the restored files failed" in reason
    assert "does not match" in reason


def test_journal_undoes_a_deployment_whose_worker_died(site: Site) -> None:
    old = issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    new = issue_certificate(site.certificate_id)
    with session_scope() as s:
        target_id = repo.get(s, Certificate, site.certificate_id).targets[0].id
    deployment_id = start_deployment.fn(site.certificate_id, target_id)
    install_on_target.fn(deployment_id)  # ... and the worker is killed before it verifies
    site.listener.wait_for_log(f"now serving serial {new}")
    assert _deployments(site.certificate_id)[-1].status is DeploymentStatus.RUNNING
    state = deploy_certificate(site.certificate_id, return_state=True)  # the interrupted one blocks the target
    with pytest.raises(Exception, match=f"run rollback-deployment {deployment_id} first"):
        state.result()

    rollback_deployment(deployment_id, reason="worker lost")

    assert site.served_serial() == old
    assert _deployments(site.certificate_id)[-1].reason == f"worker lost; rolled back, serial {old} is served again"


def test_certificate_not_issued_yet_is_refused_and_nothing_changes(site: Site) -> None:
    before = site.files()
    state = deploy_certificate(site.certificate_id, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="has not been issued yet"):
        state.result()
    assert site.files() == before
    assert _deployments(site.certificate_id) == []
    reason = f"certificate {site.certificate_id} has not been issued yet: issue it first"
    _assert_refused_on_the_certificate(site, reason)


def _assert_refused_on_the_certificate(site: Site, reason: str) -> None:
    """The reason is on the certificate (list, detail, API), not only in the Prefect log."""
    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        assert (cert.status, cert.status_reason) == (CertificateStatus.DEPLOYMENT_FAILED, reason)


def test_a_certificate_without_its_private_key_is_refused_saying_so(site: Site) -> None:
    issue_certificate(site.certificate_id)
    with session_scope() as s:
        repo.get(s, Certificate, site.certificate_id).private_key = None  # e.g. imported without its key
    before = site.files()
    assert deploy_certificate(site.certificate_id, return_state=True).is_failed()
    assert site.files() == before
    assert _deployments(site.certificate_id) == []
    no_key = "certfleet holds no private key for it: import it with its key, or issue it"
    _assert_refused_on_the_certificate(site, f"certificate {site.certificate_id}: {no_key}")


def test_an_smime_certificate_is_refused_before_anything_changes(site: Site) -> None:
    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        cert.profile, cert.sans = "smime", ["alice@example.com"]
    issue_certificate(site.certificate_id)  # the built-in CA's S/MIME profile: emailProtection, no serverAuth
    before = site.files()
    state = deploy_certificate(site.certificate_id, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="this is an S/MIME certificate: it cannot be served by"):
        state.result()
    assert site.files() == before
    assert _deployments(site.certificate_id) == []
    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        assert cert.status is CertificateStatus.DEPLOYMENT_FAILED
        assert "this is an S/MIME certificate: it cannot be served by" in (cert.status_reason or "")


def _served(site: Site) -> tuple[str | None, str | None, CertificateStatus]:
    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        return cert.serial_number, cert.served_serial_number, cert.status


def test_a_failed_renewal_keeps_the_served_certificate_on_its_managed_row(site: Site) -> None:
    """Newest issued serial, served serial and status tell one story (issue 15): the previous certificate
    stays the live one until the new one is proven, and discovery finds it on the managed row."""
    old = issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    assert _served(site) == (old, old, CertificateStatus.DEPLOYED)

    new = issue_certificate(site.certificate_id)
    assert _served(site) == (new, old, CertificateStatus.ISSUED)  # issued, not served yet
    with session_scope() as s:
        reload = repo.get(s, Certificate, site.certificate_id).targets[0].server.reload_command or ""
    _set_server(site, reload_command="true")
    with pytest.raises(DeploymentFailed, match="Rolled Back"):
        deploy_certificate(site.certificate_id)
    assert _served(site) == (new, old, CertificateStatus.ROLLED_BACK)

    # A scan of the listener sees the old certificate: it is this row's, not a new unmanaged one.
    chain = fetch_served_chain("127.0.0.1", site.host.port, server_name=site.host.fqdn, timeout=5)
    with session_scope() as s:
        rows_before = s.scalar(select(func.count()).select_from(Certificate))
    sighting = Sighting(
        chain=tuple(c.public_bytes(serialization.Encoding.DER) for c in chain),
        kind="tls",
        locator=f"tls://127.0.0.1:{site.host.port}/{site.host.fqdn}",
        host="127.0.0.1",
        port=site.host.port,
        sni=site.host.fqdn,
    )
    record([sighting], now=utcnow(), bot_id=None)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Certificate)) == rows_before
        locations = s.scalars(select(CertificateLocation).where(CertificateLocation.locator == sighting.locator))
        assert [loc.certificate_id for loc in locations] == [site.certificate_id]

    _set_server(site, reload_command=reload)
    deploy_certificate(site.certificate_id)
    assert _served(site) == (new, new, CertificateStatus.DEPLOYED)
    assert rollback_deployment(_deployments(site.certificate_id)[-1].id) == "Rolled Back"
    assert _served(site) == (new, old, CertificateStatus.ROLLED_BACK)  # on request: the old one is back
    assert site.served_serial() == old


def test_two_targets_sharing_files_back_up_write_and_reload_once(site: Site, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One server block on two ports (issue 15): the second target's backup used to be the first one's new file,
    so rolling back "restored" the new certificate, and each target reloaded the server again."""
    second = ListenerProcess(
        "127.0.0.1", free_port(), site.host.cert_path, site.host.key_path, workdir=tmp_path / "second"
    )
    second.launch()
    try:
        with session_scope() as s:
            cert = repo.get(s, Certificate, site.certificate_id)
            first = cert.targets[0]
            server = first.server
            server.ports = [*server.ports, second.port]
            reloads = [shlex.split(server.reload_command or ""), second.reload_command()]
            server.reload_command = shlex.join(["sh", "-c", " && ".join(shlex.join(r) for r in reloads)])
            cert.targets.append(
                DeploymentTarget(
                    server=server,
                    port=second.port,
                    server_name=first.server_name,
                    cert_path=first.cert_path,
                    key_path=first.key_path,
                )
            )

        def both() -> set[str]:
            chain = fetch_served_chain("127.0.0.1", second.port, server_name=site.host.fqdn, timeout=5)
            return {site.served_serial(), serial_hex(chain[0].serial_number)}

        old = issue_certificate(site.certificate_id)
        deploy_certificate(site.certificate_id)
        assert both() == {old}
        old_files = site.files()
        new = issue_certificate(site.certificate_id)
        deploy_certificate(site.certificate_id)
        assert both() == {new}

        owner, sharer = _deployments(site.certificate_id)[-2:]
        assert [st.action for st in owner.steps] == ["replace-file", "replace-file", "config-test", "reload"]
        assert [st.action for st in sharer.steps] == ["shared-file", "shared-file"]  # no backup, write or reload
        assert {st.detail for st in sharer.steps} == {f"deployment {owner.id}"}
        assert sharer.status is DeploymentStatus.DEPLOYED

        with pytest.raises(PermanentConnectorError, match=f"shared with another target.*deployment {owner.id}"):
            rollback_deployment(sharer.id)
        assert rollback_deployment(owner.id) == "Rolled Back"
        assert site.files() == old_files  # the certificate the files held before this run, not the new one
        assert both() == {old}
    finally:
        second.stop()
