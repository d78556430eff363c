"""A small TLS server that serves certificate files from disk and reloads them on SIGHUP like nginx.

It stands in for a real web server in ``certfleet demo`` and in integration tests: a deployment writes
new files, runs the ``check`` command (like ``nginx -t``), runs the ``reload`` command (SIGHUP), and
then probes the port to prove which certificate is served.  A failed reload keeps the previous
certificate in service, exactly as nginx keeps its old configuration, so rollback logic can be tested
against realistic behaviour.

Command line::

    python -m certfleet.demo.listener serve --host H --port P --cert C --key K [--chain CH]
                                            --pidfile F [--ready-file R] [--control S]
    python -m certfleet.demo.listener check --cert C --key K [--chain CH]
    python -m certfleet.demo.listener reload --pidfile F

With ``--control S`` the running listener also answers on the Unix socket ``S`` (mode 0600): ``check`` loads
the files it serves from disk, exactly as a reload would, and answers whether they load (nothing changes); ``reload``
loads them and serves them, or keeps serving the old ones and answers why not. ``listener_ctl.py`` is the client,
standard library ``socket`` only, so the check and the reload a deployment runs cost no new interpreter that
imports ``ssl`` and this module: ``python -I -S .../listener_ctl.py S check`` (see ``control_check_command``).

Instead of --cert/--key, ``--sites DIR`` serves many sites on one port, like a web server with many server
blocks: each subdirectory ``DIR/<server name>/`` holds ``fullchain.pem`` and ``privkey.pem``, chosen by SNI (the
first name in sorted order answers clients without a known name); ``check --sites DIR`` tests them all.

Standard library only, so it runs anywhere the interpreter does.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import os
import random
import re
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

MODULE = "certfleet.demo.listener"
READY_TEXT = "ready"
DEFAULT_CLIENT_TIMEOUT = 10.0
DEFAULT_READY_TIMEOUT = 15.0
MAX_REQUEST_BYTES = 16 * 1024
MAX_CONCURRENT_CLIENTS = 256
CONTROL_TIMEOUT = 5.0  # a control client must send its line and read the answer within this
CONTROL_CLIENT = Path(__file__).with_name("listener_ctl.py")
MAX_CONTROL_PATH = 100  # bytes: a Unix socket's path must fit in sockaddr_un (108 with its NUL, less on some)

_CERT_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)
_KEY_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----")


class ConfigError(Exception):
    """The certificate, key or chain files cannot be served; the message is one line for an operator."""


class ReloadError(Exception):
    """The reload signal could not be delivered (no pidfile, stale pid, not a listener)."""


class ListenerStartError(RuntimeError):
    """The listener subprocess died or never became ready; the message carries its stderr."""


@dataclass(frozen=True)
class ServedConfig:
    """A loaded server context and the serial of its leaf certificate (named in every response)."""

    context: ssl.SSLContext
    serial: int
    by_name: dict[str, ServedConfig] | None = None  # --sites: each server name's own config


SITE_CERT, SITE_KEY = "fullchain.pem", "privkey.pem"


def load_sites(directory: Path) -> ServedConfig:
    """Every site of a --sites directory loaded (a broken one fails the whole load, as `nginx -t` does)."""
    try:
        names = sorted(p.name for p in directory.iterdir() if p.is_dir())
    except OSError as exc:
        raise ConfigError(f"cannot read the sites directory {directory}: {exc.strerror or exc}") from None
    if not names:
        raise ConfigError(f"no site in {directory}: add <server name>/{SITE_CERT} and {SITE_KEY}")
    sites = {name: load_config(directory / name / SITE_CERT, directory / name / SITE_KEY) for name in names}
    first = sites[names[0]]
    return ServedConfig(context=first.context, serial=first.serial, by_name=sites)


# --- loading certificate files ------------------------------------------------------------------


def _read_text(path: Path, what: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} file {path} is a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    # latin-1 never fails, so binary garbage is reported as "not PEM" rather than as a decode error.
    return data.decode("latin-1")


def _der_tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """Return (tag, content start, content end) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def certificate_serial(der: bytes) -> int:
    """Read the serial number from a DER certificate (stdlib has no public X.509 parser)."""
    tag, start, _ = _der_tlv(der, 0)
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, pos, _ = _der_tlv(der, start)
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, start, end = _der_tlv(der, pos)
    if tag == 0xA0:  # explicit [0] version precedes the serial in v2/v3 certificates
        tag, start, end = _der_tlv(der, end)
    if tag != 0x02:
        raise ValueError("certificate has no serial number")
    return int.from_bytes(der[start:end], "big", signed=True)


