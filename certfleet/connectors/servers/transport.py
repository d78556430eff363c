"""How a bot reaches a server's files and commands. Local today; SSH and SMB implement the same protocol."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

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


@runtime_checkable
class Snapshots(Protocol):
    """A transport that keeps a file aside its own way (the local one: a hard link); True when the file existed."""

    def snapshot(self, path: str, backup_path: str) -> bool: ...


def snapshot_file(transport: Transport, path: str, backup_path: str) -> Backup:
    """Keep a file aside before it is replaced (a copy, unless the transport has a cheaper way); the same for every
    server kind."""
    if isinstance(transport, Snapshots):
        return Backup(path, backup_path, existed=transport.snapshot(path, backup_path))
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


class _Closable(Protocol):
    @property
    def is_open(self) -> bool: ...

    def close(self) -> None: ...


S = TypeVar("S")
T = TypeVar("T", bound=_Closable)


class ConnectionCache(Generic[S, T]):
    """One open connection per server in this process, reused by every certificate of a flow run; a changed
    setting (a new password, key or pin) closes the old connection and opens a new one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[S, T]] = {}

    def get(self, server_id: int, settings: S, connect: Callable[[], T], same: Callable[[S, T], bool]) -> T:
        with self._lock:
            entry = self._entries.get(server_id)
            if entry is not None and same(entry[0], entry[1]):
                return entry[1]
            if entry is not None:
                entry[1].close()
            transport = connect()
            self._entries[server_id] = (settings, transport)
            return transport

    def close_all(self) -> int:
        """Close every cached connection (at the end of a flow run); returns how many were open."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        opened = 0
        for _, transport in entries:
            opened += transport.is_open
            transport.close()
        return opened
