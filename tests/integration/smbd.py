"""A real Samba smbd on 127.0.0.1 at a free port: its own smb.conf, state under a temp dir, a test user.

Shares: `C$` (as Windows' administrative share of drive C:, here a scratch folder), `enc$` with
`smb encrypt = required` over the same folder (SMB 3 encryption), and `ADMIN$` (for the administrator only, as
on Windows; a folder of its own). Tests run as root; the Unix user
`certfleet-smb` is created once (no login shell, no home) and given a Samba password with `smbpasswd`.
A missing smbd fails the test (it is installed by scripts/install-system-packages.sh), it never skips.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certfleet.demo.listener import free_port
from tests.emulators.acme_env import Process, _spawn
from tests.integration.sshd import require

SMB_USER = "certfleet-smb"
SMB_PASSWORD = "Smb-Pa$$w0rd;`'\" x"  # a throwaway loopback account; quotes and $ on purpose
OTHER_USER = "cfleet-viewer"  # may log in and read, is no administrator: the service manager refuses it
SMB_HINT = "run `bash scripts/install-system-packages.sh` (Debian package samba)"


@dataclass
class Smbd:
    port: int
    directory: Path  # state, config and logs
    share: Path  # what `C$` and `enc$` expose (stands for C:\)
    config: Path
    process: Process
    scm: Process | None = None  # the service manager emulator behind the svcctl pipe

    def log(self) -> str:
        logs = sorted(p for p in self.directory.glob("log/*") if p.is_file())
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in logs)

    def serving(self, client_port: int) -> int:
        """The smbd process holding the TCP connection from 127.0.0.1:`client_port` (smbd passes a client's
        connections to the process already serving its client GUID, so it is found by its socket)."""
        wanted = f"0100007F:{self.port:04X} 0100007F:{client_port:04X}"
        inode = next(
            line.split()[9]
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
            if " ".join(line.split()[1:3]) == wanted
        )
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    for fd in (entry / "fd").iterdir():
                        if os.readlink(fd) == f"socket:[{inode}]":
                            return int(entry.name)
        raise LookupError(f"no process holds the connection from port {client_port}")

    def stop(self) -> None:
        self.process.stop()
        _stop_helpers(self.config)
        if self.scm is not None:
            self.scm.stop()


def _stop_helpers(config: Path) -> None:
    """smbd starts samba-dcerpcd (and its rpcd_* workers, one process group) on demand for named pipes; it
    outlives smbd. Stop the group of the helper started with this test's own smb.conf, and nothing else."""
    import signal

    marker = f"--configfile={config}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in argv and argv[0].endswith(b"samba-dcerpcd"):
            with contextlib.suppress(OSError):
                os.killpg(os.getpgid(int(entry.name)), signal.SIGTERM)


def put_file(path: Path, data: bytes) -> None:
    """A file on the share as Samba itself makes them: owned by the share's user, mode 0744 (Samba maps the
    DOS archive attribute to the owner's x bit, and only rwx maps to full control, DELETE included: without
    it a rename over the file is refused with ACCESS_DENIED, as on Windows without delete rights)."""
    path.write_bytes(data)
    shutil.chown(path, SMB_USER, SMB_USER)
    path.chmod(0o744)


