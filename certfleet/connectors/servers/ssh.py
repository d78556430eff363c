"""Agentless access to a Linux server over SSH (fabric + paramiko), as a `Transport`.

Every operation has a timeout (TCP connect, banner, authentication, channel open, SFTP reads and writes,
commands), so a stalled server never hangs a worker. The server's host key is pinned: on first contact
the key is recorded through `on_new_host_key` (trust on first use) unless one was supplied, and on every
later contact a different key is refused with both fingerprints in the message.

The connection is a fabric `Connection` (opened with certfleet's own pinned paramiko client); files go
over its SFTP channel and commands over plain exec channels, so a sudo password is written to stdin at
once (fabric's runner feeds stdin a character per 10 ms).

Files are written to a temporary file in the target's directory and renamed over the target (POSIX
rename is atomic), with the mode set before any byte is written. With `use_sudo` the bytes are first
uploaded to a private temp file in the user's home, then `install -m MODE` + `mv -f` run under sudo.

Failures are `PermanentConnectorError` when retrying cannot help (wrong password or key, changed host
key, unknown host, refused or unreachable port, missing path, sudo refused) and
`TransientConnectorError` when an established session broke (reset, timeout): only those are retried.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import io
import posixpath
import secrets
import select
import shlex
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import paramiko
from fabric import Config, Connection

from certfleet.connectors.errors import ConnectorError, PermanentConnectorError, TransientConnectorError
from certfleet.connectors.servers.transport import CommandResult, ConnectionCache

# Admin binaries (nginx, apache2, sshd, ...) live in sbin, which a non-login SSH session lacks on Debian.
_PATH_PREFIX = 'PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; export PATH; '
_TMP_SUFFIX = ".certfleet-tmp"


class HostKeyMismatch(PermanentConnectorError):
    """The server presented a host key other than the pinned one: maybe a reinstall, maybe an attack."""


@dataclass(frozen=True)
class SshSettings:
    """How to reach and log in to one server. Secrets stay out of the repr."""

    host: str
    username: str
    port: int = 22
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)  # OpenSSH or PEM private key text
    key_passphrase: str | None = field(default=None, repr=False)
    host_key: str | None = None  # pinned "ssh-ed25519 AAAA..." (OpenSSH public key line)
    use_sudo: bool = False
    connect_timeout: float = 10.0
    io_timeout: float = 30.0  # SFTP operations and channel opens
    command_timeout: float = 120.0

    def __post_init__(self) -> None:
        if not (self.password or self.private_key):
            raise PermanentConnectorError(f"{self.label}: give a password or a private key to log in with")

    @property
    def label(self) -> str:
        where = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.username}@{where}" + ("" if self.port == 22 else f":{self.port}")


def fingerprint(host_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of an "algorithm base64" public key line."""
    try:
        blob = base64.b64decode(host_key.split()[1], validate=True)
    except (IndexError, ValueError):
        return "(unparseable key)"
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def key_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def load_private_key(text: str, passphrase: str | None = None) -> paramiko.PKey:
    """Parse an OpenSSH/PEM private key of any type paramiko supports; the error names what to fix."""
    errors: list[str] = []
    key_classes: list[type[paramiko.PKey]] = [paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey]
    for cls in key_classes:
        try:
            return cls.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise PermanentConnectorError("the SSH private key is encrypted: give its passphrase") from None
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(str(exc))
    if any("passphrase" in e.lower() or "decrypt" in e.lower() for e in errors):
        raise PermanentConnectorError("the SSH private key could not be decrypted: check its passphrase")
    raise PermanentConnectorError(
        "the SSH private key is not a valid OpenSSH or PEM private key (Ed25519, ECDSA or RSA)"
    )


class _PinningPolicy(paramiko.MissingHostKeyPolicy):
    """Called only when no key is pinned: remember the key the server presented (trust on first use)."""

    def __init__(self) -> None:
        self.seen: paramiko.PKey | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.seen = key


