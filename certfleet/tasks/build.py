"""Turn stored configuration into live connectors: the one registry of CA kinds and server handlers."""

from __future__ import annotations

from sqlalchemy.orm import Session

from certfleet.ca_admin.runtime import REMOTE_KINDS, StoredConnector, build_remote_ca
from certfleet.connectors.base import CertificateAuthority, ServerHandler
from certfleet.connectors.ca.local import CAMaterial, LocalCA, create_ca_material
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers.local import LocalTransport
from certfleet.connectors.servers.pem_files import PemFilesTarget
from certfleet.connectors.servers.transport import Transport
from certfleet.models import repo
from certfleet.models.orm import CAConnector, DeploymentTarget, Server, ServerConnection
from certfleet.servers.access import kind_handler, release_connections, ssh_transport
from certfleet.tasks.ca_runtime import runtime_hooks


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


def build_ca(session: Session, connector: CAConnector) -> CertificateAuthority:
    if connector.kind == LocalCA.kind:
        return LocalCA(
            local_ca_material(session, connector),
            repo.DbRevocationStore(session, connector.id),
            default_validity_days=connector.default_validity_days,
            crl_url=connector.settings.get("crl_url"),
        )
    if connector.kind in REMOTE_KINDS:
        # Remote CAs: the order journal and the Prefect rate limit come from the task layer.
        return build_remote_ca(StoredConnector.of(connector), runtime_hooks(connector))
    raise PermanentConnectorError(f"CA connector kind {connector.kind!r} is not supported by this version")


def build_transport(server: Server) -> Transport:
    if server.connection is ServerConnection.LOCAL:
        return LocalTransport()
    if server.connection is ServerConnection.SSH:
        return ssh_transport(server)  # one pinned connection per server, reused within the process
    raise PermanentConnectorError(
        f"server {server.host}: {server.connection.value} connections are not supported by this version"
    )


__all__ = ["build_ca", "build_handler", "build_transport", "release_connections"]


def build_handler(target: DeploymentTarget) -> ServerHandler:
    server = target.server
    handler = kind_handler(target, build_transport(server))  # nginx, apache, tomcat, jetty, jboss, weblogic
    if handler is not None:
        return handler
    if not (target.cert_path and target.key_path):
        raise PermanentConnectorError(
            f"target {target.id} on {server.host} names no certificate and key file; set both paths"
        )
    return PemFilesTarget(
        transport=build_transport(server),
        cert_path=target.cert_path,
        key_path=target.key_path,
        chain_path=target.chain_path,
        config_test_command=server.config_test_command,
        reload_command=server.reload_command,
    )
