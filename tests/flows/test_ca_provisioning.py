"""Each CA connector issues a certificate that certfleet then deploys to a real TLS listener.

The connector is created through the management service (as the dashboard does), the demo site's
certificate is pointed at it, and issue + deploy run for real (what provision-certificate does): order
written first, CA called, pending orders polled, certificate recorded, installed, and proven served by a TLS handshake.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from pydantic import SecretStr
from sqlalchemy import select

from certfleet.ca_admin import service
from certfleet.ca_admin.forms import AcmeForm, ADCSForm, AdvancedOptions, DigiCertForm, EmCAForm, EmSignForm
from certfleet.connectors.servers.probe import fetch_served_chain
from certfleet.flows.deployment import deploy_certificate
from certfleet.flows.issuance import issue_certificate
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector, Certificate, CertificateStatus, Order, OrderState
from certfleet.pki.parse import serial_hex
from tests.emulators.acme_env import Named
from tests.emulators.adcs import ADCSEmulator
from tests.emulators.digicert import DigiCertEmulator
from tests.emulators.emca import EmCAEmulator
from tests.emulators.emsign import EmSignEmulator
from tests.emulators.fixtures import EAB_KID, EMCA_PFX_PASSWORD, AcmeStack
from tests.emulators.pki import TlsIdentity
from tests.flows.conftest import Site


@dataclass
class Attached:
    connector_id: int
    issuer: x509.Name | None  # the issuing CA the served leaf must name; None: read from the CA at the end
    pending: bool = False  # the CA made certfleet poll
    check: Callable[[], None] = lambda: None


def _attach(site: Site, form: Any) -> int:
    with session_scope() as s:
        connector_id = service.create_connector(s, form, actor="test")
        repo.get(s, Certificate, site.certificate_id).ca_connector_id = connector_id
    return connector_id


class _FileServer:
    """Plain HTTP serving a directory: the web server whose web root answers http-01."""

    def __init__(self, root: Path, port: int) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    served: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        _QuietHandler.served.append(self.path)
        super().do_GET()


KINDS = [
    "digicert",
    "digicert-pending",
    "adcs-enterprise",
    "adcs-standalone",
    "emsign",
    "emca-4.3.1",
    "emca-5",
    "acme-http01-bot",
    "acme-http01-webroot",
    "acme-dns01",
]


@pytest.fixture(params=KINDS)
def attached(
    request: pytest.FixtureRequest, site: Site, emulator_tls: TlsIdentity, tmp_path: Path
) -> Iterator[Attached]:
    kind: str = request.param
    tls = AdvancedOptions(tls_ca_bundle=emulator_tls.ca_pem, timeout_s=10)
    if kind.startswith("digicert"):
        dc = DigiCertEmulator(
            emulator_tls, mode="pending" if kind.endswith("pending") else "issue", auto_approve_after=2
        )
        dc.start()
        form = DigiCertForm(
            name="DigiCert",
            api_base_url=dc.base_url,
            api_key=SecretStr(dc.api_key),
            organization_id=dc.organization_id,
            server_platform_id=45,
            container_id=7,
            certificate_validity=90,
            payment_type="Profile",
            advanced=tls,
        )
        yield Attached(_attach(site, form), dc.ca.intermediate.subject, pending=dc.mode == "pending")
        body = next(iter(dc.orders.values())).body
        assert (body["payment_method"], body["container"], body["order_validity"]) == (
            "profile",
            {"id": 7},
            {"days": 30},
        )
        dc.stop()
    elif kind.startswith("adcs"):
        standalone = kind.endswith("standalone")
        adcs = ADCSEmulator(
            emulator_tls, tmp_path / "adcs", setup="standalone" if standalone else "enterprise", auto_approve_after=1
        ).start()
        form = ADCSForm(
            name="AD CS",
            base_url=adcs.base_url,
            ca_setup_type="Standalone CA" if standalone else "Enterprise CA",
            username=adcs.login,
            password=SecretStr(adcs.password),
            template=None if standalone else "WebServer",
            advanced=tls,
        )
        yield Attached(_attach(site, form), adcs.ca.intermediate.subject, pending=standalone)
        adcs.stop()
    elif kind == "emsign":
        em = EmSignEmulator(emulator_tls, mode="pending", auto_verify_after=1).start()
        form = EmSignForm(
            name="emSign",
            api_base_url=em.base_url,
            account_number=em.account_number,
            access_key=SecretStr(em.access_key),
            full_name="certfleet Operations",
            email="pki-ops@example.test",
            advanced=tls,
        )

        def dcv_recorded() -> None:
            with session_scope() as s:
                assert repo.get(s, Certificate, site.certificate_id).dcv_status == "Verified"

        yield Attached(_attach(site, form), em.ca.intermediate.subject, pending=True, check=dcv_recorded)
        em.stop()
    elif kind.startswith("emca"):
        client_file, client_cert = request.getfixturevalue("emca_client_file")
        version = kind.split("-", 1)[1]
        emca = EmCAEmulator(emulator_tls, client_cert, version=version, password=EMCA_PFX_PASSWORD).start()
        form = EmCAForm(
            name="emCA",
            version=version,
            base_url=emca.base_url,
            username=emca.username,
            issuing_ca=emca.issuing_ca,
            subscriber_id=emca.subscriber_id,
            password=SecretStr(EMCA_PFX_PASSWORD),
            uploaded_file=client_file,
            uploaded_file_name="emca-client.p12",
            advanced=tls,
        )
        yield Attached(_attach(site, form), emca.ca.intermediate.subject)
        emca.stop()
    else:
        stack: AcmeStack = request.getfixturevalue("acme_dns_stack" if kind == "acme-dns01" else "acme_http_stack")
        stack.reset()
        common: dict[str, Any] = {
            "name": "ACME",
            "directory_url": stack.pebble.directory_url,
            "contact_email": "pki-ops@example.test",
            "eab_key_id": EAB_KID,
            "eab_hmac_key": SecretStr(stack.eab_hmac),
            "advanced": tls,
        }
        webserver = None
        if kind == "acme-dns01":
            named = stack.dns
            assert isinstance(named, Named)
            form = AcmeForm(
                **common,
                challenge_type="dns-01",
                dns_server="127.0.0.1",
                dns_port=named.port,
                tsig_key_name=named.key_name,
                tsig_secret=SecretStr(named.secret),
            )
        elif kind == "acme-http01-webroot":
            webroot = tmp_path / "webroot"
            webroot.mkdir()
            webserver = _FileServer(webroot, stack.http_port)
            _QuietHandler.served.clear()
            form = AcmeForm(**common, challenge_type="http-01", http01_mode="webroot", http01_webroot=str(webroot))
        else:
            form = AcmeForm(**common, challenge_type="http-01", http01_listen=f"127.0.0.1:{stack.http_port}")

        def account_kept() -> None:
            with session_scope() as s:
                row = repo.get(s, CAConnector, connector_id)
                assert str(row.settings.get("acme_account_uri", "")).startswith("https://127.0.0.1")
                assert "acme_account_key_pem" in (row.credentials or "")
            if kind == "acme-http01-webroot":
                assert any("/.well-known/acme-challenge/" in p for p in _QuietHandler.served)
                assert list((tmp_path / "webroot/.well-known/acme-challenge").iterdir()) == []  # cleaned up

        connector_id = _attach(site, form)
        root = x509.load_pem_x509_certificate(stack.pebble.intermediate_pem().encode())
        yield Attached(connector_id, root.subject, check=account_kept)
        if webserver is not None:
            webserver.stop()


def test_each_ca_issues_a_certificate_that_certfleet_deploys(site: Site, attached: Attached) -> None:
    placeholder = site.served_serial()
    # What provision-certificate does: issue here, then the deployment (on the bot, in production).
    issue_certificate(site.certificate_id)
    outcome = deploy_certificate(site.certificate_id)
    assert list(outcome.values()) == ["Deployed"]

    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        (order,) = s.scalars(select(Order).where(Order.certificate_id == cert.id))
        assert cert.status is CertificateStatus.DEPLOYED
        assert cert.ca_connector_id == attached.connector_id
        assert order.state is OrderState.ISSUED
        assert order.ca_order_id
        assert cert.ca_order_id == order.ca_order_id
        states = [h["state"] for h in order.history]
        assert ("Pending" in states) is attached.pending
        serial = cert.serial_number

    served = fetch_served_chain("127.0.0.1", site.host.port, server_name=site.host.fqdn, timeout=5)[0]
    assert serial_hex(served.serial_number) == serial != placeholder
    assert served.issuer == attached.issuer
    assert site.host.fqdn in served.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    attached.check()
