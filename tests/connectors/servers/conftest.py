"""A real sshd for the module and a password login to it: what the handler tests over SSH share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from certfleet.connectors.servers.ssh import SshSettings, SshTransport
from tests.integration.sshd import PASSWORD, PASSWORD_USER, Sshd, running_sshd


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


@pytest.fixture
def transport(sshd: Sshd) -> Iterator[SshTransport]:
    settings = SshSettings(
        host="127.0.0.1", port=sshd.port, username=PASSWORD_USER, password=PASSWORD, host_key=sshd.host_key_line
    )
    with SshTransport(settings) as t:
        yield t
