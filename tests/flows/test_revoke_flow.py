"""revoke-certificate: the issuing connector revokes, the certificate becomes Revoked with reason and time, the
built-in CA's CRL (served by the dashboard over HTTP) lists the serial, and a re-run never fails."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from sqlalchemy import select

from certfleet.connectors.errors import TransientConnectorError
from certfleet.dashboard.server import DashboardThread
from certfleet.demo.listener import free_port
from certfleet.flows.issuance import issue_certificate
from certfleet.flows.revocation import revoke_certificate
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, CAConnector, Certificate, CertificateStatus
from certfleet.pki.parse import load_material
from certfleet.settings import get_settings
from certfleet.tasks import revocation as revocation_tasks
from certfleet.tasks.build import build_ca as real_build_ca
from certfleet.tasks.build import built_in_crl
from tests.emulators.fixtures import AcmeStack
from tests.emulators.pki import TlsIdentity
from tests.flows.conftest import Site, use_acme_connector


def _certificate(connector_id: int, name: str = "revoke.example.test") -> int:
    with session_scope() as s:
        cert = Certificate(
            common_name=name, sans=[name], ca_connector_id=connector_id, key_spec="ec-p256", validity_days=30
        )
        s.add(cert)
        s.flush()
        return cert.id


def _leaf(cert_id: int) -> x509.Certificate:
    with session_scope() as s:
        pem = repo.get(s, Certificate, cert_id).pem_chain
    assert pem is not None
    return load_material(pem.encode()).certificates[0]


def _fetch(url: str) -> tuple[int, str, bytes]:
    """A plain HTTP GET with no login, as a relying party fetches a CRL."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    conn.request("GET", parts.path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, response.getheader("content-type") or "", body


@pytest.fixture
def dashboard(boot: Bootstrapped, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The dashboard on a free port, and CERTFLEET_PUBLIC_URL naming it (the built-in CA's CRL point)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("CERTFLEET_PUBLIC_URL", base)
    get_settings.cache_clear()
    server = DashboardThread("127.0.0.1", port)
    server.start()
    yield base
    server.stop()
    get_settings.cache_clear()


def test_built_in_ca_revokes_and_its_crl_served_over_http_lists_the_serial(boot: Bootstrapped, dashboard: str) -> None:
    cert_id = _certificate(boot.ca_connector_id)
    serial = issue_certificate(cert_id)
    leaf = _leaf(cert_id)
    (point,) = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert point.full_name is not None
    crl_url = point.full_name[0].value
    assert crl_url == f"{dashboard}/crl/{boot.ca_connector_id}.crl"  # CERTFLEET_PUBLIC_URL + the route below

    status, _, body = _fetch(crl_url)
    assert status == 200
    assert x509.load_der_x509_crl(body).get_revoked_certificate_by_serial_number(leaf.serial_number) is None
    assert _fetch(crl_url)[2] == body  # kept, not signed again for each request, until a revocation is added

    assert revoke_certificate(cert_id, "keyCompromise") == serial
    with session_scope() as s:
        cert = repo.get(s, Certificate, cert_id)
        assert cert.status is CertificateStatus.REVOKED
        assert cert.revocation_reason == "keyCompromise"
        assert cert.revoked_at is not None
        assert abs(cert.revoked_at - datetime.now(UTC)) < timedelta(minutes=5)
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "revoke")).all()
        assert [e.detail for e in events] == [f"serial {serial}; keyCompromise"]
        issuing = x509.load_pem_x509_certificate(
            repo.get(s, CAConnector, boot.ca_connector_id).settings["issuing_cert_pem"].encode()
        )

    status, content_type, body = _fetch(crl_url)  # no login: a public route
    assert (status, content_type) == (200, "application/pkix-crl")
    crl = x509.load_der_x509_crl(body)
    assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    assert crl.issuer == leaf.issuer
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise


def test_a_rerun_is_done_not_failed_and_keeps_the_first_revocation(boot: Bootstrapped) -> None:
    cert_id = _certificate(boot.ca_connector_id)
    serial = issue_certificate(cert_id)
    revoke_certificate(cert_id, "superseded")
    with session_scope() as s:
        first = repo.get(s, Certificate, cert_id).revoked_at
    assert revoke_certificate(cert_id, "superseded") == serial  # already Revoked: nothing to do
    # A run that crashed after the CA revoked, before recording: the CA already lists it; the re-run records it.
    with session_scope() as s:
        cert = repo.get(s, Certificate, cert_id)
        cert.status, cert.revocation_reason, cert.revoked_at = CertificateStatus.ISSUED, None, None
    assert revoke_certificate(cert_id, "superseded") == serial
    with session_scope() as s:
        cert = repo.get(s, Certificate, cert_id)
        assert cert.status is CertificateStatus.REVOKED
        assert cert.revocation_reason == "superseded"
        assert first is not None
        assert cert.revoked_at is not None
        assert cert.revoked_at >= first

        crl = x509.load_der_x509_crl(built_in_crl(s, repo.get(s, CAConnector, boot.ca_connector_id)))
    assert [r.serial_number for r in crl] == [int(serial, 16)]  # listed once


