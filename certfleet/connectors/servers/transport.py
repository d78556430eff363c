"""How a bot reaches a server's files and commands. Local today; SSH and SMB implement the same protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
