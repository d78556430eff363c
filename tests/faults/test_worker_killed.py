"""The deploy worker SIGKILLed between backup and reload, against the real sshd and nginx: `rollback-deployment`
puts the old certificate and key back whole (the same bytes, the old serial served), and the next run then
installs the new ones whole. Never a mix of new certificate and old key on disk after either."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from certfleet.flows.deployment import deploy_certificate
from certfleet.flows.issuance import issue_certificate
from certfleet.flows.rollback import rollback_deployment
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.orm import DeploymentStatus
from certfleet.pki.bundle import key_matches_certificate
from certfleet.pki.keys import load_private_key
from certfleet.pki.parse import load_material, serial_hex
from tests.faults.deploy_worker import POINTS
from tests.integration.conftest import _prefect, boot, deployments, register, sshd  # noqa: F401 - fixtures
from tests.integration.sshd import Sshd
from tests.integration.test_ssh_nginx import SNI, Nginx, nginx_site  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]


def _on_disk(site: Nginx) -> tuple[str, bool]:
    """The serial of the certificate file nginx loads, and whether the key file beside it is its key."""
    certs = site.root / "certs"
    leaf = load_material((certs / "shop.fullchain.pem").read_bytes()).certificates[0]
    key = load_private_key((certs / "shop.key").read_bytes())
    return serial_hex(leaf.serial_number), key_matches_certificate(key, leaf)


def _backups(site: Nginx, deployment_id: int) -> list[str]:
    return sorted(p.name for p in site.root.rglob(f"*.certfleet-backup-{deployment_id}"))


@pytest.mark.parametrize("point", POINTS)
def test_worker_killed_mid_deployment(
    boot: Bootstrapped,  # noqa: F811
    sshd: Sshd,  # noqa: F811
    nginx_site: Nginx,  # noqa: F811
    point: str,
) -> None:
    site = register(boot, sshd, server_type="nginx", app_path=str(nginx_site.root), port=nginx_site.port, sni=SNI)
    old = issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    assert nginx_site.served() == old
    files_before = nginx_site.files()
    new = issue_certificate(site.certificate_id)

    worker = subprocess.run(
        [sys.executable, "-m", "tests.faults.deploy_worker", str(site.certificate_id), str(site.target_id), point],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert worker.returncode == -signal.SIGKILL, worker.stderr[-3000:]
    deployment_id = int(worker.stdout.split()[0])
    assert deployments(site.certificate_id)[-1].status is DeploymentStatus.RUNNING  # interrupted
    assert _backups(nginx_site, deployment_id) != []  # the backup was written before the kill
    serial, matches = _on_disk(nginx_site)
    if point == "mid-install":
        assert (serial, matches) == (new, False)  # the kill left the new certificate beside the old key
    assert nginx_site.served() == old  # never reloaded

    state = rollback_deployment(deployment_id, reason="worker killed", return_state=True)
    deployment = deployments(site.certificate_id)[-1]
    if point == "after-backup":  # killed before the first file was replaced: there is nothing to undo
        assert state.is_failed()
        assert deployment.status is DeploymentStatus.FAILED
        assert deployment.reason == "worker killed; nothing on the server was changed"
    else:
        assert state.is_completed(), deployment.reason
        assert deployment.status is DeploymentStatus.ROLLED_BACK
    assert nginx_site.files() == files_before  # every file byte for byte as before
    assert _on_disk(nginx_site) == (old, True)
    assert nginx_site.served() == old
    assert _backups(nginx_site, deployment_id) == []  # its copies (one may hold the old private key) are removed

    assert deploy_certificate(site.certificate_id) == {site.target_id: "Deployed"}
    assert _on_disk(nginx_site) == (new, True)
    assert nginx_site.served() == new
