"""Flow tests run real flows against Prefect's test server."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _prefect(prefect_harness: None) -> None:
    return None


from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from pydantic import SecretStr  # noqa: E402

from certfleet.ca_admin import service  # noqa: E402
from certfleet.ca_admin.forms import AcmeForm, AdvancedOptions  # noqa: E402
from certfleet.connectors.servers.probe import fetch_served_chain  # noqa: E402
from certfleet.demo.fleet import DemoHost, plan_fleet, register_fleet  # noqa: E402
from certfleet.demo.listener import ListenerProcess  # noqa: E402
from certfleet.models import repo  # noqa: E402
from certfleet.models.bootstrap import Bootstrapped, initialize  # noqa: E402
from certfleet.models.db import session_scope  # noqa: E402
from certfleet.models.orm import Certificate  # noqa: E402
from certfleet.pki.parse import serial_hex  # noqa: E402
from tests.emulators.fixtures import EAB_KID, AcmeStack  # noqa: E402
from tests.emulators.pki import TlsIdentity  # noqa: E402


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


def use_acme_connector(site: Site, stack: AcmeStack, tls: TlsIdentity, name: str, directory_url: str) -> int:
    """An ACME connector on the test stack (http-01 on the stack's responder port) issuing `site`'s certificate."""
    form = AcmeForm(
        name=name,
        directory_url=directory_url,
        contact_email="pki-ops@example.test",
        eab_key_id=EAB_KID,
        eab_hmac_key=SecretStr(stack.eab_hmac),
        advanced=AdvancedOptions(tls_ca_bundle=tls.ca_pem, timeout_s=10),
        challenge_type="http-01",
        http01_listen=f"127.0.0.1:{stack.http_port}",
    )
    with session_scope() as s:
        connector_id = service.create_connector(s, form, actor="test")
        repo.get(s, Certificate, site.certificate_id).ca_connector_id = connector_id
    return connector_id