def test_a_serial_replaced_by_a_rotation_is_revoked_and_the_certificate_stays_issued(boot: Bootstrapped) -> None:
    cert_id = _certificate(boot.ca_connector_id)
    old = issue_certificate(cert_id)
    new = issue_certificate(cert_id)  # the rotation: a new key and serial
    assert revoke_certificate(cert_id, "superseded", old) == old
    with session_scope() as s:
        cert = repo.get(s, Certificate, cert_id)
        assert (cert.status, cert.serial_number, cert.revocation_reason) == (CertificateStatus.ISSUED, new, None)

        crl = x509.load_der_x509_crl(built_in_crl(s, repo.get(s, CAConnector, boot.ca_connector_id)))
    assert [r.serial_number for r in crl] == [int(old, 16)]


def test_a_new_issue_after_a_revocation_clears_it(boot: Bootstrapped) -> None:
    cert_id = _certificate(boot.ca_connector_id)
    issue_certificate(cert_id)
    revoke_certificate(cert_id, "cessationOfOperation")
    issue_certificate(cert_id)
    with session_scope() as s:
        cert = repo.get(s, Certificate, cert_id)
        assert (cert.status, cert.revocation_reason, cert.revoked_at) == (CertificateStatus.ISSUED, None, None)


def test_acme_revokes_at_pebble_and_a_retry_after_pebble_revoked_is_done(
    site: Site, acme_http_stack: AcmeStack, emulator_tls: TlsIdentity
) -> None:
    stack = acme_http_stack
    stack.reset()
    use_acme_connector(site, stack, emulator_tls, "ACME", stack.pebble.directory_url)
    serial = issue_certificate(site.certificate_id)
    assert revoke_certificate(site.certificate_id, "keyCompromise") == serial
    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        assert (cert.status, cert.revocation_reason) == (CertificateStatus.REVOKED, "keyCompromise")
        cert.status, cert.revocation_reason, cert.revoked_at = CertificateStatus.ISSUED, None, None
    # The re-run calls Pebble again, which answers urn:ietf:params:acme:error:alreadyRevoked: done, not failed.
    assert revoke_certificate(site.certificate_id, "keyCompromise") == serial
    with session_scope() as s:
        assert repo.get(s, Certificate, site.certificate_id).status is CertificateStatus.REVOKED


class _FlakyCA:
    """The built-in CA behind a CA that first answers 503: the revoke task must retry, not fail."""

    def __init__(self, real: Any) -> None:
        self.real, self.calls = real, 0

    def revoke(self, serial_number: int, reason: x509.ReasonFlags) -> None:
        self.calls += 1
        if self.calls == 1:
            raise TransientConnectorError("CA answered 503")
        self.real.revoke(serial_number, reason)


def test_a_transient_ca_failure_is_retried(boot: Bootstrapped, monkeypatch: pytest.MonkeyPatch) -> None:
    cert_id = _certificate(boot.ca_connector_id)
    issue_certificate(cert_id)
    flaky: list[_FlakyCA] = []

    def build(session: Any, connector: CAConnector) -> _FlakyCA:
        if not flaky:
            flaky.append(_FlakyCA(real_build_ca(session, connector)))
        else:
            flaky[0].real = real_build_ca(session, connector)  # the retry's own unit of work
        return flaky[0]

    monkeypatch.setattr(revocation_tasks, "build_ca", build)
    revoke_certificate(cert_id, "affiliationChanged")
    assert flaky[0].calls == 2
    with session_scope() as s:
        assert repo.get(s, Certificate, cert_id).status is CertificateStatus.REVOKED


def test_renewal_leaves_a_revoked_certificate_alone(boot: Bootstrapped) -> None:
    from certfleet.models.orm import DeploymentTarget, Server, ServerConnection
    from certfleet.tasks.renewal import find_due

    cert_id = _certificate(boot.ca_connector_id)
    with session_scope() as s:
        server = Server(description="web", host="127.0.0.1", ports=[8443], connection=ServerConnection.LOCAL,
                        server_type="nginx", bot_id=boot.local_bot_id)  # fmt: skip
        s.add(server)
        s.flush()
        s.add(DeploymentTarget(certificate_id=cert_id, server_id=server.id, port=8443,
                               cert_path="/tmp/c.pem", key_path="/tmp/k.pem"))  # fmt: skip
    issue_certificate(cert_id)
    inside_window = datetime.now(UTC) + timedelta(days=29)  # 30-day certificate, 30-day renewal window
    assert [d.certificate_id for d in find_due.fn(inside_window)] == [cert_id]
    revoke_certificate(cert_id, "cessationOfOperation")
    assert find_due.fn(inside_window) == []
