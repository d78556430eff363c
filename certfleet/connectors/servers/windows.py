"""Apache and Tomcat on Windows: the Linux handlers' configuration logic over SMB, restarted through SCMR.

The handlers (`ApacheHandler`, `TomcatHandler`) find and rewrite configuration with POSIX path functions.
A Windows server is shown to them through `WindowsView`: the Windows path `C:\\Apache24\\conf\\httpd.conf`
is the view path `/C:/Apache24/conf/httpd.conf`, and a drive path inside the configuration
(`SSLCertificateFile "C:/Apache24/conf/ssl/site.crt"`, how Apache and Tomcat on Windows write them) is
absolute there too (`server_kinds.resolve`, `keystores.relative_to` and Apache's Include follow it). A path
written back into a configuration file goes in Windows form (`C:/...`), and configuration files are edited
in place by offsets, so their `\\r\\n` line endings stay as they were.

There is no command channel on Windows over SMB: the configuration test is the handler's own check that the
installed certificate and key load and pair up (Windows has no `apachectl -t` reachable here), and the
reload is a restart of the Service Name through the Service Control Manager (`scmr.ServiceControl`).
"""

from __future__ import annotations

import re
from typing import ClassVar

from certfleet.connectors.base import CertificateBundle, FileWrite
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers.apache import ApacheHandler
from certfleet.connectors.servers.commands import Verb
from certfleet.connectors.servers.iis import IisHandler
from certfleet.connectors.servers.scmr import ServiceControl
from certfleet.connectors.servers.server_kinds import ServerKindHandler, ServerSpec, TargetSpec
from certfleet.connectors.servers.smb import SmbStat, SmbTransport
from certfleet.connectors.servers.tomcat import TomcatHandler
from certfleet.connectors.servers.transport import CommandResult
from certfleet.servers import paths

_VIEW_DRIVE = re.compile(r"^/([A-Za-z]):(/|$)")
_DRIVE = re.compile(r"^([A-Za-z]):[\\/]")


def to_view(path: str) -> str:
    """`C:\\Apache24` or `C:/Apache24` -> `/C:/Apache24` (a POSIX-absolute path the handlers can join)."""
    return paths.posix_view(path)


def to_windows(path: str) -> str:
    """`/C:/Apache24/conf` -> `C:\\Apache24\\conf`; other paths are not on a drive and are refused."""
    if not _VIEW_DRIVE.match(path):
        raise PermanentConnectorError(f"{path} is not a path on a Windows drive (such as C:/Apache24)")
    windows = path[1:].replace("/", "\\")
    return windows if len(windows) > 2 else windows[:2] + "\\"


def config_value(path: str) -> str:
    """A view path as Windows configuration files write it: `C:/Apache24/conf/ssl/site.crt`."""
    return path[1:] if _VIEW_DRIVE.match(path) else path


class WindowsView:
    """A `Transport` over `SmbTransport` that takes view paths (`/C:/...`)."""

    def __init__(self, smb: SmbTransport) -> None:
        self.smb = smb
        self.label = smb.label

    def read(self, path: str) -> bytes | None:
        return self.smb.read(to_windows(path))

    def write_atomic(self, path: str, data: bytes, mode: int) -> None:
        self.smb.write_atomic(to_windows(path), data, mode)

    def copy(self, src: str, dst: str) -> None:
        self.smb.copy(to_windows(src), to_windows(dst))

    def remove(self, path: str) -> None:
        self.smb.remove(to_windows(path))

    def stat(self, path: str) -> SmbStat | None:
        return self.smb.stat(to_windows(path))

    def list_dir(self, path: str) -> list[str]:
        return self.smb.list_dir(to_windows(path))

    def run(self, command: str, timeout: float) -> CommandResult:
        return self.smb.run(command, timeout)


class _WindowsService(ServerKindHandler):
    """No commands: the check is the installed files' own; the reload is a service restart over SCMR."""

    transport: WindowsView
    start_timeout: ClassVar[float] = 120.0

    def where(self) -> str:
        return f"{self.kind} on Windows {self.transport.label}, port {self.target.port}"

    def refuse_system_path(self, path: str) -> None:
        if not _VIEW_DRIVE.match(path):
            raise self.fail(f"{path} is not a path on a Windows drive; the configuration must name C:/... paths")
        found = paths.windows_path_problem(to_windows(path))
        if found is not None and found[1] in ("system-location", "dot-segment", "windows-reserved"):
            raise self.fail(f"{to_windows(path)} {found[0]}")

    def config_test_command(self) -> str | None:
        return None

    def chosen_verbs(self) -> tuple[Verb | None, Verb | None]:
        return None, None

    def activate(self) -> None:
        service = self.server.service_name
        if not service:
            raise self.fail("set the Service Name: a Windows server is restarted by its service after a deployment")
        ServiceControl(self.transport.smb).restart(service, start_timeout=self.start_timeout)


class WindowsApacheHandler(_WindowsService, ApacheHandler):
    kind: ClassVar[str] = "apache"

    def plan(self, bundle: CertificateBundle) -> list[FileWrite]:
        return [_windows_config(w) for w in ApacheHandler.plan(self, bundle)]


class WindowsTomcatHandler(_WindowsService, TomcatHandler):
    kind: ClassVar[str] = "tomcat"

    def plan(self, bundle: CertificateBundle) -> list[FileWrite]:
        return [_windows_config(w) for w in TomcatHandler.plan(self, bundle)]


def _windows_config(write: FileWrite) -> FileWrite:
    """A rewritten configuration names view paths (`/C:/...`): Windows reads them as `C:/...`."""
    if write.path.endswith((".conf", ".xml")) and b"/C:/" in write.data.upper():
        text = write.data.decode("utf-8", "surrogateescape")
        text = re.sub(r'(?<=["\s=])/([A-Za-z]:/)', r"\1", text)
        return FileWrite(write.path, text.encode("utf-8", "surrogateescape"), write.mode)
    return write


WINDOWS_HANDLERS: dict[str, type[ServerKindHandler]] = {
    WindowsApacheHandler.kind: WindowsApacheHandler,
    WindowsTomcatHandler.kind: WindowsTomcatHandler,
}


def windows_handler(smb: SmbTransport, server: ServerSpec, target: TargetSpec) -> ServerKindHandler:
    if server.server_type == IisHandler.kind:  # a site name and Windows paths: no view, no configuration files
        return IisHandler(smb, server, target)
    cls = WINDOWS_HANDLERS.get(server.server_type)
    if cls is None:
        raise PermanentConnectorError(f"{smb.label}: certfleet does not deploy to {server.server_type} on Windows")
    view = ServerSpec(
        server_type=server.server_type,
        app_path=to_view(server.app_path),
        keystore_folder=to_view(server.keystore_folder) if server.keystore_folder else None,
        service_name=server.service_name,
        version=server.version,
        command_timeout=server.command_timeout,
    )
    target_view = TargetSpec(
        port=target.port,
        server_name=target.server_name,
        cert_path=to_view(target.cert_path) if target.cert_path else None,
        key_path=to_view(target.key_path) if target.key_path else None,
        chain_path=to_view(target.chain_path) if target.chain_path else None,
    )
    return cls(WindowsView(smb), view, target_view)
