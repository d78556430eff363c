"""pytest fixtures for the CA emulators and the ACME stack; import them into a conftest with `from ... import *`."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certfleet.ca_admin.forms import ConnectorFormBase
from certfleet.ca_admin.runtime import StoredConnector
from certfleet.demo.listener import free_port
from tests.emulators.acme_env import AcmeFaultProxy, ChallTestSrv, Named, Pebble
from tests.emulators.adcs import ADCSEmulator
from tests.emulators.azure_ad import AzureADEmulator
from tests.emulators.digicert import DigiCertEmulator
from tests.emulators.emca import EmCAEmulator, make_client_identity
from tests.emulators.emsign import EmSignEmulator
from tests.emulators.pki import TlsIdentity
from tests.emulators.server import Faults

EMCA_PFX_PASSWORD = "emCA-pass-123"  # the emulator's service account password also protects the PKCS#12
EAB_KID = "certfleet-kid-1"


def stored(form: ConnectorFormBase, connector_id: int | None = None) -> StoredConnector:
    """What create_connector would store for a form, without a database."""
    return StoredConnector(
        id=connector_id,
        kind=str(getattr(form, "kind")),  # noqa: B009
        name=form.name,
        base_url=form.url(),
        settings=form.public_values(),
        credentials=form.secret_values(),
        default_validity_days=int(getattr(form, "certificate_validity", 90)),
    )


@pytest.fixture(scope="session")
def emulator_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsIdentity:
    return TlsIdentity(tmp_path_factory.mktemp("emulator-tls"))


@pytest.fixture
def digicert_emulator(emulator_tls: TlsIdentity) -> Iterator[DigiCertEmulator]:
    emulator = DigiCertEmulator(emulator_tls).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def emsign_emulator(emulator_tls: TlsIdentity) -> Iterator[EmSignEmulator]:
    emulator = EmSignEmulator(emulator_tls).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def emca_client_file() -> tuple[bytes, object]:
    return make_client_identity(EMCA_PFX_PASSWORD)


@pytest.fixture
def emca_emulator(emulator_tls: TlsIdentity, emca_client_file: tuple[bytes, object]) -> Iterator[EmCAEmulator]:
    emulator = EmCAEmulator(emulator_tls, emca_client_file[1], password=EMCA_PFX_PASSWORD).start()  # type: ignore[arg-type]
    yield emulator
    emulator.stop()


@pytest.fixture
def azure_ad_emulator(emulator_tls: TlsIdentity) -> Iterator[AzureADEmulator]:
    emulator = AzureADEmulator(emulator_tls).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def adcs_emulator(emulator_tls: TlsIdentity, tmp_path: Path) -> Iterator[ADCSEmulator]:
    emulator = ADCSEmulator(emulator_tls, tmp_path / "adcs").start()
    yield emulator
    emulator.stop()


@dataclass
class AcmeStack:
    """Pebble (EAB required) resolving every name to 127.0.0.1, our http-01 responder port, a fault proxy."""

    pebble: Pebble
    proxy: AcmeFaultProxy
    http_port: int
    eab_hmac: str
    dns: ChallTestSrv | Named

    def reset(self) -> None:
        self.proxy.faults = Faults()
        self.proxy.hold_processing = False
        self.proxy.orders_placed = 0
        self.proxy.lose_order_answers = 0
        self.proxy.reset_ari()


def _eab_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


# Module scope: each test module that imports these fixtures gets its own stack, stopped when the module ends.
@pytest.fixture(scope="module")
def acme_http_stack(emulator_tls: TlsIdentity, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcmeStack]:
    root = tmp_path_factory.mktemp("acme-http")
    dns = ChallTestSrv(root / "challtestsrv").start()
    http_port = free_port()
    hmac = _eab_key()
    pebble = Pebble(
        root / "pebble",
        emulator_tls,
        f"127.0.0.1:{dns.dns_port}",
        http_port,
        eab_keys={EAB_KID: hmac},
        blocklist=("blocked.example.test",),
    ).start()
    proxy = AcmeFaultProxy(emulator_tls, pebble).start()
    yield AcmeStack(pebble, proxy, http_port, hmac, dns)
    proxy.stop()
    pebble.stop()
    dns.stop()


@pytest.fixture(scope="module")
def acme_dns_stack(emulator_tls: TlsIdentity, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcmeStack]:
    """Pebble resolving through BIND, whose zones take TSIG-signed RFC 2136 updates (dns-01)."""
    root = tmp_path_factory.mktemp("acme-dns")
    named = Named(root / "named", zones=("example.test", "demo.certfleet.test")).start()
    hmac = _eab_key()
    pebble = Pebble(
        root / "pebble", emulator_tls, f"127.0.0.1:{named.port}", free_port(), eab_keys={EAB_KID: hmac}
    ).start()
    proxy = AcmeFaultProxy(emulator_tls, pebble).start()
    yield AcmeStack(pebble, proxy, pebble.http_port, hmac, named)
    proxy.stop()
    pebble.stop()
    named.stop()
