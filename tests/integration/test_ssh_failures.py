"""deploy-certificate against SSH servers that cannot be used: a clear reason, one attempt, no change.

A wrong password, a changed host key, an unreachable host and a missing path each end the deployment as
Deployment Failed with a reason the operator can act on, after a single attempt (the sshd log counts the
logins), and leave every file on the server as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from certfleet.connectors.servers.ssh import fingerprint
from certfleet.demo.listener import free_port
from certfleet.flows.deployment import DeploymentFailed, deploy_certificate
from certfleet.flows.issuance import issue_certificate
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, CertificateStatus, DeploymentStatus
from certfleet.servers.service import check_connectivity
from tests.integration.conftest import deployments, files_of, register, self_signed
from tests.integration.sshd import PASSWORD_USER, Sshd, chown_tree, scratch_dir

SNI = "edge.example.test"


def _nginx_files(port: int) -> Path:
    """An nginx configuration and its certificate files (no nginx needs to run: nothing gets that far)."""
    root = scratch_dir(PASSWORD_USER, "certfleet-untouched-")
    (root / "nginx.conf").write_text(
        f"events {{}}\nhttp {{\n  server {{\n    listen {port} ssl;\n    server_name {SNI};\n"
        "    ssl_certificate edge.pem;\n    ssl_certificate_key edge.key;\n  }\n}\n"
    )
    cert, key = self_signed(SNI)
    (root / "edge.pem").write_bytes(cert)
    (root / "edge.key").write_bytes(key)
    chown_tree(root, PASSWORD_USER)
    return root


def _set(server_id: int, column: str, value: object) -> None:
    with session_scope() as s:
        s.execute(text(f"UPDATE servers SET {column} = :v WHERE id = :id"), {"v": value, "id": server_id})  # noqa: S608


@pytest.mark.parametrize("case", ["wrong password", "changed host key", "unreachable", "missing path"])
def test_an_unusable_server_fails_clearly_once_and_untouched(boot: Bootstrapped, sshd: Sshd, case: str) -> None:
    port = free_port()
    root = _nginx_files(port)
    site = register(boot, sshd, server_type="nginx", app_path=str(root), port=port, sni=SNI)
    issue_certificate(site.certificate_id)
    assert check_connectivity(site.server_id).status == "Active"  # pins the host key
    before = files_of(root)
    expected: str
    if case == "wrong password":
        from certfleet.models.orm import Server

        with session_scope() as s:
            repo.get(s, Server, site.server_id).password = "not-the-password"
        expected = "authentication failed: the server refused the password for user 'certfleet-pw'"
    elif case == "changed host key":
        old = sshd.host_key_line
        new = sshd.restart_with_new_host_key()
        expected = f"presented ssh-ed25519 {fingerprint(new)} but {fingerprint(old)} is pinned"
    elif case == "unreachable":
        _set(site.server_id, "ssh_port", free_port())
        expected = "connection refused: no SSH server listens there"
    else:
        _set(site.server_id, "app_path", str(root / "gone"))
        expected = f"{root}/gone/nginx.conf does not exist"
    logins = sshd.log().count("Failed password") + sshd.log().count("Accepted password")

    with pytest.raises(DeploymentFailed, match="Deployment Failed"):
        deploy_certificate(site.certificate_id)

    assert files_of(root) == before
    (deployment,) = deployments(site.certificate_id)
    assert deployment.status is DeploymentStatus.FAILED
    assert expected in (deployment.reason or "")
    assert "nothing on the server was changed" in (deployment.reason or "")
    assert deployment.steps == []  # nothing was journalled because nothing was touched
    with session_scope() as s:
        assert repo.get(s, Certificate, site.certificate_id).status is CertificateStatus.DEPLOYMENT_FAILED
    attempts = sshd.log().count("Failed password") + sshd.log().count("Accepted password") - logins
    assert attempts == (0 if case in ("changed host key", "unreachable") else 1)  # no retry loop


def test_the_check_server_flow_sets_active_or_says_why(boot: Bootstrapped, sshd: Sshd) -> None:
    from certfleet.flows.servers import check_server

    port = free_port()
    root = _nginx_files(port)
    site = register(boot, sshd, server_type="nginx", app_path=str(root), port=port, sni=SNI)
    assert check_server(site.server_id).status == "Active"
    _set(site.server_id, "app_path", "/srv/not-here")
    result = check_server(site.server_id)
    assert (result.status, result.reason) == (
        "Unreachable",
        f"the Nginx Path /srv/not-here does not exist on {PASSWORD_USER}@127.0.0.1:{sshd.port}",
    )
