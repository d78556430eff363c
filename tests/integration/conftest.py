"""Integration tests: a real sshd, real web servers started as the SSH user, certfleet's real flows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from certfleet.connectors.servers.probe import fetch_served_chain
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped, initialize
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, Deployment, DeploymentTarget
from certfleet.pki.bundle import chain_to_pem
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


def served_serial(port: int, sni: str) -> str:
    return serial_hex(fetch_served_chain("127.0.0.1", port, server_name=sni, timeout=5)[0].serial_number)


def self_signed(common_name: str) -> tuple[bytes, bytes]:
    """A placeholder certificate and key, as a fresh install has: (cert PEM, key PEM)."""
    key = generate_private_key(KeySpec(algorithm="ec", size=256))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return chain_to_pem([cert]), private_key_to_pem(key)


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
