"""The SSH connection drops in the middle of an upload (a TCP proxy in front of the real sshd cuts both sides
after 1 MiB of a 4 MiB file): the write fails as a connector error, the file at the real path is the old one,
and the next write through a new connection puts the whole new file in place and removes the partial copy."""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from certfleet.connectors.errors import TransientConnectorError
from certfleet.connectors.servers.ssh import SshSettings, SshTransport
from certfleet.demo.listener import free_port
from tests.integration.sshd import PASSWORD, PASSWORD_USER, SUDO_USER, Sshd, running_sshd, scratch_dir

CUT_AFTER = 1024 * 1024  # bytes from the client, then the connection is dropped


class DroppingProxy:
    """Forwards one TCP connection at a time to sshd; with `armed`, cuts it after CUT_AFTER client bytes."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.armed = False
        self.dropped = 0
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            cut = self.armed
            for src, dst, counted in ((client, server, cut), (server, client, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, counted, (client, server)), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, counted: bool, pair: tuple[socket.socket, ...]) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if counted and sent + len(data) > CUT_AFTER:
                    self.dropped += 1
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in pair:  # the connection is gone, both ways
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


@pytest.fixture
def proxy(sshd: Sshd) -> Iterator[DroppingProxy]:
    p = DroppingProxy(sshd.port)
    yield p
    p.close()


def _settings(sshd: Sshd, port: int, username: str = PASSWORD_USER) -> SshSettings:
    return SshSettings(
        host="127.0.0.1",
        port=port,
        username=username,
        use_sudo=username == SUDO_USER,
        password=PASSWORD,
        host_key=sshd.host_key_line,
        connect_timeout=5.0,
        io_timeout=10.0,
    )


def test_connection_dropped_mid_upload_leaves_the_old_file(sshd: Sshd, proxy: DroppingProxy) -> None:
    directory = scratch_dir(PASSWORD_USER)
    target = directory / "server.key"
    target.write_bytes(b"old key")
    os.chown(target, *_owner(directory))
    new = os.urandom(4 * 1024 * 1024)

    proxy.armed = True
    with (
        pytest.raises(TransientConnectorError, match="connection lost"),
        SshTransport(_settings(sshd, proxy.port)) as t,
    ):
        t.write_atomic(str(target), new, 0o600)
    assert proxy.dropped == 1
    assert target.read_bytes() == b"old key"  # never a partial file at the real path
    partial = [p for p in directory.iterdir() if p.name != "server.key"]
    assert all(p.name.startswith(".server.key.") and p.name.endswith(".certfleet-tmp") for p in partial)

    proxy.armed = False  # the next run, through a new connection
    with SshTransport(_settings(sshd, proxy.port)) as t:
        t.write_atomic(str(target), new, 0o600)
    assert target.read_bytes() == new
    assert sorted(p.name for p in directory.iterdir()) == ["server.key"]  # the partial copy is gone too


def test_connection_dropped_mid_sudo_upload_leaves_no_staging_copy(sshd: Sshd, proxy: DroppingProxy) -> None:
    """With sudo the file goes to the login user's home first: that copy (a key, often) does not stay behind."""
    home = Path(pwd.getpwnam(SUDO_USER).pw_dir)
    before = sorted(p.name for p in home.glob(".certfleet-upload-*"))
    directory = scratch_dir(SUDO_USER)
    target = directory / "server.key"
    target.write_bytes(b"old key")
    proxy.armed = True
    with (
        pytest.raises(TransientConnectorError, match="connection lost"),
        SshTransport(_settings(sshd, proxy.port, SUDO_USER)) as t,
    ):
        t.write_atomic(str(target), os.urandom(4 * 1024 * 1024), 0o600)
    assert proxy.dropped == 1
    assert target.read_bytes() == b"old key"
    assert sorted(p.name for p in home.glob(".certfleet-upload-*")) == before


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid
