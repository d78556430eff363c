"""A Windows server's files over SMB (smbprotocol): the same `Transport` as SSH and the local agent.

Paths are the server's own Windows paths (`C:\\Apache24\\conf\\ssl\\site.pem`); they are mapped into the
configured share: the administrative share `C$` is the drive `C:\\`, a named share exposes the folder set
as its share folder (`D:\\web`), and a UNC path `\\\\host\\share\\...` names its share itself (same host only).

- NTLM login (`DOMAIN\\user` or `user@domain`), SMB 3 encryption when the server requires it (smbprotocol
  does that by itself) or when the server's setting asks for it (then an unencrypted session is refused).
- One session per server per process (`cached_transport`), closed at the end of a flow run.
- `write_atomic`: write a temporary name beside the file, replace the old file with it in one SMB rename
  (replace-if-exists), read it back and compare the bytes. A dropped connection leaves at most the temporary
  file, never a partial file at the real path.
- Timeouts: smbprotocol waits for each answer without limit once logged in, so every file operation and
  service-manager call runs under a watchdog (`deadline`) that closes the TCP connection when its time is up;
  the wait ends with an error reported as "no answer within N s", and the next step logs in again.
- Commands do not run here: a Windows service is restarted through the Service Control Manager
  (`certfleet.connectors.servers.scmr`) on the same session.
"""

from __future__ import annotations

import contextlib
import fnmatch
import ntpath
import re
import secrets
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import smbclient
from smbprotocol.exceptions import LogonFailure, SMBAuthenticationError, SMBException, SMBOSError
from smbprotocol.session import Session

from certfleet.connectors.errors import ConnectorError, PermanentConnectorError, TransientConnectorError
from certfleet.connectors.servers.transport import CommandResult, ConnectionCache

_TMP_SUFFIX = ".certfleet-tmp"
_ADMIN_SHARE = re.compile(r"^([A-Za-z])\$$")
# NTSTATUS codes worth their own words
_STATUS_WORDS = {
    0xC0000022: "access denied",
    0xC00000CC: "no such share",
    0xC0000225: "no such share (or DFS path)",
    0xC000006D: "wrong user name or password",
    0xC0000034: "no such file",
    0xC000003A: "no such folder",
    0xC0000043: "the file is in use by another program",
    0xC000007F: "the disk is full",
}


@dataclass(frozen=True)
class SmbSettings:
    host: str
    username: str
    password: str = field(repr=False)
    port: int = 445
    share: str = "C$"
    share_folder: str | None = None  # the Windows folder a named share exposes; None for `X$`
    encrypt: bool = False
    connect_timeout: float = 15.0  # TCP connect, negotiate and login
    io_timeout: float = 60.0  # each file operation (open, read, write, rename, list)
    rpc_timeout: float = 60.0  # each service-manager (MS-SCMR) call

    @property
    def label(self) -> str:
        return self.host if self.port == 445 else f"{self.host}:{self.port}"

    def root(self) -> str:
        """The Windows folder the share exposes, `C:\\` for `C$`."""
        admin = _ADMIN_SHARE.fullmatch(self.share)
        if admin is not None:
            return f"{admin.group(1).upper()}:\\"
        if not self.share_folder:
            raise PermanentConnectorError(
                f"{self.label}: the share {self.share} is a named share: set the folder it exposes (Share folder)"
            )
        return self.share_folder if self.share_folder.endswith("\\") else self.share_folder + "\\"


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "ntstatus", None)
    if status is None:
        status = getattr(exc, "status", None)
    return int(status) if isinstance(status, int) else None


