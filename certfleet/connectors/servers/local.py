"""The local agent: the bot's own file system and process table."""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import subprocess
import tempfile
from pathlib import Path

from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers.transport import CommandResult


class LocalTransport:
    label = "local"

    def read(self, path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PermanentConnectorError(f"cannot read {path}: {exc.strerror}") from exc

    def write_atomic(self, path: str, data: bytes, mode: int) -> None:
        """Temp file in the same directory, mode set before any byte is written, fsync, rename."""
        target = Path(path)
        if not target.parent.is_dir():
            raise PermanentConnectorError(f"directory {target.parent} does not exist")
        owner = _owner_of(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".certfleet-tmp", dir=target.parent)
        try:
            os.fchmod(fd, mode)
            if owner is not None and os.geteuid() == 0:
                os.fchown(fd, *owner)  # the service user must still be able to read what it read before
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise PermanentConnectorError(f"cannot write {path}: {exc.strerror}") from exc
        _fsync_dir(target.parent)

    def copy(self, src: str, dst: str) -> None:
        data = self.read(src)
        if data is None:
            raise PermanentConnectorError(f"cannot copy {src}: it does not exist")
        self.write_atomic(dst, data, Path(src).stat().st_mode & 0o7777)

    def snapshot(self, path: str, backup_path: str) -> bool:
        """The file at `path` kept aside as `backup_path` before it is replaced; False when there is none.

        The backup is a second name of the same file, not a copy: certfleet replaces a server's files by rename and
        never writes into them, so once the new file is installed the backup is the old file's only name and holds
        exactly what was there (a copy cost a read, a write and an fsync per file). A file something else could
        write into (it has other names), a symbolic link, or a file system without hard links is copied."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise PermanentConnectorError(f"cannot read {path}: {exc.strerror}") from exc
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(backup_path)  # this deployment's own backup name, from an earlier try of this step
                os.link(path, backup_path)
            except FileNotFoundError:
                return False  # the file went away meanwhile
            except OSError:
                pass  # no hard links here (or not allowed): copied below, which says what is wrong if it fails
            else:
                _fsync_dir(Path(backup_path).parent)  # the backup's name is durable before the file is replaced
                return True
        if self.read(path) is None:
            return False
        self.copy(path, backup_path)
        return True

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def run(self, command: str, timeout: float) -> CommandResult:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise PermanentConnectorError(f"cannot parse command {command!r}: {exc}") from exc
        try:
            proc = subprocess.run(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise PermanentConnectorError(f"command not found: {argv[0]}") from exc
        except subprocess.TimeoutExpired as exc:
            raise PermanentConnectorError(f"`{command}` did not finish within {timeout:g} s") from exc
        return CommandResult(command, proc.returncode, proc.stdout.decode("utf-8", "replace"))


def _owner_of(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_uid, st.st_gid


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
