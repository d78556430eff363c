"""A server that reads PEM files (certificate or full chain, key, chain) and is reloaded by a command.

This is what nginx, Apache httpd, HAProxy and most daemons look like from the outside; the server-type
handlers of issue 4 find the paths in the configuration, this one is told them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from certfleet.connectors.base import Backup, CertificateBundle, FileWrite, UndoableChange
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers.transport import Transport, restore_file, snapshot_file
from certfleet.servers import paths

KEY_MODE = 0o600
CERT_MODE = 0o644


@dataclass
class PemFilesTarget:
    kind: ClassVar[str] = "pem-files"

    transport: Transport
    cert_path: str
    key_path: str
    chain_path: str | None = None
    config_test_command: str | None = None
    reload_command: str | None = None
    command_timeout: float = 60.0

    def plan(self, bundle: CertificateBundle) -> list[FileWrite]:
        # Without a separate chain file the certificate file carries the full chain, as nginx expects.
        writes = [
            FileWrite(self.cert_path, bundle.leaf_pem if self.chain_path else bundle.fullchain_pem, CERT_MODE),
            FileWrite(self.key_path, bundle.key_pem, KEY_MODE),
        ]
        if self.chain_path:
            writes.append(FileWrite(self.chain_path, bundle.chain_pem, CERT_MODE))
        return writes

    def snapshot(self, path: str, backup_path: str) -> Backup:
        self._refuse_system_path(path)
        return snapshot_file(self.transport, path, backup_path)

    def install(self, write: FileWrite) -> None:
        self._refuse_system_path(write.path)
        self.transport.write_atomic(write.path, write.data, write.mode)

    def _refuse_system_path(self, path: str) -> None:
        """Targets stored before paths were validated may still name /etc/shadow or /dev/...: never touch them."""
        try:
            paths.refuse_denied(path, f"pem-files on {self.transport.label}")
        except paths.PathRefused as exc:
            raise PermanentConnectorError(str(exc)) from None

    def verify(self) -> None:
        if self.config_test_command:
            self._run("config test", self.config_test_command)

    def activate(self) -> None:
        if self.reload_command:
            self._run("reload", self.reload_command)

    def restore(self, backup: Backup) -> None:
        restore_file(self.transport, backup)

    def changes(self, bundle: CertificateBundle) -> list[UndoableChange]:
        return []  # every change of this kind is a file replacement

    def undo(self, action: str, data: dict[str, Any]) -> None:
        raise PermanentConnectorError(f"a {self.kind} server journals no {action!r} step: nothing to undo with it")

    def _run(self, what: str, command: str) -> None:
        result = self.transport.run(command, self.command_timeout)
        if result.exit_code != 0:
            raise PermanentConnectorError(
                f"{what} `{command}` on {self.transport.label} failed with exit code {result.exit_code}: "
                f"{result.tail() or 'no output'}"
            )