def _parse_certificates(text: str, path: Path, what: str) -> list[bytes]:
    blocks = _CERT_BLOCK.findall(text)
    if not blocks:
        raise ConfigError(f"{what} file {path} is not PEM: no certificate found")
    ders: list[bytes] = []
    for index, body in enumerate(blocks, start=1):
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
            certificate_serial(der)
            # A throwaway trust store makes OpenSSL parse the whole certificate, not just the serial.
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=der)
        except (binascii.Error, ValueError, ssl.SSLError):
            raise ConfigError(f"{what} file {path}: certificate #{index} is not a valid certificate") from None
        ders.append(der)
    return ders


def _check_key_text(text: str, path: Path) -> None:
    match = _KEY_BLOCK.search(text)
    if match is None:
        raise ConfigError(f"key file {path} is not PEM: no private key found")
    if "ENCRYPTED" in match.group(1) or "Proc-Type: 4,ENCRYPTED" in text:
        raise ConfigError(f"key file {path} is encrypted; the listener needs an unencrypted key")


def _no_password() -> bytes:
    """Refuse passphrases so OpenSSL never prompts on a terminal."""
    return b""


def load_config(cert_path: Path, key_path: Path, chain_path: Path | None = None) -> ServedConfig:
    """Load cert (+ optional chain) and key into a new server context, or raise ConfigError."""
    cert_text = _read_text(cert_path, "certificate")
    key_text = _read_text(key_path, "key")
    chain_text = _read_text(chain_path, "chain") if chain_path is not None else None
    leaf_der = _parse_certificates(cert_text, cert_path, "certificate")[0]
    if chain_path is not None and chain_text is not None:
        _parse_certificates(chain_text, chain_path, "chain")
    _check_key_text(key_text, key_path)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    combined: str | None = None
    try:
        if chain_text is not None:
            # load_cert_chain only takes paths, so the separate chain is appended in a temporary file.
            fd, combined = tempfile.mkstemp(prefix="certfleet-listener-", suffix=".pem")
            with os.fdopen(fd, "w", encoding="latin-1") as handle:
                handle.write(cert_text.rstrip("\n") + "\n" + chain_text)
        context.load_cert_chain(combined or str(cert_path), str(key_path), password=_no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"key {key_path} does not match certificate {cert_path}") from None
        raise ConfigError(f"key file {key_path} does not contain a usable private key ({exc.reason or exc})") from None
    except OSError as exc:
        raise ConfigError(f"cannot load {cert_path} and {key_path}: {exc.strerror or exc}") from None
    finally:
        if combined is not None:
            with contextlib.suppress(OSError):
                os.unlink(combined)
    return ServedConfig(context=context, serial=certificate_serial(leaf_der))


# --- serving ----------------------------------------------------------------------------------------


def _hex(serial: int) -> str:
    """Uppercase hex padded to whole bytes, as certfleet shows serials everywhere."""
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else f"0{text}"


