"""SshTransport against a real OpenSSH server on 127.0.0.1: logins, pinning, atomic writes, sudo, errors."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError
from certfleet.connectors.servers.ssh import (
    HostKeyMismatch,
    SshSettings,
    SshTransport,
    cached_transport,
    close_cached_transports,
    fingerprint,
)
from certfleet.demo.listener import free_port
from tests.integration.sshd import (
    KEY_USER,
    PASSWORD,
    PASSWORD_USER,
    SUDO_USER,
    Sshd,
    running_sshd,
    scratch_dir,
)


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


def _settings(sshd: Sshd, **overrides: object) -> SshSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": sshd.port,
        "username": PASSWORD_USER,
        "password": PASSWORD,
        "host_key": sshd.host_key_line,
        "connect_timeout": 5.0,
    }
    values.update(overrides)
    return SshSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def home(sshd: Sshd) -> Path:
    return scratch_dir(PASSWORD_USER)


def test_password_login_writes_atomically_with_the_mode_asked(sshd: Sshd, home: Path) -> None:
    target = home / "site.key"
    target.write_bytes(b"old key")
    with SshTransport(_settings(sshd)) as t:
        t.write_atomic(str(target), b"new key", 0o600)
        assert t.read(str(target)) == b"new key"
        assert t.read(str(home / "missing.pem")) is None
        t.copy(str(target), str(home / "site.key.bak"))
        t.remove(str(home / "missing.pem"))  # removing what is not there is fine
        result = t.run("id -un; echo to-stderr >&2; exit 3", timeout=10)
    assert target.read_bytes() == b"new key"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.stat().st_uid == pwd.getpwnam(PASSWORD_USER).pw_uid
    assert (home / "site.key.bak").read_bytes() == b"new key"
    assert sorted(p.name for p in home.iterdir()) == ["site.key", "site.key.bak"]  # no temp files left
    assert result.exit_code == 3
    assert PASSWORD_USER in result.output
    assert "to-stderr" in result.output


def test_key_login(sshd: Sshd, home: Path) -> None:
    settings = _settings(sshd, username=KEY_USER, password=None, private_key=sshd.client_key_pem)
    with SshTransport(settings) as t:
        assert t.run("id -un", timeout=10).output.strip() == KEY_USER


def test_first_contact_pins_the_host_key_and_a_changed_key_is_refused(sshd: Sshd, home: Path) -> None:
    seen: list[str] = []
    with SshTransport(_settings(sshd, host_key=None), on_new_host_key=seen.append) as t:
        t.run("true", timeout=10)
        assert t.host_key == sshd.host_key_line
    assert seen == [sshd.host_key_line]

    old = sshd.host_key_line
    target = home / "cert.pem"
    target.write_bytes(b"untouched")
    new = sshd.restart_with_new_host_key()
    transport = SshTransport(_settings(sshd, host_key=old))
    with pytest.raises(HostKeyMismatch) as info:
        transport.write_atomic(str(target), b"must not arrive", 0o644)
    message = str(info.value)
    assert fingerprint(old) in message
    assert fingerprint(new) in message
    assert "host key changed" in message
    assert target.read_bytes() == b"untouched"
    assert "must not arrive" not in sshd.log()


def test_wrong_password_is_a_clear_permanent_error(sshd: Sshd) -> None:
    transport = SshTransport(_settings(sshd, password="not the password"))
    with pytest.raises(PermanentConnectorError, match=r"authentication failed.*password for user 'certfleet-pw'"):
        transport.run("true", timeout=10)
    assert "not the password" not in repr(transport.settings)


def test_wrong_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    other = SshTransport(_settings(sshd, username=KEY_USER, password=None, private_key=_new_key(tmp_path)))
    with pytest.raises(PermanentConnectorError, match="refused the private key"):
        other.connect()


def test_nothing_listening_and_a_silent_host_are_unreachable(sshd: Sshd) -> None:
    with pytest.raises(PermanentConnectorError, match="connection refused"):
        SshTransport(_settings(sshd, port=free_port())).connect()

    # A host that accepts TCP and never speaks SSH (a black-holing firewall, a hung daemon).
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        settings = _settings(sshd, port=silent.getsockname()[1], connect_timeout=1.0)
        with pytest.raises(PermanentConnectorError, match=r"127\.0\.0\.1"):
            SshTransport(settings).connect()
    finally:
        silent.close()


def test_unknown_host_name(sshd: Sshd) -> None:
    with pytest.raises(PermanentConnectorError, match="unknown host"):
        SshTransport(_settings(sshd, host="no-such-host.invalid")).connect()


def test_missing_directory_and_permission_denied_change_nothing(sshd: Sshd, home: Path) -> None:
    with SshTransport(_settings(sshd)) as t:
        with pytest.raises(PermanentConnectorError, match=f"directory {home}/nope does not exist"):
            t.write_atomic(str(home / "nope" / "cert.pem"), b"x", 0o644)
        with pytest.raises(PermanentConnectorError, match=r"permission denied writing /etc/certfleet-test\.pem"):
            t.write_atomic("/etc/certfleet-test.pem", b"x", 0o644)
    assert not Path("/etc/certfleet-test.pem").exists()
    assert list(home.iterdir()) == []


def test_sudo_writes_root_owned_files_and_keeps_their_owner(sshd: Sshd, tmp_path: Path) -> None:
    root_dir = Path("/tmp") / f"certfleet-root-{os.getpid()}"
    root_dir.mkdir(mode=0o700, exist_ok=True)
    target = root_dir / "server.key"
    target.write_bytes(b"old")
    try:
        settings = _settings(sshd, username=SUDO_USER, use_sudo=True)
        with SshTransport(settings) as t:
            assert t.read(str(target)) == b"old"
            t.write_atomic(str(target), b"new secret", 0o600)
            t.copy(str(target), str(root_dir / "server.key.bak"))
            assert t.run("id -u", timeout=10).output.strip() == "0"
            assert t.read(str(root_dir / "absent")) is None
        assert target.read_bytes() == b"new secret"
        assert (target.stat().st_uid, stat.S_IMODE(target.stat().st_mode)) == (0, 0o600)
        assert sorted(p.name for p in root_dir.iterdir()) == ["server.key", "server.key.bak"]
        home = Path(pwd.getpwnam(SUDO_USER).pw_dir)
        assert not list(home.glob(".certfleet-upload-*"))  # the staging copy is gone

        refused = SshTransport(_settings(sshd, use_sudo=True))  # certfleet-pw may not sudo
        with pytest.raises(PermanentConnectorError, match="sudo refused"):
            refused.write_atomic(str(target), b"nope", 0o600)
        assert target.read_bytes() == b"new secret"
    finally:
        for p in root_dir.iterdir():
            p.unlink()
        root_dir.rmdir()


def test_a_command_that_hangs_is_cut_off(sshd: Sshd) -> None:
    with SshTransport(_settings(sshd)) as t, pytest.raises(PermanentConnectorError, match="did not finish within 1 s"):
        t.run("sleep 30", timeout=1)


def test_a_connection_dropped_mid_session_is_transient_and_the_next_call_reconnects(sshd: Sshd, home: Path) -> None:
    transport = SshTransport(_settings(sshd))
    transport.connect()
    for pid in _session_processes(sshd):
        with contextlib.suppress(ProcessLookupError):  # an earlier test's closing session may be gone already
            os.kill(pid, signal.SIGKILL)  # the server side of this session dies (a reset, a reboot)
    with pytest.raises(TransientConnectorError, match="connection lost"):
        transport.run("sleep 1; true", timeout=10)
    assert transport.run("echo back", timeout=10).output.strip() == "back"
    transport.close()


def test_the_cache_reuses_one_connection_per_server(sshd: Sshd) -> None:
    settings = _settings(sshd)
    first = cached_transport(101, settings)
    first.run("true", timeout=10)
    assert cached_transport(101, settings) is first
    changed = cached_transport(101, _settings(sshd, connect_timeout=3.0))
    assert changed is not first
    assert not first.is_open
    changed.run("true", timeout=10)
    assert close_cached_transports() == 1
    assert not changed.is_open


def test_many_threads_share_one_transport(sshd: Sshd, home: Path) -> None:
    errors: list[BaseException] = []
    with SshTransport(_settings(sshd)) as t:

        def work(n: int) -> None:
            try:
                t.write_atomic(str(home / f"f{n}"), str(n).encode(), 0o644)
                assert t.read(str(home / f"f{n}")) == str(n).encode()
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert errors == []
    assert sorted(p.name for p in home.iterdir()) == [f"f{n}" for n in range(8)]


def _new_key(tmp_path: Path) -> str:
    import subprocess

    path = tmp_path / "stray"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.read_text()


def _session_processes(sshd: Sshd) -> list[int]:
    """sshd's per-connection children (not the listener itself), found through /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == sshd.process.pid:
            pids.append(int(entry.name))
    assert pids, "the session has no sshd process"
    return pids