class SshTransport:
    """One SSH connection to one server, opened on first use and reused until `close()`."""

    def __init__(
        self,
        settings: SshSettings,
        *,
        on_new_host_key: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.label = settings.label
        self._on_new_host_key = on_new_host_key
        self._pinned = settings.host_key
        self._conn: Connection | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()
        self._owner_cache: dict[str, str] = {}

    # -- connection ----------------------------------------------------------------------------------

    @property
    def host_key(self) -> str | None:
        """The pinned key: the one supplied, or the one seen on first contact."""
        return self._pinned

    @property
    def is_open(self) -> bool:
        transport = self._conn.client.get_transport() if self._conn is not None else None
        return bool(transport is not None and transport.is_active())

    def connect(self) -> None:
        with self._lock:
            if self.is_open:
                return
            self.close()
            self._conn = self._open()

    def close(self) -> None:
        with self._lock:
            if self._sftp is not None:
                with contextlib.suppress(Exception):
                    self._sftp.close()
                self._sftp = None
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None

    def __enter__(self) -> SshTransport:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> Connection:
        s = self.settings
        connect_kwargs: dict[str, Any] = {
            "look_for_keys": False,  # only the credentials configured for this server
            "allow_agent": False,
            "banner_timeout": s.connect_timeout,
            "auth_timeout": s.connect_timeout,
            "channel_timeout": s.io_timeout,
        }
        if s.private_key:
            connect_kwargs["pkey"] = load_private_key(s.private_key, s.key_passphrase)
        if s.password:
            connect_kwargs["password"] = s.password
        config = Config(overrides={"load_ssh_configs": False}, lazy=True)
        conn = Connection(
            s.host,
            user=s.username,
            port=s.port,
            config=config,
            connect_timeout=max(1, round(s.connect_timeout)),
            connect_kwargs=connect_kwargs,
        )
        # Fabric's own client trusts any key (AutoAddPolicy) and reads ~/.ssh; ours trusts only the pin.
        client = paramiko.SSHClient()
        policy = _PinningPolicy()
        client.set_missing_host_key_policy(policy)
        if self._pinned:
            self._pin_into(client, self._pinned)
        conn.client = client
        try:
            conn.open()
        except paramiko.BadHostKeyException as exc:
            conn.close()
            raise HostKeyMismatch(
                f"{self.label}: the server's host key changed: it presented {exc.key.get_name()} "
                f"{fingerprint(key_line(exc.key))} but {fingerprint(key_line(exc.expected_key))} is pinned. "
                "If the server was reinstalled, update its host key in certfleet; otherwise do not connect"
            ) from None
        except Exception as exc:
            conn.close()
            raise self._connect_error(exc) from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        if policy.seen is not None and self._pinned is None:
            self._pinned = key_line(policy.seen)
            if self._on_new_host_key is not None:
                self._on_new_host_key(self._pinned)
        return conn

    def _pin_into(self, client: paramiko.SSHClient, line: str) -> None:
        parts = line.split()
        try:
            key = paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1], validate=True))
        except (IndexError, ValueError, paramiko.SSHException) as exc:
            raise PermanentConnectorError(
                f"{self.label}: the pinned host key is not an OpenSSH public key line ('ssh-ed25519 AAAA...'): {exc}"
            ) from None
        s = self.settings
        name = s.host if s.port == 22 else f"[{s.host}]:{s.port}"
        client.get_host_keys().add(name, key.get_name(), key)

    def _connect_error(self, exc: BaseException) -> ConnectorError:
        where = f"{self.settings.host}:{self.settings.port}"
        if isinstance(exc, paramiko.AuthenticationException):
            how = "private key" if self.settings.private_key else "password"
            return PermanentConnectorError(
                f"{self.label}: authentication failed: the server refused the {how} for user "
                f"{self.settings.username!r}; check the credentials"
            )
        if isinstance(exc, ConnectorError):
            return exc
        if isinstance(exc, socket.gaierror):
            return PermanentConnectorError(f"{where}: unknown host: {exc.strerror or exc}")
        if isinstance(exc, ConnectionRefusedError | paramiko.ssh_exception.NoValidConnectionsError):
            return PermanentConnectorError(f"{where}: connection refused: no SSH server listens there")
        if isinstance(exc, TimeoutError | socket.timeout):
            return PermanentConnectorError(
                f"{where}: unreachable: no answer within {self.settings.connect_timeout:g} s"
            )
        if isinstance(exc, OSError):
            return PermanentConnectorError(f"{where}: unreachable: {exc.strerror or exc}")
        if isinstance(exc, paramiko.SSHException):
            return PermanentConnectorError(f"{where}: SSH handshake failed: {exc}")
        return PermanentConnectorError(f"{where}: cannot connect: {exc!r}")

    @contextlib.contextmanager
    def _session(self, what: str) -> Iterator[Connection]:
        """An open connection; a break during `what` becomes a TransientConnectorError (and reconnects)."""
        with self._lock:
            self.connect()
            assert self._conn is not None
            try:
                yield self._conn
            except ConnectorError:
                raise
            except (EOFError, TimeoutError, ConnectionError, paramiko.SSHException) as exc:
                self.close()
                raise TransientConnectorError(f"{self.label}: connection lost during {what}: {exc!r}") from None
            except OSError as exc:
                if not self.is_open:
                    self.close()
                    raise TransientConnectorError(f"{self.label}: connection lost during {what}: {exc!r}") from None
                raise

    def _sftp_client(self, conn: Connection) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = conn.client.open_sftp()
            self._sftp.get_channel().settimeout(self.settings.io_timeout)  # type: ignore[union-attr]
        return self._sftp

    # -- commands ------------------------------------------------------------------------------------

    def run(self, command: str, timeout: float) -> CommandResult:
        """Run a shell command (under sudo when configured); its exit code is returned, not raised."""
        return self._exec(command, timeout, sudo=self.settings.use_sudo)

    def _exec(self, command: str, timeout: float, *, sudo: bool) -> CommandResult:
        result, _ = self._exec_streams(command, timeout, sudo=sudo)
        return result

    def _exec_streams(self, command: str, timeout: float, *, sudo: bool) -> tuple[CommandResult, str]:
        """Run `command`; returns the result (stdout + stderr) and stdout alone."""
        line = _PATH_PREFIX + command
        stdin = b""
        if sudo:
            if self.settings.password:
                # -S reads the password from stdin (never from the command line); -p '' prints no prompt.
                line = f"sudo -S -p '' -- sh -c {shlex.quote(line)}"
                stdin = self.settings.password.encode() + b"\n"
            else:
                line = f"sudo -n -- sh -c {shlex.quote(line)}"
        with self._session(f"`{command}`") as conn:
            code, out, err = self._channel_run(conn, line, stdin, timeout, command)
        if sudo and code != 0 and _sudo_refused(err):
            raise PermanentConnectorError(
                f"{self.label}: sudo refused to run `{command}` for {self.settings.username!r}: "
                f"{err.strip().splitlines()[-1]}; allow the user to sudo or turn sudo off"
            )
        return CommandResult(command, code, out + err), out

    def _channel_run(
        self, conn: Connection, line: str, stdin: bytes, timeout: float, command: str
    ) -> tuple[int, str, str]:
        """One exec channel (fabric's runner feeds stdin a byte per 10 ms: 300 ms for a sudo password)."""
        transport = conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise TransientConnectorError(f"{self.label}: connection lost before `{command}`")
        channel = transport.open_session(timeout=self.settings.io_timeout)
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = time.monotonic() + timeout
        try:
            channel.exec_command(line)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            while True:
                while channel.recv_ready():
                    out.append(channel.recv(65536))
                while channel.recv_stderr_ready():
                    err.append(channel.recv_stderr(65536))
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if not transport.is_active():
                    raise TransientConnectorError(f"{self.label}: connection lost during `{command}`")
                if time.monotonic() > deadline:
                    raise PermanentConnectorError(f"{self.label}: `{command}` did not finish within {timeout:g} s")
                select.select([channel], [], [], 0.02)
            code = channel.recv_exit_status()
        finally:
            channel.close()
        return code, b"".join(out).decode("utf-8", "replace"), b"".join(err).decode("utf-8", "replace")

    def _check(self, command: str, what: str) -> str:
        """Run a helper command that must succeed; returns its stdout (stderr noise kept out of parsing)."""
        result, stdout = self._exec_streams(command, self.settings.io_timeout, sudo=self.settings.use_sudo)
        if result.exit_code != 0:
            raise PermanentConnectorError(f"{self.label}: cannot {what}: {result.tail() or 'no output'}")
        return stdout

    # -- files ---------------------------------------------------------------------------------------

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        if self.settings.use_sudo:
            q = shlex.quote(path)
            result, stdout = self._exec_streams(
                f"if [ -e {q} ]; then base64 -w0 -- {q}; else echo MISSING; fi", self.settings.io_timeout, sudo=True
            )
            if result.exit_code != 0:
                raise PermanentConnectorError(f"{self.label}: cannot read {path}: {result.tail()}")
            text = stdout.strip()
            return None if text == "MISSING" else base64.b64decode(text)
        with self._session(f"reading {path}") as conn:
            sftp = self._sftp_client(conn)
            try:
                with sftp.open(path, "rb") as fh:
                    return bytes(fh.read())
            except FileNotFoundError:
                return None
            except PermissionError:
                raise PermanentConnectorError(
                    f"{self.label}: permission denied reading {path}: give the user read access or turn sudo on"
                ) from None
            except OSError as exc:
                if _is_sftp_status(exc):
                    raise PermanentConnectorError(f"{self.label}: cannot read {path}: {exc}") from None
                raise

    def stat(self, path: str) -> os_stat | None:
        """Whether `path` exists and what it is (file or directory); None when missing."""
        if self.settings.use_sudo:
            q = shlex.quote(path)
            out = self._check(
                f"if [ -d {q} ]; then echo dir; elif [ -e {q} ]; then echo file; else echo missing; fi",
                f"look at {path}",
            ).strip()
            return None if out == "missing" else os_stat(is_dir=out == "dir")
        with self._session(f"looking at {path}") as conn:
            try:
                st = self._sftp_client(conn).stat(path)
            except FileNotFoundError:
                return None
            except PermissionError:
                raise PermanentConnectorError(f"{self.label}: permission denied looking at {path}") from None
            return os_stat(is_dir=stat.S_ISDIR(st.st_mode or 0))

    def list_dir(self, path: str) -> list[str]:
        """Names in a directory (for following `include` globs); empty when it does not exist."""
        if self.settings.use_sudo:
            q = shlex.quote(path)
            out = self._check(f"if [ -d {q} ]; then ls -1A -- {q}; fi", f"list {path}")
            return sorted(line for line in out.splitlines() if line)
        with self._session(f"listing {path}") as conn:
            try:
                return sorted(self._sftp_client(conn).listdir(path))
            except (FileNotFoundError, PermissionError):
                return []

    def write_atomic(self, path: str, data: bytes, mode: int) -> None:
        directory = posixpath.dirname(path) or "."
        name = posixpath.basename(path)
        tmp = posixpath.join(directory, f".{name}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
        if self.settings.use_sudo:
            self._write_with_sudo(path, directory, tmp, data, mode)
            return
        with self._session(f"writing {path}") as conn:
            sftp = self._sftp_client(conn)
            try:
                if not stat.S_ISDIR(sftp.stat(directory).st_mode or 0):
                    raise PermanentConnectorError(f"{self.label}: {directory} is not a directory")
            except FileNotFoundError:
                raise PermanentConnectorError(f"{self.label}: directory {directory} does not exist") from None
            try:
                _upload(sftp, tmp, data, mode)
                sftp.posix_rename(tmp, path)
                _remove_partial_copies(sftp, directory, name)
            except PermissionError:
                with contextlib.suppress(OSError):
                    sftp.remove(tmp)
                raise PermanentConnectorError(
                    f"{self.label}: permission denied writing {path}: give the user write access to "
                    f"{directory} or turn sudo on"
                ) from None
            except OSError as exc:
                with contextlib.suppress(OSError):
                    sftp.remove(tmp)
                if _is_sftp_status(exc):
                    raise PermanentConnectorError(f"{self.label}: cannot write {path}: {exc}") from None
                raise

    def _write_with_sudo(self, path: str, directory: str, tmp: str, data: bytes, mode: int) -> None:
        staging = f".certfleet-upload-{secrets.token_hex(6)}"  # relative: the user's home directory
        try:
            with self._session(f"uploading {path}") as conn:
                sftp = self._sftp_client(conn)
                try:
                    _upload(sftp, staging, data, 0o600)
                    home = sftp.normalize(".")
                except BaseException as exc:
                    with contextlib.suppress(Exception):  # a half-written copy of a key must not stay behind
                        sftp.remove(staging)
                    if isinstance(exc, OSError) and _is_sftp_status(exc):
                        raise PermanentConnectorError(
                            f"{self.label}: cannot upload {path} to the home directory of "
                            f"{self.settings.username!r} (sudo installs it from there): {exc}"
                        ) from None
                    raise
        except TransientConnectorError:
            self._remove_staging(staging)  # the connection broke mid-upload: removed through a new one
            raise
        src = posixpath.join(home, staging)
        q = shlex.quote
        # Keep the owner of the file being replaced (the service user must still read it).
        script = (
            f"d={q(directory)}; p={q(path)}; t={q(tmp)}; s={q(src)}; "
            '[ -d "$d" ] || { rm -f "$s"; echo "directory $d does not exist" >&2; exit 3; }; '
            'if [ -e "$p" ]; then o=$(stat -c %u "$p"); g=$(stat -c %g "$p"); else o=0; g=0; fi; '
            f'install -m {mode:o} -o "$o" -g "$g" "$s" "$t" && rm -f "$s" && mv -f "$t" "$p" '
            '|| { rm -f "$s" "$t"; exit 4; }'
        )
        try:
            result = self._exec(script, self.settings.io_timeout, sudo=True)
        except BaseException:
            self._remove_staging(staging)  # sudo refused, timed out or the connection broke: the script
            raise  # may never have run, so its own `rm` did not either
        if result.exit_code != 0:
            self._remove_staging(staging)
            raise PermanentConnectorError(f"{self.label}: cannot write {path}: {result.tail() or 'no output'}")

    def _remove_staging(self, staging: str) -> None:
        """Best effort, as the login user who owns it: gone already when the sudo script got to run."""
        with contextlib.suppress(ConnectorError, OSError), self._session(f"removing {staging}") as conn:
            self._sftp_client(conn).remove(staging)

    def copy(self, src: str, dst: str) -> None:
        """Copy with mode and owner kept, renamed into place atomically (backups and restores)."""
        q = shlex.quote
        tmp = posixpath.join(posixpath.dirname(dst) or ".", f".{posixpath.basename(dst)}.{secrets.token_hex(4)}")
        tmp += _TMP_SUFFIX
        self._check(
            f"cp -p -- {q(src)} {q(tmp)} && mv -f -- {q(tmp)} {q(dst)} || {{ rm -f -- {q(tmp)}; exit 1; }}",
            f"copy {src} to {dst}",
        )

    def remove(self, path: str) -> None:
        self._check(f"rm -f -- {shlex.quote(path)}", f"remove {path}")


@dataclass(frozen=True)
class os_stat:
    is_dir: bool


def _remove_partial_copies(sftp: paramiko.SFTPClient, directory: str, name: str) -> None:
    """Temp copies of `name` an earlier write left when its connection dropped mid-upload (part of a key,
    perhaps): removed once the new file is in place. Best effort: the write itself has succeeded."""
    prefix = f".{name}."
    with contextlib.suppress(OSError):
        for entry in sftp.listdir(directory):
            if (
                entry.startswith(prefix)
                and entry.endswith(_TMP_SUFFIX)
                and len(entry) == len(prefix) + 8 + len(_TMP_SUFFIX)
            ):
                with contextlib.suppress(OSError):
                    sftp.remove(posixpath.join(directory, entry))


def _upload(sftp: paramiko.SFTPClient, remote: str, data: bytes, mode: int) -> None:
    """Write a new file, with its final mode set before any byte is written (a key is never world-readable).

    paramiko's pipelined writes can lose the server's error for a write (a full disk left a short file and
    raised nothing), so the size is checked once the file is closed.
    """
    with sftp.open(remote, "wbx") as fh:
        sftp.chmod(remote, mode)
        fh.set_pipelined(True)
        fh.write(data)
    size = sftp.stat(remote).st_size
    if size != len(data):
        raise OSError(errno.EIO, f"only {size} of {len(data)} bytes reached {remote}; is the disk full?")


def _is_sftp_status(exc: OSError) -> bool:
    """paramiko raises the server's SFTP status replies as IOError; a broken connection is not one."""
    if isinstance(exc, ConnectionError | TimeoutError | socket.timeout):
        return False
    if exc.args == ("Socket is closed",):  # paramiko's channel after the connection dropped
        return False
    return exc.errno is not None or bool(exc.args and isinstance(exc.args[0], str))


def _sudo_refused(stderr: str) -> bool:
    text = stderr.lower()
    return any(
        marker in text
        for marker in (
            "a password is required",
            "incorrect password",
            "is not in the sudoers",
            "not allowed to execute",
            "no password was provided",
            "sudo: command not found",
            "sorry, try again",
        )
    )


# -- a per-process cache: one connection per server, reused by every certificate of a flow run ---------

_cache: ConnectionCache[SshSettings, SshTransport] = ConnectionCache()


def cached_transport(
    server_id: int, settings: SshSettings, on_new_host_key: Callable[[str], None] | None = None
) -> SshTransport:
    """The open transport for this server, or a new one; a changed setting (password, key, pin) reconnects."""
    return _cache.get(
        server_id,
        settings,
        lambda: SshTransport(settings, on_new_host_key=on_new_host_key),
        # A key pinned on first contact is in the database by the next lookup: still the same server.
        lambda cached, transport: settings in (cached, replace(cached, host_key=transport.host_key)),
    )


def close_cached_transports() -> int:
    """Close every cached connection (at the end of a flow run); returns how many were open."""
    return _cache.close_all()
