"""Integration tests: a real sshd, real web servers started as the SSH user, certfleet's real flows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from sqlalchemy import select

from certfleet.connectors.servers.probe import fetch_served_chain
from certfleet.demo.fleet import placeholder_certificate
from certfleet.flows.deployment import deploy_certificate
from certfleet.flows.issuance import issue_certificate
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped, initialize
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, Deployment, DeploymentTarget
from certfleet.pki.keys import KeySpec, generate_private_key, private_key_to_pem
from certfleet.pki.parse import serial_hex
from certfleet.servers.service import ServerInput, create_server
from tests.conftest import use_settings
from tests.integration.sshd import PASSWORD, PASSWORD_USER, Sshd, running_sshd


@pytest.fixture(autouse=True)
def _prefect(prefect_harness: None) -> None:
    return None


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


@pytest.fixture
def boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bootstrapped]:
    """A fresh certfleet (SQLite: these tests are about servers; the database tests cover PostgreSQL)."""
    use_settings(monkeypatch, tmp_path / "data", None)
    yield initialize()
    from certfleet.models import db

    db.dispose_engines()


@pytest.fixture
def custom_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test Tomcat and Jetty run without systemd: their restart is a free-form command, which needs
    CERTFLEET_ALLOW_CUSTOM_COMMANDS on (and an Admin: `register` creates the server as one)."""
    monkeypatch.setenv("CERTFLEET_ALLOW_CUSTOM_COMMANDS", "true")


def served_serial(port: int, sni: str) -> str:
    return serial_hex(fetch_served_chain("127.0.0.1", port, server_name=sni, timeout=5)[0].serial_number)


self_signed = placeholder_certificate  # a fresh install's certificate and key: (cert PEM, key PEM)


@dataclass
class Registered:
    server_id: int
    certificate_id: int
    target_id: int


def register(
    boot: Bootstrapped,
    sshd: Sshd,
    *,
    server_type: str,
    app_path: str,
    port: int,
    sni: str,
    username: str = PASSWORD_USER,
    password: str | None = PASSWORD,
    use_sudo: bool = False,
    keystore_folder: str | None = None,
    reload_command: str | None = None,
    config_test_command: str | None = None,
    service_name: str | None = None,
    cert_path: str | None = None,
    key_path: str | None = None,
) -> Registered:
    """An SSH server through the Add Server service (host key pinned on first contact), a certificate
    from the built-in CA and a target on `port` with SNI `sni`."""
    view = create_server(
        ServerInput(
            description=f"{server_type} under test",
            ip_address="127.0.0.1",
            username=username,
            password=password,
            server_type=server_type,
            app_path=app_path,
            keystore_folder=keystore_folder,
            ports=[port],
            ssh_port=sshd.port,
            use_sudo=use_sudo,
            reload_command=reload_command,
            config_test_command=config_test_command,
            service_name=service_name,
            bot_id=boot.local_bot_id,
        ),
        actor="test",
        custom_commands=True,
    )
    with session_scope() as s:
        cert = Certificate(
            common_name=sni,
            sans=[sni],
            ca_connector_id=boot.ca_connector_id,
            provisioning_bot_id=boot.local_bot_id,
            key_spec="ec-p256",
            validity_days=30,
        )
        target = DeploymentTarget(server_id=view.id, port=port, server_name=sni, cert_path=cert_path, key_path=key_path)
        cert.targets.append(target)
        s.add(cert)
        s.flush()
        return Registered(view.id, cert.id, target.id)


def deployments(certificate_id: int) -> list[Deployment]:
    with session_scope() as s:
        rows = list(
            s.scalars(select(Deployment).where(Deployment.certificate_id == certificate_id).order_by(Deployment.id))
        )
        for d in rows:
            _ = d.steps
        return rows


def set_certificate_key(certificate_id: int, key_pem: bytes) -> None:
    """Simulate a key mix-up: the stored key no longer belongs to the issued certificate."""
    with session_scope() as s:
        repo.get(s, Certificate, certificate_id).private_key = key_pem


def files_of(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and "certfleet-backup" not in p.name and p.suffix not in (".log", ".pid")
    }


class ServesFiles(Protocol):
    """A real server under test: the serial it serves, and the files of its configuration and key store."""

    def served(self) -> str: ...

    def files(self) -> dict[str, bytes]: ...


def deploy_with_a_key_that_does_not_match(certificate_id: int, server: ServesFiles) -> Deployment:
    """Deploy, re-issue, give the certificate a key that is not its own and deploy again: the run fails, the
    server still serves the old serial from the same files, and the reason names the mismatch. Returns the
    failed deployment, for what each server kind checks besides (its status, its steps)."""
    issue_certificate(certificate_id)
    deploy_certificate(certificate_id)
    old = server.served()
    files_before = server.files()
    issue_certificate(certificate_id)
    set_certificate_key(certificate_id, private_key_to_pem(generate_private_key(KeySpec(algorithm="ec", size=256))))

    assert deploy_certificate(certificate_id, return_state=True).is_failed()

    assert server.served() == old
    assert server.files() == files_before
    deployment = deployments(certificate_id)[-1]
    assert "does not match the certificate" in (deployment.reason or "")
    return deployment
