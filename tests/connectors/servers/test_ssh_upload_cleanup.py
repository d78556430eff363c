"""A sudo upload's staging copy (a private key, often) is removed when the step fails, whatever fails, and a
write that runs out of disk half-way is an error, never a short file put in place.

Against the real sshd the integration tests start; a full disk is a real 64 KiB tmpfs.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers.ssh import SshSettings, SshTransport
from tests.integration.sshd import PASSWORD, PASSWORD_USER, Sshd, running_sshd, scratch_dir

FULL_HOME_USER = "certfleet-fullhome"
FULL_HOME = Path("/tmp/certfleet-fullhome")


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


def _settings(sshd: Sshd, username: str) -> SshSettings:
    return SshSettings(
        host="127.0.0.1",
        port=sshd.port,
        username=username,
        password=PASSWORD,
        host_key=sshd.host_key_line,
        connect_timeout=5.0,
        use_sudo=True,
    )


def _staging_files(home: Path) -> list[str]:
    return sorted(p.name for p in home.glob(".certfleet-upload-*"))


def test_sudo_refused_leaves_no_staging_copy_in_the_home_directory(sshd: Sshd) -> None:
    home = Path(pwd.getpwnam(PASSWORD_USER).pw_dir)
    target = scratch_dir(PASSWORD_USER) / "server.key"
    before = _staging_files(home)
    with (
        SshTransport(_settings(sshd, PASSWORD_USER)) as t,  # certfleet-pw may not sudo
        pytest.raises(PermanentConnectorError, match="sudo refused"),
    ):
        t.write_atomic(str(target), b"-----BEGIN PRIVATE KEY-----\nsecret\n", 0o600)
    assert _staging_files(home) == before
    assert not target.exists()


@pytest.fixture
def full_home() -> Iterator[Path]:
    """A login user whose home is a 64 KiB file system: an upload runs out of space half-way."""
    if not _user_exists(FULL_HOME_USER):
        subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(FULL_HOME), "--shell", "/bin/sh", FULL_HOME_USER],
            check=True,
        )
    subprocess.run(["chpasswd"], input=f"{FULL_HOME_USER}:{PASSWORD}\n", text=True, check=True)
    FULL_HOME.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(FULL_HOME)], check=True)
    try:
        entry = pwd.getpwnam(FULL_HOME_USER)
        os.chown(FULL_HOME, entry.pw_uid, entry.pw_gid)
        yield FULL_HOME
    finally:
        subprocess.run(["umount", "--lazy", str(FULL_HOME)], check=True)  # an SFTP child may still be exiting


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_an_upload_that_fails_half_way_leaves_no_partial_copy(sshd: Sshd, full_home: Path) -> None:
    target = scratch_dir(FULL_HOME_USER) / "server.key"
    with (
        SshTransport(_settings(sshd, FULL_HOME_USER)) as t,
        pytest.raises(PermanentConnectorError, match=f"cannot upload {target} to the home directory"),
    ):
        t.write_atomic(str(target), os.urandom(256 * 1024), 0o600)
    assert _staging_files(full_home) == []
    assert not target.exists()


def test_a_write_that_runs_out_of_disk_keeps_the_old_file_and_leaves_no_temp_file(sshd: Sshd, full_home: Path) -> None:
    target = full_home / "server.key"
    target.write_bytes(b"old key")
    settings = replace(_settings(sshd, FULL_HOME_USER), use_sudo=False)
    with (
        SshTransport(settings) as t,
        pytest.raises(PermanentConnectorError, match=r"cannot write .*only 6\d{4} of 262144 bytes reached"),
    ):
        t.write_atomic(str(target), os.urandom(256 * 1024), 0o600)
    assert target.read_bytes() == b"old key"
    assert sorted(p.name for p in full_home.iterdir()) == ["server.key"]
