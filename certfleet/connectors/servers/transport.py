"""How a bot reaches a server's files and commands. Local today; SSH and SMB implement the same protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from certfleet.connectors.base import Backup


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    output: str  # stdout and stderr, interleaved

    def tail(self, lines: int = 5) -> str:
        return " | ".join(self.output.strip().splitlines()[-lines:])


class Transport(Protocol):
    label: str  # how errors name the server, e.g. "local" or "web1.example.com"

    def read(self, path: str) -> bytes | None: ...

    def write_atomic(self, path: str, data: bytes, mode: int) -> None: ...

    def copy(self, src: str, dst: str) -> None: ...

    def remove(self, path: str) -> None: ...

    def run(self, command: str, timeout: float) -> CommandResult: ...


def snapshot_file(transport: Transport, path: str, backup_path: str) -> Backup:
    """Copy a file aside before it is replaced; the same for every server kind and transport."""
    if transport.read(path) is None:
        return Backup(path, backup_path, existed=False)
    transport.copy(path, backup_path)
    return Backup(path, backup_path, existed=True)


def restore_file(transport: Transport, backup: Backup) -> None:
    """Put the backed-up file back, or remove the file when there was none before."""
    if backup.existed:
        transport.copy(backup.backup_path, backup.path)
    else:
        transport.remove(backup.path)