def _log(message: str) -> None:
    print(f"listener[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def _write_atomic(path: Path, text: str) -> None:
    """Write via rename so a poller never reads a half-written pid or ready marker."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((host, port), family=family, backlog=128)


def _read_request(tls: ssl.SSLSocket) -> bytes:
    """Read up to the end of the request headers; the body (if any) is irrelevant to the answer."""
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) < MAX_REQUEST_BYTES:
        chunk = tls.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class _Server:
    """Accept loop in the main thread (which also receives signals); one worker thread per client."""

    def __init__(
        self,
        listen_sock: socket.socket,
        config: ServedConfig,
        load: Callable[[], ServedConfig],
        client_timeout: float,
    ) -> None:
        self._listen = listen_sock
        self._load = load
        self._client_timeout = client_timeout
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT_CLIENTS)
        self._tls_state = threading.local()
        self._config = self._activate(config)

    def _activate(self, config: ServedConfig) -> ServedConfig:
        config.context.sni_callback = self._record_sni
        return config

    def _record_sni(self, sslobj: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        # One site: the same certificate for every name, which is only echoed so clients can see SNI arrived.
        self._tls_state.server_name = server_name
        site = (self._config.by_name or {}).get(server_name or "")
        if site is not None:
            sslobj.context = site.context
            self._tls_state.serial = site.serial

    def reload(self) -> tuple[bool, str]:
        """Swap in a new context; on any failure keep serving the old one, like nginx. Returns (done, message)."""
        current = self._config
        try:
            new = self._load()
        except ConfigError as exc:
            message = f"reload failed: {exc}; still serving serial {_hex(current.serial)}"
            _log(message)
            return False, message
        self._config = self._activate(new)
        message = f"reloaded: now serving serial {_hex(new.serial)}"
        _log(message)
        return True, message

    def check(self) -> tuple[bool, str]:
        """Load the files from disk as a reload would, and keep serving what is served (``nginx -t``)."""
        try:
            self._load()
        except ConfigError as exc:
            return False, f"configuration test failed: {exc}"
        return True, "configuration ok"

    def _control(self, control: socket.socket) -> None:
        """One request on the control socket: a line `check` or `reload`; the answer `ok|error <message>`."""
        try:
            conn, _ = control.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            _log(f"control accept failed: {exc}")
            return
        with conn:
            conn.settimeout(CONTROL_TIMEOUT)
            try:
                request = b""
                while b"\n" not in request and len(request) < 64:
                    chunk = conn.recv(64)
                    if not chunk:
                        break
                    request += chunk
                command = request.split(b"\n", 1)[0].strip()
                if command == b"check":
                    done, message = self.check()
                elif command == b"reload":
                    done, message = self.reload()
                else:
                    done, message = False, "unknown control command: send check or reload"
                conn.sendall(f"{'ok' if done else 'error'} {message}\n".encode())
            except OSError:
                pass  # the client went away or stalled: it sees no answer and fails

    def run(self, pidfile: Path, ready_file: Path | None, control: _Control | None = None) -> int:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        # The C-level handler writes each signal number to wake_w, so select() wakes at once and the
        # loop handles signals in order; the Python handlers only have to exist.
        previous_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _ignore_signal)
        selector = selectors.DefaultSelector()
        try:
            _write_atomic(pidfile, f"{os.getpid()}\n")
            self._listen.setblocking(False)
            selector.register(self._listen, selectors.EVENT_READ, "accept")
            selector.register(wake_r, selectors.EVENT_READ, "signal")
            if control is not None:
                selector.register(control.sock, selectors.EVENT_READ, "control")
            host, port = self._listen.getsockname()[:2]
            _log(f"listening on {host}:{port}, serving serial {_hex(self._config.serial)}")
            if ready_file is not None:
                _write_atomic(ready_file, READY_TEXT)
            while True:
                for key, _ in selector.select():
                    if key.data == "accept":
                        self._accept()
                        continue
                    if key.data == "control" and control is not None:
                        self._control(control.sock)
                        continue
                    for received in _drain(wake_r):
                        if received == signal.SIGHUP:
                            self.reload()
                        elif received in (signal.SIGTERM, signal.SIGINT):
                            _log(f"received {signal.Signals(received).name}, stopping")
                            return 0
        finally:
            selector.close()
            if control is not None:
                control.remove()
            signal.set_wakeup_fd(previous_wakeup)
            wake_r.close()
            wake_w.close()
            _remove_own_pidfile(pidfile)
            if ready_file is not None:
                with contextlib.suppress(OSError):
                    ready_file.unlink()

    def _accept(self) -> None:
        try:
            conn, _ = self._listen.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. out of file descriptors: back off instead of spinning
            _log(f"accept failed: {exc}")
            time.sleep(0.1)
            return
        conn.settimeout(self._client_timeout)
        if not self._slots.acquire(blocking=False):
            conn.close()
            return
        threading.Thread(target=self._handle_client, args=(conn,), daemon=True).start()

    def _handle_client(self, conn: socket.socket) -> None:
        try:
            config = self._config
            self._tls_state.server_name = None
            self._tls_state.serial = None
            with config.context.wrap_socket(conn, server_side=True) as tls:
                request = _read_request(tls)
                if request:
                    tls.sendall(self._response(getattr(self._tls_state, "serial", None) or config.serial))
        except (OSError, ValueError):
            pass  # client vanished, timed out or failed the handshake: nothing to answer
        finally:
            conn.close()
            self._slots.release()

    def _response(self, serial: int) -> bytes:
        server_name = getattr(self._tls_state, "server_name", None) or "-"
        body = f"certfleet demo listener\nserial: {_hex(serial)}\nserver_name: {server_name}\n".encode()
        head = (
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        return head + body


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """Placeholder handler; the wakeup fd delivers the signal to the accept loop."""


def _drain(sock: socket.socket) -> list[int]:
    received: list[int] = []
    while True:
        try:
            data = sock.recv(256)
        except (BlockingIOError, InterruptedError):
            return received
        if not data:
            return received
        received.extend(data)


@dataclass
class _Control:
    sock: socket.socket
    path: Path
    identity: tuple[int, int, int]  # of the socket file this listener bound: device, inode, change time

    def remove(self) -> None:
        """Close it; remove the file unless a successor has bound that path since (then it is another file)."""
        self.sock.close()
        with contextlib.suppress(OSError):
            st = self.path.stat()
            if (st.st_dev, st.st_ino, st.st_ctime_ns) == self.identity:
                self.path.unlink()


def _bind_control(path: Path) -> _Control:
    """The control socket, reachable by this user only (a socket left by a listener that died is replaced)."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_socket():
            path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o177)  # created 0600: no moment in which another user could connect
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        sock.listen(16)
        sock.setblocking(False)
        st = path.stat()
        return _Control(sock, path, (st.st_dev, st.st_ino, st.st_ctime_ns))
    except OSError:
        sock.close()
        raise


