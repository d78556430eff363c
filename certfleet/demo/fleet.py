"""The demo fleet: TLS listeners on 127.0.0.1 that serve certificate files from disk, registered as
local-agent servers with one certificate each, as an operator would register real web servers."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from certfleet.demo.listener import ListenerProcess, free_port
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, DeploymentTarget, Server, ServerConnection
from certfleet.pki.bundle import chain_to_pem
from certfleet.pki.keys import KeySpec, generate_private_key, private_key_to_pem
from certfleet.servers.service import check_connectivity

DEMO_DOMAIN = "demo.certfleet.test"


@dataclass(frozen=True)
class DemoHost:
    name: str
    port: int
    directory: str

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{DEMO_DOMAIN}"

    @property
    def cert_path(self) -> Path:
        return Path(self.directory) / "fullchain.pem"

    @property
    def key_path(self) -> Path:
        return Path(self.directory) / "privkey.pem"

    def listener(self) -> ListenerProcess:
        return ListenerProcess("127.0.0.1", self.port, self.cert_path, self.key_path, workdir=Path(self.directory))


def plan_fleet(root: Path, count: int) -> list[DemoHost]:
    """Pick free ports and write each host's first certificate: a self-signed one, like a fresh install."""
    hosts = []
    for n in range(1, count + 1):
        host = DemoHost(name=f"web-{n}", port=free_port(), directory=str(root / f"web-{n}"))
        Path(host.directory).mkdir(parents=True, exist_ok=True)
        _write_placeholder(host)
        hosts.append(host)
    (root / "fleet.json").write_text(json.dumps([asdict(h) for h in hosts], indent=2))
    return hosts


def load_fleet(root: Path) -> list[DemoHost]:
    path = root / "fleet.json"
    return [DemoHost(**h) for h in json.loads(path.read_text())] if path.exists() else []


def placeholder_certificate(common_name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate and key for `common_name`, as a fresh install has: (cert PEM, key PEM)."""
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


def _write_placeholder(host: DemoHost) -> None:
    cert_pem, key_pem = placeholder_certificate(host.fqdn)
    host.cert_path.write_bytes(cert_pem)
    host.key_path.touch(mode=0o600)
    host.key_path.write_bytes(key_pem)  # the file was created 0600 before the key went in


def listener_server(
    listener: ListenerProcess,
    *,
    description: str,
    bot_id: int,
    created_by: str,
    app_path: str | None = None,
    service_name: str | None = None,
) -> Server:
    """A local-agent server row for a demo TLS listener: its port, its own config test and reload commands."""
    return Server(
        description=description,
        host="127.0.0.1",
        ports=[listener.port],
        connection=ServerConnection.LOCAL,
        server_type="generic",
        app_path=app_path if app_path is not None else str(listener.workdir),
        service_name=service_name,
        config_test_command=shlex.join(listener.control_check_command()),
        reload_command=shlex.join(listener.control_reload_command()),
        bot_id=bot_id,
        created_by=created_by,
    )


def register_fleet(hosts: list[DemoHost], *, ca_connector_id: int, bot_id: int) -> list[int]:
    """One local-agent server, certificate and target per host, each server checked (Active); returns the
    certificate ids."""
    ids = []
    server_ids = []
    with session_scope() as s:
        for host in hosts:
            server = listener_server(
                host.listener(),
                description=f"Demo web server {host.name}",
                bot_id=bot_id,
                created_by="certfleet demo",
                app_path=host.directory,
                service_name=f"certfleet-demo-{host.name}",
            )
            cert = Certificate(
                common_name=host.fqdn,
                sans=[host.fqdn],
                ca_connector_id=ca_connector_id,
                provisioning_bot_id=bot_id,
                key_spec="ec-p256",
                validity_days=30,
                batch_name="demo",
                tags=["demo"],
                location_host="127.0.0.1",
                location_port=host.port,
            )
            cert.targets.append(
                DeploymentTarget(
                    server=server,
                    port=host.port,
                    server_name=host.fqdn,
                    cert_path=str(host.cert_path),
                    key_path=str(host.key_path),
                )
            )
            s.add_all([server, cert])
            s.flush()
            ids.append(cert.id)
            server_ids.append(server.id)
    for server_id in server_ids:
        # The same check as the dashboard's "Check connectivity": a fresh fleet shows Active, not Pending.
        result = check_connectivity(server_id, actor="certfleet demo")
        if result.reason is not None:
            raise RuntimeError(f"demo server {server_id} is not ready: {result.reason}")
    return ids