def make_folder(path: Path) -> Path:
    """A folder on the share (and the missing folders above it), owned by the share's user."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for folder in missing:
        shutil.chown(folder, SMB_USER, SMB_USER)
    return path


def _ensure_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], check=True)


def _config(directory: Path, share: Path, port: int, extra_global: str = "") -> str:
    state = directory / "state"
    lines = [
        "[global]",
        "server role = standalone server",
        f"smb ports = {port}",
        "interfaces = 127.0.0.1",
        "bind interfaces only = yes",
        "disable netbios = yes",
        f"private dir = {state / 'private'}",
        f"lock directory = {state / 'lock'}",
        f"state directory = {state / 'state'}",
        f"cache directory = {state / 'cache'}",
        f"pid directory = {state / 'pid'}",
        f"ncalrpc dir = {state / 'ncalrpc'}",
        f"binddns dir = {state / 'binddns'}",
        f"passdb backend = tdbsam:{state / 'passdb.tdb'}",
        "load printers = no",
        "printing = bsd",
        "printcap name = /dev/null",
        "server min protocol = SMB2_10",
        "ntlm auth = ntlmv2-only",
        "map to guest = never",
        "log level = 1",
        extra_global,
        "",
        "[C$]",
        f"path = {share}",
        "read only = no",
        f"valid users = {SMB_USER} {OTHER_USER}",
        f"force user = {SMB_USER}",
        "",
        "[enc$]",
        f"path = {share}",
        "read only = no",
        f"valid users = {SMB_USER}",
        f"force user = {SMB_USER}",
        "smb encrypt = required",
        "",
        "[ADMIN$]",  # C:\Windows, where a PsExec-style run copies its service program: administrators only
        f"path = {directory / 'admin'}",  # not inside C$: tests check nothing is written to C:\\Windows
        "read only = no",
        f"valid users = {SMB_USER}",
        f"force user = {SMB_USER}",
        "",
    ]
    for sub in ("private", "lock", "state", "cache", "pid", "ncalrpc", "binddns"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    return "\n".join(lines)


SCM_EMULATOR = Path(__file__).resolve().parent.parent / "emulators" / "scm.py"


@contextlib.contextmanager
def running_smbd(
    extra_global: str = "", services: dict[str, Path] | None = None, admins: tuple[str, ...] = (SMB_USER,)
) -> Iterator[Smbd]:
    """`services`: Windows services (name -> init-style script) served on the svcctl pipe by the service
    manager emulator (tests/emulators/scm.py) that smbd forwards the pipe to; `admins` may start/stop them."""
    smbd = require("smbd", SMB_HINT)
    smbpasswd = require("smbpasswd", SMB_HINT)
    for name in (SMB_USER, OTHER_USER):
        _ensure_user(name)
    directory = Path(tempfile.mkdtemp(prefix="certfleet-smbd-"))
    directory.chmod(0o755)  # the share's user must reach the share folder inside
    share = directory / "C"
    share.mkdir()
    shutil.chown(share, SMB_USER)
    (directory / "admin").mkdir()
    shutil.chown(directory / "admin", SMB_USER)
    port = free_port()
    config = directory / "smb.conf"
    (directory / "log").mkdir()
    scm: Process | None = None
    if services is not None:
        sockets = directory / "pipes"
        extra_global += f"\nexternal_rpc_pipe:socket_dir = {sockets}"
        argv = ["/usr/bin/python3", str(SCM_EMULATOR), str(sockets), "--log", str(directory / "log" / "scm.log")]
        argv += [f"--service={name}={script}" for name, script in services.items()]
        argv += [f"--admin={name}" for name in admins]
        scm = _spawn(argv, directory / "scm.out")
        for _ in range(200):
            if (sockets / "np" / "svcctl").exists() or scm.process.poll() is not None:
                break
            time.sleep(0.05)
        if not (sockets / "np" / "svcctl").exists():
            scm.stop()
            pytest.fail(f"the service manager emulator did not start: {(directory / 'scm.out').read_text()}")
    config.write_text(_config(directory, share, port, extra_global))
    for name in (SMB_USER, OTHER_USER):
        subprocess.run(
            [smbpasswd, "-c", str(config), "-s", "-a", name],
            input=f"{SMB_PASSWORD}\n{SMB_PASSWORD}\n",
            text=True,
            check=True,
            capture_output=True,
        )
    process = _spawn(
        [smbd, "-F", "-s", str(config), "-l", str(directory / "log")],
        directory / "smbd.out",
    )
    server = Smbd(port, directory, share, config, process, scm)
    try:
        for _ in range(400):
            if process.process.poll() is not None:
                pytest.fail(f"smbd exited: {(directory / 'smbd.out').read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"smbd did not listen on 127.0.0.1:{port}: {server.log()}")
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
