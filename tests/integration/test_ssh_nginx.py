"""nginx over SSH: deploy, rotate, roll back a failing config test and a key that does not match.

nginx runs as the SSH login user with its own configuration in a scratch directory (no systemd): the
handler finds the certificate files through `include`s and the server block on the port, tests with
`nginx -t`, reloads with `nginx -s reload`. A second instance runs as root and is reached with sudo.
"""

from __future__ import annotations

import pwd
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certfleet.demo.listener import free_port
from certfleet.flows.deployment import DeploymentFailed, deploy_certificate
from certfleet.flows.issuance import issue_certificate
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.orm import DeploymentStatus, StepState
from certfleet.pki.bundle import key_matches_certificate
from certfleet.pki.keys import load_private_key
from certfleet.pki.parse import load_material, serial_hex
from tests.integration.conftest import (
    deploy_with_a_key_that_does_not_match,
    deployments,
    files_of,
    register,
    self_signed,
    served_serial,
)
from tests.integration.sshd import PASSWORD, PASSWORD_USER, SUDO_USER, Sshd, chown_tree, kill_pidfile, require

SNI = "shop.example.test"
OTHER_SNI = "blog.example.test"


@dataclass
class Nginx:
    root: Path
    port: int

    @property
    def conf(self) -> Path:
        return self.root / "nginx.conf"

    def served(self, sni: str = SNI) -> str:
        return served_serial(self.port, sni)

    def files(self) -> dict[str, bytes]:
        return files_of(self.root)


def _write_config(root: Path, port: int, other_port: int) -> None:
    for d in ("sites", "certs", "tmp"):
        (root / d).mkdir(exist_ok=True)
    tmp = root / "tmp"
    (root / "nginx.conf").write_text(
        f"""# certfleet integration test: nginx started by hand, no systemd
pid {root}/nginx.pid;
error_log {root}/error.log;
worker_processes 1;
events {{ worker_connections 64; }}

http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    ssl_session_cache off;
    include sites/*.conf;
}}
"""
    )
    (root / "sites" / "shop.conf").write_text(
        f"""# The shop: certfleet manages this certificate.
server {{
    listen 127.0.0.1:{port} ssl;   # TLS
    server_name {SNI} www.{SNI};
    ssl_certificate     certs/shop.fullchain.pem;  # leaf + intermediates
    ssl_certificate_key "certs/shop.key";
    return 200 "shop\\n";
}}
"""
    )
    (root / "sites" / "blog.conf").write_text(
        f"""server {{
    listen 127.0.0.1:{port} ssl default_server;
    server_name {OTHER_SNI};
    ssl_certificate certs/blog.pem;
    ssl_certificate_key certs/blog.key;
}}
server {{
    listen 127.0.0.1:{other_port} ssl;
    server_name {SNI};
    ssl_certificate certs/blog.pem;
    ssl_certificate_key certs/blog.key;
}}
"""
    )
    for name, cn in (("shop.fullchain.pem", SNI), ("blog.pem", OTHER_SNI)):
        cert, key = self_signed(cn)
        (root / "certs" / name).write_bytes(cert)
        key_path = root / "certs" / name.replace("fullchain.pem", "key").replace(".pem", ".key")
        key_path.write_bytes(key)
        key_path.chmod(0o600)


def _start(root: Path, user: str | None) -> None:
    nginx = require("nginx", "run `bash scripts/install-system-packages.sh` (Debian package nginx)")
    result = subprocess.run(
        [nginx, "-c", str(root / "nginx.conf")],
        user=user,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"nginx did not start: {result.stderr}")


@pytest.fixture(scope="module")
def nginx_site() -> Iterator[Nginx]:
    from tests.integration.sshd import scratch_dir

    root = scratch_dir(PASSWORD_USER, "certfleet-nginx-")
    port = free_port()
    _write_config(root, port, free_port())
    chown_tree(root, PASSWORD_USER)
    _start(root, PASSWORD_USER)
    try:
        yield Nginx(root, port)
    finally:
        kill_pidfile(root / "nginx.pid")
        shutil.rmtree(root, ignore_errors=True)


def test_deploy_finds_the_files_through_includes_then_rotates(
    boot: Bootstrapped, sshd: Sshd, nginx_site: Nginx
) -> None:
    placeholder = nginx_site.served()
    blog_before = nginx_site.served(OTHER_SNI)
    site = register(boot, sshd, server_type="nginx", app_path=str(nginx_site.root), port=nginx_site.port, sni=SNI)

    first = issue_certificate(site.certificate_id)
    assert deploy_certificate(site.certificate_id) == {site.target_id: "Deployed"}
    assert nginx_site.served() == first != placeholder
    assert nginx_site.served(OTHER_SNI) == blog_before  # the other server block on the port is untouched

    certs = nginx_site.root / "certs"
    leaf, *rest = load_material((certs / "shop.fullchain.pem").read_bytes()).certificates
    assert serial_hex(leaf.serial_number) == first
    assert len(rest) == 1  # the intermediate goes along, the root stays out
    assert key_matches_certificate(load_private_key((certs / "shop.key").read_bytes()), leaf)
    assert stat.S_IMODE((certs / "shop.key").stat().st_mode) == 0o600
    assert (certs / "shop.key").stat().st_uid == pwd.getpwnam(PASSWORD_USER).pw_uid

    second = issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    assert nginx_site.served() == second
    d1, d2 = deployments(site.certificate_id)
    assert (d1.status, d2.status) == (DeploymentStatus.DEPLOYED, DeploymentStatus.DEPLOYED)
    assert (d2.serial_number, d2.previous_serial) == (second, first)
    assert [st.path for st in d2.steps if st.action == "replace-file"] == [
        str(certs / "shop.fullchain.pem"),
        str(certs / "shop.key"),
    ]
    backup = Path(d2.steps[0].backup_path or "")
    assert serial_hex(load_material(backup.read_bytes()).certificates[0].serial_number) == first


