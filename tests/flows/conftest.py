"""Flow tests run real flows against Prefect's test server."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _prefect(prefect_harness: None) -> None:
    return None


from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from certfleet.connectors.servers.probe import fetch_served_chain  # noqa: E402
from certfleet.demo.fleet import DemoHost, plan_fleet, register_fleet  # noqa: E402
from certfleet.demo.listener import ListenerProcess  # noqa: E402
from certfleet.models.bootstrap import Bootstrapped, initialize  # noqa: E402
from certfleet.pki.parse import serial_hex  # noqa: E402


@pytest.fixture
def boot(database: str) -> Bootstrapped:
    return initialize()


@dataclass
class Site:
    """A real TLS listener registered as a local-agent server with one certificate and one target."""

    host: DemoHost
    certificate_id: int
    listener: ListenerProcess

    def served_serial(self) -> str:
        leaf = fetch_served_chain("127.0.0.1", self.host.port, server_name=self.host.fqdn, timeout=5)[0]
        return serial_hex(leaf.serial_number)

    def files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in (self.host.cert_path, self.host.key_path)}


@pytest.fixture
def site(boot: Bootstrapped, tmp_path: Path) -> Iterator[Site]:
    host = plan_fleet(tmp_path / "fleet", 1)[0]
    (cert_id,) = register_fleet([host], ca_connector_id=boot.ca_connector_id, bot_id=boot.local_bot_id)
    listener = host.listener()
    listener.launch()
    try:
        yield Site(host, cert_id, listener)
    finally:
        listener.stop()
