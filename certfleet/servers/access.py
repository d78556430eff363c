"""From a stored server to live connectors: its SSH transport (pinned, cached per process) and its handler.

`certfleet.tasks.build` uses these for deployments; the server service uses them for the connectivity
check. A host key seen on first contact is written back to the server row here (and audited).
"""

from __future__ import annotations

import atexit
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from certfleet.connectors.base import ServerHandler
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers.apache import ApacheHandler
from certfleet.connectors.servers.jboss import JBossHandler
from certfleet.connectors.servers.jetty import JettyHandler
from certfleet.connectors.servers.nginx import NginxHandler
from certfleet.connectors.servers.server_kinds import ServerKindHandler, ServerSpec, TargetSpec
from certfleet.connectors.servers.tomcat import TomcatHandler
from certfleet.connectors.servers.transport import Transport
from certfleet.connectors.servers.weblogic import WebLogicHandler
from certfleet.jobs.models import ServerAccess, TargetJob
from certfleet.models.orm import Server, ServerConnection

if TYPE_CHECKING:  # imported when an SSH server is reached: paramiko costs every local flow-run process ~0.1-0.7 s
    from certfleet.connectors.servers.smb import SmbSettings, SmbTransport
    from certfleet.connectors.servers.ssh import SshSettings, SshTransport

SSH_MODULE = "certfleet.connectors.servers.ssh"
SMB_MODULE = "certfleet.connectors.servers.smb"

HANDLERS: dict[str, type[ServerKindHandler]] = {
    h.kind: h for h in (NginxHandler, ApacheHandler, TomcatHandler, JettyHandler, JBossHandler, WebLogicHandler)
}


def access_of(server: Server | ServerAccess) -> ServerAccess:
    if isinstance(server, ServerAccess):
        return server
    from certfleet.jobs.db_store import server_access

    return server_access(server)


def ssh_settings(server: Server | ServerAccess) -> SshSettings:
    from certfleet.connectors.servers.ssh import SshSettings

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
    """Record the key a server presented on first contact, in the database (central host)."""
    from certfleet.jobs.db_store import DbJobStore

    return lambda key_line: DbJobStore().pin_host_key(server_id, key_line)


def ssh_transport(
    server: Server | ServerAccess, *, cached: bool = True, pin: Callable[[str], None] | None = None
) -> SshTransport:
    """`pin` records a host key seen on first contact (default: in the database)."""
    from certfleet.connectors.servers.ssh import SshTransport, cached_transport

    server_id = server.server_id if isinstance(server, ServerAccess) else server.id
    settings = ssh_settings(server)
    record = pin or pin_host_key(server_id)
    if cached:
        return cached_transport(server_id, settings, record)
    return SshTransport(settings, on_new_host_key=record)


def smb_settings(server: Server | ServerAccess) -> SmbSettings:
    from certfleet.connectors.servers.smb import SmbSettings

    if not server.username or not server.password:
        raise PermanentConnectorError(f"server {server.host}: set the Windows user and password to log in with")
    if not server.smb_share:
        raise PermanentConnectorError(f"server {server.host}: set the SMB share (C$ or a named share)")
    return SmbSettings(
        host=server.host,
        username=server.username,
        password=server.password,
        port=server.smb_port or 445,
        share=server.smb_share,
        share_folder=server.smb_share_folder,
        encrypt=bool(server.smb_encrypt),
        connect_timeout=float(server.smb_connect_timeout or 15),
        io_timeout=float(server.smb_io_timeout or 60),
        rpc_timeout=float(server.smb_rpc_timeout or 60),
    )


def smb_transport(server: Server | ServerAccess, *, cached: bool = True) -> SmbTransport:
    """One SMB session per server per process (a flow run); `cached=False`: a transport of its own."""
    from certfleet.connectors.servers.smb import SmbTransport, cached_transport

    server_id = server.server_id if isinstance(server, ServerAccess) else server.id
    settings = smb_settings(server)
    return cached_transport(server_id, settings) if cached else SmbTransport(settings)


def server_spec(server: Server | ServerAccess) -> ServerSpec:
    return ServerSpec(
        server_type=server.server_type,
        app_path=server.app_path or "",
        keystore_folder=server.keystore_folder,
        service_name=server.service_name,
        version=server.version,
        config_test_command=server.config_test_command,
        reload_command=server.reload_command,
    )


def target_spec(job: TargetJob) -> TargetSpec:
    return TargetSpec(
        port=job.port,
        server_name=job.server_name,
        cert_path=job.cert_path,
        key_path=job.key_path,
        chain_path=job.chain_path,
    )


def kind_handler(job: TargetJob, transport: Transport) -> ServerHandler | None:
    """The handler of the server's type, or None for types without one (plain PEM files)."""
    if job.server.connection == ServerConnection.SMB.value:  # Apache / Tomcat on Windows, restarted over SCMR
        from certfleet.connectors.servers.smb import SmbTransport
        from certfleet.connectors.servers.windows import windows_handler

        if not isinstance(transport, SmbTransport):
            raise PermanentConnectorError(f"server {job.server.host}: a Windows server is reached over SMB")
        return windows_handler(transport, server_spec(job.server), target_spec(job))
    cls = HANDLERS.get(job.server.server_type)
    if cls is None:
        return None
    return cls(transport, server_spec(job.server), target_spec(job))


def release_connections() -> int:
    """Close this process's cached SSH and SMB connections (a flow run is over); returns how many were open."""
    opened = 0
    for name in (SSH_MODULE, SMB_MODULE):
        module = sys.modules.get(name)  # never imported here: no connection of that kind was opened
        opened += int(module.close_cached_transports()) if module is not None else 0
    return opened


atexit.register(release_connections)
