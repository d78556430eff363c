"""From a stored server to live connectors: its SSH transport (pinned, cached per process) and its handler.

`certfleet.tasks.build` uses these for deployments; the server service uses them for the connectivity
check. A host key seen on first contact is written back to the server row here (and audited).
"""

from __future__ import annotations

import atexit
from collections.abc import Callable

from certfleet.connectors.base import ServerHandler
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers.apache import ApacheHandler
from certfleet.connectors.servers.jboss import JBossHandler
from certfleet.connectors.servers.jetty import JettyHandler
from certfleet.connectors.servers.nginx import NginxHandler
from certfleet.connectors.servers.server_kinds import ServerKindHandler, ServerSpec, TargetSpec
from certfleet.connectors.servers.ssh import (
    SshSettings,
    SshTransport,
    cached_transport,
    close_cached_transports,
    fingerprint,
)
from certfleet.connectors.servers.tomcat import TomcatHandler
from certfleet.connectors.servers.transport import Transport
from certfleet.connectors.servers.weblogic import WebLogicHandler
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import DeploymentTarget, Server

HANDLERS: dict[str, type[ServerKindHandler]] = {
    h.kind: h for h in (NginxHandler, ApacheHandler, TomcatHandler, JettyHandler, JBossHandler, WebLogicHandler)
}


def ssh_settings(server: Server) -> SshSettings:
    if not server.username:
        raise PermanentConnectorError(f"server {server.host}: set the username to log in with")
    return SshSettings(
        host=server.host,
        port=server.ssh_port or 22,
        username=server.username,
        password=server.password,
        private_key=server.ssh_private_key,
        key_passphrase=server.ssh_key_passphrase,
        host_key=server.ssh_host_key,
        use_sudo=bool(server.use_sudo),
    )


def pin_host_key(server_id: int) -> Callable[[str], None]:
    """Record the key a server presented on first contact; a key pinned meanwhile is never replaced."""

    def record(key_line: str) -> None:
        with session_scope() as s:
            server = repo.get(s, Server, server_id)
            if server.ssh_host_key:
                return
            server.ssh_host_key = key_line
            repo.audit(
                s, actor="certfleet", action="pin-host-key", obj=server, detail=f"{fingerprint(key_line)} pinned"
            )

    return record


def ssh_transport(server: Server, *, cached: bool = True) -> SshTransport:
    settings = ssh_settings(server)
    if cached:
        return cached_transport(server.id, settings, pin_host_key(server.id))
    return SshTransport(settings, on_new_host_key=pin_host_key(server.id))


def server_spec(server: Server) -> ServerSpec:
    return ServerSpec(
        server_type=server.server_type,
        app_path=server.app_path or "",
        keystore_folder=server.keystore_folder,
        service_name=server.service_name,
        version=server.version,
        config_test_command=server.config_test_command,
        reload_command=server.reload_command,
    )


def target_spec(target: DeploymentTarget) -> TargetSpec:
    return TargetSpec(
        port=target.port,
        server_name=target.server_name or target.certificate.common_name,
        cert_path=target.cert_path,
        key_path=target.key_path,
        chain_path=target.chain_path,
    )


def kind_handler(target: DeploymentTarget, transport: Transport) -> ServerHandler | None:
    """The handler of the server's type, or None for types without one (plain PEM files)."""
    cls = HANDLERS.get(target.server.server_type)
    if cls is None:
        return None
    return cls(transport, server_spec(target.server), target_spec(target))


def release_connections() -> int:
    """Close this process's cached SSH connections (a flow run is over); returns how many were open."""
    return close_cached_transports()


atexit.register(close_cached_transports)