class SmbTransport:
    """Files of one Windows server through one SMB session (opened on first use)."""

    def __init__(self, settings: SmbSettings) -> None:
        self.settings = settings
        self.label = settings.label
        self._cache: dict[str, Any] = {}
        self._session: Session | None = None
        self._lock = threading.RLock()

    # -- the session ------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._session is not None

    def _kwargs(self) -> dict[str, Any]:
        s = self.settings
        return {
            "username": s.username,
            "password": s.password,
            "port": s.port,
            "encrypt": True if s.encrypt else None,
            "connection_timeout": s.connect_timeout,
            "auth_protocol": "ntlm",
            "connection_cache": self._cache,
        }

    def connect(self) -> Session:
        """Log in (NTLM) once; later calls reuse the session. Says which step failed."""
        with self._lock:
            if self._session is not None:
                return self._session
            try:
                session = smbclient.register_session(self.settings.host, **self._kwargs())
            except (LogonFailure, SMBAuthenticationError) as exc:
                self._reset()
                raise PermanentConnectorError(
                    f"{self.label}: login as {self.settings.username} refused: wrong user name or password ({exc})"
                ) from None
            except SMBException as exc:
                self._reset()
                raise PermanentConnectorError(f"{self.label}: SMB login failed: {_words(exc)}") from None
            except (OSError, ValueError) as exc:
                self._reset()
                raise TransientConnectorError(
                    f"{self.label}: cannot reach the SMB port {self.settings.port}: {exc}"
                ) from None
            if self.settings.encrypt and not session.encrypt_data:
                self._reset()
                raise PermanentConnectorError(
                    f"{self.label}: SMB 3 encryption was asked for, but the session is not encrypted "
                    f"(dialect {session.connection.dialect:#x}); the server must speak SMB 3"
                )
            self._session = session
            return session

    def session(self) -> Session:
        return self.connect()

    def close(self) -> None:
        with self._lock:
            self._session = None
            self._reset()

    def _reset(self) -> None:
        with contextlib.suppress(Exception):
            smbclient.reset_connection_cache(connection_cache=self._cache)
        self._cache = {}

    def __enter__(self) -> SmbTransport:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paths ------------------------------------------------------------------------------------

    def unc(self, path: str) -> str:
        """The UNC path of a Windows path on this server, inside the configured share."""
        if path.startswith("\\\\"):
            host, _, rest = path[2:].partition("\\")
            if host.lower() != self.settings.host.lower():
                raise PermanentConnectorError(
                    f"{self.label}: {path} is on another host ({host}); certfleet writes to this server only"
                )
            return f"\\\\{self.settings.host}\\{rest}"
        root = self.settings.root()
        if not path.lower().startswith(root.lower()) and path.lower() != root.lower().rstrip("\\"):
            raise PermanentConnectorError(
                f"{self.label}: {path} is outside the share {self.settings.share} ({root}); "
                "choose a path under it or another share"
            )
        rest = path[len(root) :].strip("\\")
        base = f"\\\\{self.settings.host}\\{self.settings.share}"
        return f"{base}\\{rest}" if rest else base

    def share_unc(self) -> str:
        return f"\\\\{self.settings.host}\\{self.settings.share}"

    def open_share(self, share: str) -> None:
        """Open another share of this server (ADMIN$, which a PsExec-style run writes to): raises if refused."""
        unc = f"\\\\{self.settings.host}\\{share}"
        with self._op("open the share", unc):
            smbclient.stat(unc, **self._kwargs())

    @contextlib.contextmanager
    def deadline(self, seconds: float, what: str) -> Iterator[None]:
        """At most `seconds` for what runs inside: then the connection is closed under it (which ends any wait
        for an answer) and the failure is reported as a timeout naming `what`."""
        expired = threading.Event()
        session = self._session

        def expire() -> None:
            expired.set()
            if session is not None:
                with contextlib.suppress(Exception):
                    session.connection.transport.close()

        timer = threading.Timer(seconds, expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        except Exception:
            if not expired.is_set():
                raise
            self.close()
            raise TransientConnectorError(
                f"{self.label}: {what}: no answer within {seconds:g} s; the connection was closed"
            ) from None
        finally:
            timer.cancel()
        if expired.is_set():  # finished just as the time ran out: the connection is gone, log in again next time
            self.close()

    @contextlib.contextmanager
    def _op(self, what: str, path: str) -> Iterator[None]:
        """Turn SMB errors into one-line messages naming the server, the step and the path; each operation
        waits at most the I/O timeout."""
        self.connect()
        with self.deadline(self.settings.io_timeout, f"{what} {path}"), self._converted(what, path):
            yield

    @contextlib.contextmanager
    def _converted(self, what: str, path: str) -> Iterator[None]:
        try:
            yield
        except ConnectorError:
            raise
        except SMBOSError as exc:
            raise PermanentConnectorError(f"{self.label}: cannot {what} {path}: {_words(exc)}") from None
        except SMBException as exc:
            self.close()  # the session may be gone: the next step logs in again
            raise TransientConnectorError(f"{self.label}: SMB failed while {what} {path}: {_words(exc)}") from None
        except OSError as exc:
            self.close()
            raise TransientConnectorError(f"{self.label}: connection lost while {what} {path}: {exc}") from None

    # -- Transport ----------------------------------------------------------------------------------

    def read(self, path: str) -> bytes | None:
        unc = self.unc(path)
        with self._op("read", path):
            try:
                with smbclient.open_file(unc, mode="rb", **self._kwargs()) as fh:
                    return bytes(fh.read())
            except SMBOSError as exc:
                if _missing(exc):
                    return None
                raise
        raise AssertionError("unreachable")  # pragma: no cover - mypy: the context manager may swallow

    def stat(self, path: str) -> SmbStat | None:
        unc = self.unc(path)
        with self._op("look at", path):
            try:
                st = smbclient.stat(unc, **self._kwargs())
            except SMBOSError as exc:
                if _missing(exc):
                    return None
                raise
            return SmbStat(is_dir=bool(st.st_file_attributes & 0x10))
        raise AssertionError("unreachable")  # pragma: no cover

    def list_dir(self, path: str) -> list[str]:
        unc = self.unc(path)
        with self._op("list", path):
            try:
                return sorted(smbclient.listdir(unc, **self._kwargs()))
            except SMBOSError as exc:
                if _missing(exc):
                    return []
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def list_files(self, root: str, patterns: Sequence[str], max_depth: int, max_bytes: int) -> list[str]:
        """Files under `root` whose name matches a pattern (case-blind, as Windows names are), at most
        `max_depth` folders down and `max_bytes` long: file discovery's listing (Windows has no `find`).
        Raises a ConnectorError when `root` itself cannot be listed; unreadable subfolders are skipped."""
        found: list[str] = []
        lowered = [p.lower() for p in patterns]

        def walk(folder: str, depth: int) -> None:
            for entry in smbclient.scandir(self.unc(folder), **self._kwargs()):
                path = ntpath.join(folder, entry.name)
                if entry.is_dir():
                    if depth < max_depth:
                        try:
                            walk(path, depth + 1)
                        except SMBOSError:
                            continue
                elif (
                    any(fnmatch.fnmatchcase(entry.name.lower(), p) for p in lowered)
                    and entry.smb_info.end_of_file <= max_bytes
                ):
                    found.append(path)

        with self._op("list", root):
            walk(root, 1)
        return sorted(found)

    def make_dirs(self, path: str) -> None:
        """The folder and any missing folder above it inside the share (an existing one is fine)."""
        unc = self.unc(path)
        with self._op("create the folder", path):
            smbclient.makedirs(unc, exist_ok=True, **self._kwargs())

    def write_atomic(self, path: str, data: bytes, mode: int) -> None:
        """Temp name beside the file, replace over the old file, read back and compare (`mode`: Windows
        files take their folder's permissions)."""
        directory, name = ntpath.split(path)
        tmp = ntpath.join(directory, f".{name}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
        unc, unc_tmp = self.unc(path), self.unc(tmp)
        with self._op("write", path):
            folder = self.stat(directory)
            if folder is None or not folder.is_dir:
                raise PermanentConnectorError(f"{self.label}: folder {directory} does not exist")
            try:
                with smbclient.open_file(unc_tmp, mode="wb", **self._kwargs()) as fh:
                    fh.write(data)
                smbclient.replace(unc_tmp, unc, **self._kwargs())
            except BaseException:
                with contextlib.suppress(Exception):
                    smbclient.remove(unc_tmp, **self._kwargs())
                raise
        written = self.read(path)
        if written != data:
            raise PermanentConnectorError(
                f"{self.label}: {path} reads back {len(written or b'')} bytes that differ from the {len(data)} written"
            )

    def copy(self, src: str, dst: str) -> None:
        data = self.read(src)
        if data is None:
            raise PermanentConnectorError(f"{self.label}: cannot copy {src}: it does not exist")
        self.write_atomic(dst, data, 0o600)

    def remove(self, path: str) -> None:
        unc = self.unc(path)
        with self._op("remove", path):
            try:
                smbclient.remove(unc, **self._kwargs())
            except SMBOSError as exc:
                if _missing(exc):
                    return
                raise

    def run(self, command: str, timeout: float) -> CommandResult:
        raise PermanentConnectorError(
            f"{self.label}: a Windows server reached over SMB runs no commands (`{command}`); its service is "
            "restarted by its Service Name through the Service Control Manager"
        )


@dataclass(frozen=True)
class SmbStat:
    is_dir: bool


def _missing(exc: BaseException) -> bool:
    """The file or its folder does not exist (not: the share does not, which smbclient reports as
    STATUS_NOT_FOUND after its DFS lookup, nor access denied)."""
    return _status(exc) in (0xC0000034, 0xC000003A)


def _words(exc: BaseException) -> str:
    status = _status(exc)
    if status in _STATUS_WORDS:
        return f"{_STATUS_WORDS[status]} (NTSTATUS {status:#010x})"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- one session per server per process (a flow run), like the SSH transports -----------------------

_cache: ConnectionCache[SmbSettings, SmbTransport] = ConnectionCache()


def cached_transport(server_id: int, settings: SmbSettings) -> SmbTransport:
    return _cache.get(server_id, settings, lambda: SmbTransport(settings), lambda cached, _: cached == settings)


def close_cached_transports() -> int:
    return _cache.close_all()
