"""Turn stored configuration into live connectors: the one registry of CA kinds and server handlers."""

from __future__ import annotations

from functools import partial

from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from certfleet.connectors.base import CertificateAuthority, ServerHandler
from certfleet.connectors.ca.journal import OrderJournal
from certfleet.connectors.ca.local import CAMaterial, LocalCA, create_ca_material
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers.local import LocalTransport
from certfleet.connectors.servers.pem_files import PemFilesTarget
from certfleet.connectors.servers.transport import Transport
from certfleet.jobs.models import ServerAccess, TargetJob
from certfleet.jobs.store import JobStore
from certfleet.models import repo
from certfleet.models.orm import CAConnector, Server, ServerConnection
from certfleet.servers.access import access_of, kind_handler, release_connections, smb_transport, ssh_transport
from certfleet.settings import get_settings


def local_ca_material(session: Session, connector: CAConnector) -> CAMaterial:
    """The CA's keys, created on first use and stored encrypted in the connector row."""
    secret = repo.connector_credentials(connector)
    if "issuing_key_pem" not in secret:
        material = create_ca_material(connector.name)
        connector.settings = {**connector.settings, **material.public_part()}
        repo.set_connector_credentials(connector, {**secret, **material.secret_part()})
        session.flush()
        repo.audit(session, actor="certfleet", action="create-ca-keys", obj=connector)
        return material
    return CAMaterial.load(connector.settings, secret)


def public_crl_url(connector_id: int) -> str | None:
    """Where the dashboard serves the built-in CA's CRL, when CERTFLEET_PUBLIC_URL says how clients reach it."""
    base = get_settings().public_url
    return f"{base.rstrip('/')}/crl/{connector_id}.crl" if base else None


def built_in_crl(session: Session, connector: CAConnector) -> bytes:
    """The built-in CA's current CRL (DER), signed now from its revocations table; NotFound before its first key."""
    if connector.kind != LocalCA.kind or "issuing_key_pem" not in repo.connector_credentials(connector):
        raise repo.NotFound(f"CA connector {connector.id} is not a built-in CA that has issued certificates")
    crl = LocalCA(local_ca_material(session, connector), repo.DbRevocationStore(session, connector.id)).crl()
    return crl.public_bytes(serialization.Encoding.DER)


def build_ca(session: Session, connector: CAConnector, journal: OrderJournal | None = None) -> CertificateAuthority:
    """`journal`: where a remote CA's order ids are recorded (default: the TLS orders table)."""
    if connector.kind == LocalCA.kind:
        return LocalCA(
            local_ca_material(session, connector),
            repo.DbRevocationStore(session, connector.id),
            default_validity_days=connector.default_validity_days,
            crl_url=connector.settings.get("crl_url") or public_crl_url(connector.id),
        )
    # Imported for a remote CA only: every CA client library (acme, ...) would cost each deploy run's process.
    from certfleet.ca_admin.runtime import REMOTE_KINDS, StoredConnector, build_remote_ca
    from certfleet.tasks.ca_runtime import runtime_hooks

    if connector.kind in REMOTE_KINDS:
        # Remote CAs: the order journal and the Prefect rate limit come from the task layer.
        return build_remote_ca(StoredConnector.of(connector), runtime_hooks(connector, journal))
    raise PermanentConnectorError(f"CA connector kind {connector.kind!r} is not supported by this version")


def build_transport(server: Server | ServerAccess, store: JobStore | None = None) -> Transport:
    """`store` records a host key seen on first contact (default: the database of this host)."""
    access = access_of(server)
    if access.connection == ServerConnection.LOCAL.value:
        return LocalTransport()
    if access.connection == ServerConnection.SSH.value:
        pin = None if store is None else partial(store.pin_host_key, access.server_id)
        return ssh_transport(access, pin=pin)  # one pinned connection per server, reused within the process
    if access.connection == ServerConnection.SMB.value:
        return smb_transport(access)  # one SMB session per server, reused within the process
    raise PermanentConnectorError(
        f"server {access.host}: {access.connection} connections are not supported by this version"
    )


__all__ = ["build_ca", "build_handler", "build_transport", "release_connections"]


def build_handler(job: TargetJob, store: JobStore | None = None) -> ServerHandler:
    transport = build_transport(job.server, store)
    handler = kind_handler(job, transport)  # nginx, apache, tomcat, jetty, jboss, weblogic
    if handler is not None:
        return handler
    if not (job.cert_path and job.key_path):
        raise PermanentConnectorError(
            f"target {job.target_id} on {job.server.host} names no certificate and key file; set both paths"
        )
    return PemFilesTarget(
        transport=transport,
        cert_path=job.cert_path,
        key_path=job.key_path,
        chain_path=job.chain_path,
        config_test_command=job.server.config_test_command,
        reload_command=job.server.reload_command,
    )
