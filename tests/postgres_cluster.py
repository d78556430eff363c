"""A throwaway PostgreSQL cluster for one pytest run: `initdb` + `pg_ctl` in a temp directory on a free port.

Like the tests' own sshd, it needs nothing from the machine but the packaged binaries (Debian's
`postgresql`): not a running server, not a trusting `pg_hba.conf`. initdb refuses to run as root, so as
root the cluster belongs to the `postgres` system user (commands through `runuser`). The cluster trusts
local connections only: it listens on 127.0.0.1 and on a socket inside its own 0700 directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from certfleet.demo.listener import free_port

INSTALL_HINT = "run `bash scripts/install-system-packages.sh` (Debian package postgresql)"


class ClusterError(RuntimeError):
    """The cluster could not be made or started; the message says why and what to install."""


def _binary(name: str) -> str:
    """Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/<version>/bin."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    for directory in reversed(versions):
        if os.access(os.path.join(directory, name), os.X_OK):
            return os.path.join(directory, name)
    found = shutil.which(name)
    if found is None:
        raise ClusterError(f"{name} is needed to start the tests' PostgreSQL and is not installed: {INSTALL_HINT}")
    return found


def _as_owner(owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--"] if owner else []


def _run(argv: list[str], owner: str | None, what: str) -> None:
    done = subprocess.run(_as_owner(owner) + argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise ClusterError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-1500:]}")


@contextlib.contextmanager
def running_cluster() -> Iterator[str]:
    """Start a cluster; yields the admin URL (user postgres, database postgres); stops and deletes it after."""
    owner: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise ClusterError(f"initdb cannot run as root and there is no postgres user: {INSTALL_HINT}") from None
        owner = "postgres"
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    directory = Path(tempfile.mkdtemp(prefix="certfleet-pg-"))  # 0700
    if owner:
        entry = pwd.getpwnam(owner)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    data, log = directory / "data", directory / "server.log"
    port = free_port()
    started = False
    try:
        _run(
            [initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"],
            owner,
            "initdb",
        )
        options = (
            f"-p {port} -h 127.0.0.1 -k {directory} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        _run([pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"], owner, "pg_ctl start")
        started = True
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    except ClusterError as exc:
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        raise ClusterError(f"{exc}\n{tail}".strip()) from None
    finally:
        if started:
            with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
                _run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], owner, "pg_ctl stop")
        shutil.rmtree(directory, ignore_errors=True)