def _remove_own_pidfile(pidfile: Path) -> None:
    """Remove the pidfile only if it is still ours (a successor may have taken it over)."""
    with contextlib.suppress(OSError, ValueError):
        if int(pidfile.read_text(encoding="utf-8").strip()) == os.getpid():
            pidfile.unlink()


def serve(
    host: str,
    port: int,
    cert_path: Path | None,
    key_path: Path | None,
    chain_path: Path | None,
    pidfile: Path,
    ready_file: Path | None = None,
    client_timeout: float = DEFAULT_CLIENT_TIMEOUT,
    sites: Path | None = None,
    control_path: Path | None = None,
) -> int:
    """Run the listener until SIGTERM/SIGINT; returns the process exit status."""
    if ready_file is not None:
        with contextlib.suppress(FileNotFoundError):
            ready_file.unlink()
    load = _loader(cert_path, key_path, chain_path, sites)
    try:
        config = load()
    except ConfigError as exc:
        _log(f"cannot start: {exc}")
        return 1
    try:
        listen_sock = _bind(host, port)
    except OSError as exc:
        _log(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        return 1
    control = None
    if control_path is not None:
        try:
            control = _bind_control(control_path)
        except OSError as exc:
            listen_sock.close()
            _log(f"cannot listen on the control socket {control_path}: {exc.strerror or exc}")
            return 1
    with listen_sock:
        server = _Server(listen_sock, config, load, client_timeout)
        return server.run(pidfile, ready_file, control)


def _loader(
    cert_path: Path | None, key_path: Path | None, chain_path: Path | None, sites: Path | None
) -> Callable[[], ServedConfig]:
    if sites is not None:
        return lambda: load_sites(sites)
    if cert_path is None or key_path is None:
        raise SystemExit("give --cert and --key, or --sites")
    return lambda: load_config(cert_path, key_path, chain_path)


# --- reload command ---------------------------------------------------------------------------------


def send_reload(pidfile: Path) -> int:
    """Send SIGHUP to the listener named in ``pidfile``; return its pid or raise ReloadError."""
    try:
        text = pidfile.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ReloadError(f"pidfile {pidfile} does not exist; is the listener running?") from None
    except OSError as exc:
        raise ReloadError(f"cannot read pidfile {pidfile}: {exc.strerror or exc}") from None
    try:
        pid = int(text)
    except ValueError:
        raise ReloadError(f"pidfile {pidfile} does not contain a pid") from None
    if pid <= 0:
        raise ReloadError(f"pidfile {pidfile} does not contain a pid")
    stale = f"process {pid} from pidfile {pidfile} is not running (stale pidfile)"
    cmdline = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self/cmdline").exists():
        # Guard against pid reuse: never SIGHUP an unrelated process that inherited a stale pid.
        try:
            args = cmdline.read_bytes().split(b"\0")
        except FileNotFoundError:
            raise ReloadError(stale) from None
        except OSError:
            args = []
        is_listener = MODULE.encode() in args or any(a.endswith(b"demo/listener.py") for a in args)
        if args and not is_listener:
            raise ReloadError(f"process {pid} from pidfile {pidfile} is not a demo listener (stale pidfile)")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ReloadError(stale) from None
    except PermissionError:
        raise ReloadError(f"not permitted to signal process {pid} from pidfile {pidfile}") from None
    return pid


# --- Python API for tests and the demo --------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that was free a moment ago, below the kernel's ephemeral range when it can.

    A port the kernel hands out for bind(0) comes from the range it also gives outgoing connections: between
    choosing it and listening on it, a database or HTTP connection may take it ("Address already in use", seen
    when a test planned 100 listeners, then issued their certificates over many connections). A port is never
    handed out twice by one process: ports planned together are not bound yet, so the bind test alone cannot
    tell them apart (100 random picks collide about one time in five)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randint(10_000, low - 1) if low > 11_000 else 0  # noqa: S311 (not a secret)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            found = int(sock.getsockname()[1])
        with _handed_out_lock:
            if found in _handed_out:
                continue
            _handed_out.add(found)
        return found
    raise OSError(f"no free port found on {host}")


_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0  # unknown: let the kernel choose


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", MODULE, *args]


def _control_command(control_path: Path, action: str) -> list[str]:
    """An interpreter without site-packages or the environment's settings (-I -S) running the small client."""
    return [sys.executable, "-I", "-S", str(CONTROL_CLIENT), str(control_path), action]


def _file_args(cert_path: Path, key_path: Path, chain_path: Path | None) -> list[str]:
    args = ["--cert", str(cert_path), "--key", str(key_path)]
    if chain_path is not None:
        args += ["--chain", str(chain_path)]
    return args


class ListenerProcess:
    """A listener running as a subprocess; use ``ListenerProcess.start(...)`` as a context manager."""

    def __init__(
        self,
        host: str,
        port: int,
        cert_path: Path,
        key_path: Path,
        chain_path: Path | None = None,
        *,
        workdir: Path,
    ) -> None:
        self.host = host
        self.port = port
        self.cert_path = Path(cert_path)
        self.key_path = Path(key_path)
        self.chain_path = Path(chain_path) if chain_path is not None else None
        self.sites_dir: Path | None = None
        self.workdir = Path(workdir)
        self.pidfile = self.workdir / f"listener-{port}.pid"
        self.ready_file = self.workdir / f"listener-{port}.ready"
        self.log_path = self.workdir / f"listener-{port}.log"
        control = self.workdir / f"listener-{port}.ctl"
        # A path too long for a Unix socket: no control socket, the check and reload start the module instead.
        self.control_path: Path | None = control if len(os.fsencode(control)) <= MAX_CONTROL_PATH else None
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls,
        host: str,
        port: int,
        cert_path: Path,
        key_path: Path,
        chain_path: Path | None = None,
        *,
        workdir: Path,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
    ) -> ListenerProcess:
        """Launch the listener and return once it is listening (or raise ListenerStartError)."""
        listener = cls(host, port, cert_path, key_path, chain_path, workdir=workdir)
        listener.launch(ready_timeout)
        return listener

    @classmethod
    def for_sites(cls, host: str, port: int, sites_dir: Path, *, workdir: Path) -> ListenerProcess:
        """A listener serving every site of `sites_dir` by SNI (see --sites)."""
        listener = cls(host, port, sites_dir / "-", sites_dir / "-", workdir=workdir)
        listener.sites_dir = Path(sites_dir)
        return listener

    def _files(self) -> list[str]:
        if self.sites_dir is not None:
            return ["--sites", str(self.sites_dir)]
        return _file_args(self.cert_path, self.key_path, self.chain_path)

    def serve_command(self) -> list[str]:
        return _command(
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            *self._files(),
            "--pidfile",
            str(self.pidfile),
            "--ready-file",
            str(self.ready_file),
            *(["--control", str(self.control_path)] if self.control_path is not None else []),
        )

    def reload_command(self) -> list[str]:
        """Command a deployment runs to reload this listener (no shell needed)."""
        return _command("reload", "--pidfile", str(self.pidfile))

    def check_command(self) -> list[str]:
        """Command a deployment runs to test the files before reloading (like ``nginx -t``)."""
        return _command("check", *self._files())

    def control_check_command(self) -> list[str]:
        """The check through the running listener's control socket (it loads the files as a reload would);
        without a control socket, `check_command`."""
        if self.control_path is None:
            return self.check_command()
        return _control_command(self.control_path, "check")

    def control_reload_command(self) -> list[str]:
        """The reload through the control socket: it ends once the new files are served (or fails, naming why,
        with the old ones still served); without a control socket, `reload_command`."""
        if self.control_path is None:
            return self.reload_command()
        return _control_command(self.control_path, "reload")

    def launch(self, ready_timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        """Start the subprocess and wait for its ready file; no blind sleeping."""
        if self._process is not None:
            raise RuntimeError("listener already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for stale in (self.ready_file, self.pidfile):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        env = dict(os.environ)
        # Make the child import this very certfleet package even when it is not installed.
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.serve_command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env
            )
        deadline = time.monotonic() + ready_timeout
        while True:
            with contextlib.suppress(OSError):
                if self.ready_file.read_text(encoding="utf-8") == READY_TEXT:
                    return
            status = self._process.poll()
            if status is not None:
                raise ListenerStartError(
                    f"demo listener on {self.host}:{self.port} exited with status {status} before it was "
                    f"ready: {self.log_text().strip() or '(no output)'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ListenerStartError(
                    f"demo listener on {self.host}:{self.port} was not ready within {ready_timeout} s: "
                    f"{self.log_text().strip() or '(no output)'}"
                )
            time.sleep(0.02)

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("listener not started")
        return self._process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def reload(self) -> None:
        """Send SIGHUP directly (the ``reload_command`` does the same from outside Python)."""
        self.process.send_signal(signal.SIGHUP)

    def log_text(self) -> str:
        """Everything the listener wrote to stderr so far (startup, reload results, errors)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, *, count: int = 1, timeout: float = DEFAULT_READY_TIMEOUT) -> str:
        """Poll stderr until ``text`` appears ``count`` times, e.g. to know a reload was processed."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_text()
            if log.count(text) >= count:
                return log
            if time.monotonic() > deadline or not self.is_running():
                raise TimeoutError(
                    f"{text!r} did not appear {count} time(s) in the listener log within {timeout} s: "
                    f"{log.strip() or '(no output)'}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; idempotent."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- command line -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=(__doc__ or "").splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def add_files(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--cert", type=Path, help="PEM certificate (may hold the full chain)")
        sub.add_argument("--key", type=Path, help="PEM private key (unencrypted)")
        sub.add_argument("--chain", type=Path, help="optional PEM chain appended after the certificate")
        sub.add_argument("--sites", type=Path, help=f"instead: a directory of <server name>/{SITE_CERT}, {SITE_KEY}")

    serve_cmd = commands.add_parser("serve", help="serve the certificate until SIGTERM; SIGHUP reloads")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, required=True)
    add_files(serve_cmd)
    serve_cmd.add_argument("--pidfile", type=Path, required=True)
    serve_cmd.add_argument("--ready-file", type=Path)
    serve_cmd.add_argument("--client-timeout", type=float, default=DEFAULT_CLIENT_TIMEOUT)
    serve_cmd.add_argument("--control", type=Path, help="also answer check and reload on this Unix socket")

    check_cmd = commands.add_parser("check", help="test that the files load and match (like nginx -t)")
    add_files(check_cmd)

    reload_cmd = commands.add_parser("reload", help="send SIGHUP to the listener in the pidfile")
    reload_cmd.add_argument("--pidfile", type=Path, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(
            args.host,
            args.port,
            args.cert,
            args.key,
            args.chain,
            args.pidfile,
            args.ready_file,
            args.client_timeout,
            args.sites,
            args.control,
        )
    if args.command == "check":
        try:
            _loader(args.cert, args.key, args.chain, args.sites)()
        except ConfigError as exc:
            print(f"configuration test failed: {exc}", file=sys.stderr)
            return 1
        print("configuration ok")
        return 0
    try:
        pid = send_reload(args.pidfile)
    except ReloadError as exc:
        print(f"reload failed: {exc}", file=sys.stderr)
        return 1
    print(f"sent SIGHUP to listener {pid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
