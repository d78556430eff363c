"""A real OpenSSH server on 127.0.0.1 at a free port, with its own host key and test users.

Users (created once with `useradd` if missing; tests run as root):
- `certfleet-pw`: password login;
- `certfleet-key`: key login only (its Ed25519 key is generated per session);
- `certfleet-sudo`: password login, may run anything with sudo after giving its password.

Scratch directories handed to servers are made under /tmp with mode 0755 and owned by the login user,
because pytest's own tmp_path (under /tmp/pytest-of-root, mode 0700) is closed to other users.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certfleet.demo.listener import free_port

PASSWORD_USER = "certfleet-pw"
KEY_USER = "certfleet-key"
SUDO_USER = "certfleet-sudo"
PASSWORD = "correct horse battery staple"  # a test user's password on a throwaway loopback sshd
INSTALL_HINT = "run `bash scripts/install-system-packages.sh` (Debian packages openssh-server, sudo)"


def require(binary: str, hint: str = INSTALL_HINT) -> str:
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/sbin/{binary}") if os.path.exists(p)), None
    )
    if path is None:
        pytest.fail(f"{binary} is needed by this test and is not installed: {hint}")
    return path


def _ensure_user(name: str, *, password: str | None, sudo: bool = False) -> pwd.struct_passwd:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
        entry = pwd.getpwnam(name)
    if password is not None:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
    else:
        subprocess.run(["usermod", "--lock", name], check=True)  # no password login at all
        # A locked account (`!` in shadow) is also refused for keys by sshd without PAM: use `*`.
        subprocess.run(["usermod", "--password", "*", name], check=True)
    if sudo:
        Path("/etc/sudoers.d").mkdir(exist_ok=True)
        rule = Path(f"/etc/sudoers.d/{name}")
        rule.write_text(f"{name} ALL=(ALL) ALL\n")
        rule.chmod(0o440)
    return entry


@dataclass
class Sshd:
    port: int
    directory: Path
    host_key_line: str  # "ssh-ed25519 AAAA..." as certfleet pins it
    client_key_pem: str  # private key of KEY_USER, OpenSSH format
    process: subprocess.Popen[bytes]
    config: Path

    def log(self) -> str:
        return (self.directory / "sshd.log").read_text(errors="replace")

    def restart_with_new_host_key(self) -> str:
        """Same port, a fresh host key (a reinstalled server, or an impostor); returns the new key line."""
        self.stop()
        key = self.directory / "host_ed25519"
        for p in (key, key.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        self.host_key_line = _keygen(key)
        self._start()
        return self.host_key_line

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def _start(self) -> None:
        self.process = _launch(self.config, self.directory)
        _wait_listening(self.port, self.process, self.directory)


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _launch(config: Path, directory: Path) -> subprocess.Popen[bytes]:
    log = (directory / "sshd.log").open("ab")
    return subprocess.Popen([require("sshd"), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)


def _wait_listening(port: int, process: subprocess.Popen[bytes], directory: Path) -> None:
    import socket

    for _ in range(200):
        if process.poll() is not None:
            pytest.fail(f"sshd exited: {(directory / 'sshd.log').read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    pytest.fail(f"sshd did not listen on 127.0.0.1:{port}")


@contextlib.contextmanager
def running_sshd() -> Iterator[Sshd]:
    require("sshd")
    require("sudo")
    directory = Path(tempfile.mkdtemp(prefix="certfleet-sshd-"))
    directory.chmod(0o755)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    host_key = _keygen(directory / "host_ed25519")
    client_key = directory / "client_ed25519"
    client_line = _keygen(client_key)
    _ensure_user(PASSWORD_USER, password=PASSWORD)
    _ensure_user(KEY_USER, password=None)
    _ensure_user(SUDO_USER, password=PASSWORD, sudo=True)
    keys_dir = directory / "authorized_keys"
    keys_dir.mkdir(mode=0o755)
    (keys_dir / KEY_USER).write_text(client_line + "\n")
    port = free_port()
    config = directory / "sshd_config"
    config.write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {directory / "host_ed25519"}
PidFile {directory / "sshd.pid"}
AuthorizedKeysFile {keys_dir}/%u
StrictModes no
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
MaxStartups 50:30:100
MaxSessions 50
LogLevel VERBOSE
Subsystem sftp internal-sftp
"""
    )
    process = _launch(config, directory)
    sshd = Sshd(port, directory, host_key, client_key.read_text(), process, config)
    try:
        _wait_listening(port, process, directory)
        yield sshd
    finally:
        sshd.stop()
        shutil.rmtree(directory, ignore_errors=True)


def scratch_dir(owner: str, prefix: str = "certfleet-srv-") -> Path:
    """A directory under /tmp that `owner` can use over SSH (pytest's tmp_path is closed to them)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    entry = pwd.getpwnam(owner)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def chown_tree(path: Path, owner: str) -> None:
    entry = pwd.getpwnam(owner)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def kill_pidfile(pidfile: Path, sig: int = signal.SIGTERM, wait: float = 15.0) -> None:
    """Stop a daemon the tests started (through SSH) from its pid file."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