def test_a_failing_config_test_rolls_back_and_the_old_certificate_stays(
    boot: Bootstrapped, sshd: Sshd, nginx_site: Nginx
) -> None:
    site = register(boot, sshd, server_type="nginx", app_path=str(nginx_site.root), port=nginx_site.port, sni=SNI)
    issue_certificate(site.certificate_id)
    deploy_certificate(site.certificate_id)
    old = nginx_site.served()
    issue_certificate(site.certificate_id)
    # Someone else's half-finished edit breaks the configuration: nginx -t fails, nothing may reload.
    broken = nginx_site.root / "sites" / "zz-typo.conf"
    broken.write_text("server { listen 127.0.0.1:1 ssl; server_nam oops; }\n")
    try:
        files_before = nginx_site.files()
        with pytest.raises(DeploymentFailed, match="Rolled Back"):
            deploy_certificate(site.certificate_id)
        assert nginx_site.files() == files_before
    finally:
        broken.unlink()
    assert nginx_site.served() == old
    deployment = deployments(site.certificate_id)[-1]
    assert deployment.status is DeploymentStatus.ROLLED_BACK
    assert 'unknown directive "server_nam"' in (deployment.reason or "")
    assert f"serial {old} is served again" in (deployment.reason or "")
    assert [st.action for st in deployment.steps] == ["replace-file", "replace-file", "config-test"]
    assert deployment.steps[-1].state is StepState.FAILED


def test_a_key_that_does_not_match_is_refused_before_anything_changes(
    boot: Bootstrapped, sshd: Sshd, nginx_site: Nginx
) -> None:
    site = register(boot, sshd, server_type="nginx", app_path=str(nginx_site.root), port=nginx_site.port, sni=SNI)
    deployment = deploy_with_a_key_that_does_not_match(site.certificate_id, nginx_site)
    assert deployment.status is DeploymentStatus.FAILED
    assert "private key to install does not match the certificate" in (deployment.reason or "")
    assert "nothing on the server was changed" in (deployment.reason or "")
    assert deployment.steps == []  # refused while planning, as the Java handlers do: no file touched, no reload


def test_explicit_paths_rewrite_only_the_directive(boot: Bootstrapped, sshd: Sshd, nginx_site: Nginx) -> None:
    certs = nginx_site.root / "certs"
    conf = nginx_site.root / "sites" / "shop.conf"
    original = conf.read_text()
    new_cert, new_key = str(certs / "shop-2026.pem"), str(certs / "shop-2026.key")
    site = register(
        boot,
        sshd,
        server_type="nginx",
        app_path=str(nginx_site.root),
        port=nginx_site.port,
        sni=SNI,
        cert_path=new_cert,
        key_path=new_key,
    )
    try:
        serial = issue_certificate(site.certificate_id)
        deploy_certificate(site.certificate_id)
        assert nginx_site.served() == serial
        rewritten = conf.read_text()
        assert rewritten == original.replace("certs/shop.fullchain.pem", new_cert).replace('"certs/shop.key"', new_key)
        assert "# leaf + intermediates" in rewritten
    finally:
        conf.write_text(original)
        subprocess.run(["nginx", "-s", "reload", "-c", str(nginx_site.conf)], user=PASSWORD_USER, check=True)


def test_sudo_deploys_to_a_root_owned_nginx(boot: Bootstrapped, sshd: Sshd, tmp_path: Path) -> None:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="certfleet-nginx-root-"))
    root.chmod(0o700)  # only root (and sudo) can get in
    port = free_port()
    _write_config(root, port, free_port())
    _start(root, None)
    try:
        placeholder = served_serial(port, SNI)
        site = register(
            boot,
            sshd,
            server_type="nginx",
            app_path=str(root),
            port=port,
            sni=SNI,
            username=SUDO_USER,
            password=PASSWORD,
            use_sudo=True,
        )
        serial = issue_certificate(site.certificate_id)
        assert deploy_certificate(site.certificate_id) == {site.target_id: "Deployed"}
        assert served_serial(port, SNI) == serial != placeholder
        key = root / "certs" / "shop.key"
        assert (key.stat().st_uid, stat.S_IMODE(key.stat().st_mode)) == (0, 0o600)
        assert not list(Path(pwd.getpwnam(SUDO_USER).pw_dir).glob(".certfleet-upload-*"))
    finally:
        kill_pidfile(root / "nginx.pid")
        shutil.rmtree(root, ignore_errors=True)
