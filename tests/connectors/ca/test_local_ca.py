"""The built-in CA issues certificates that a TLS client (and a mail client) accepts, and revokes them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import DNSName
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from certfleet.connectors.base import IssueRequest, Profile
from certfleet.connectors.ca.local import CAMaterial, LocalCA, create_ca_material
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.keys import KeySpec, generate_private_key
from certfleet.pki.parse import load_material

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class MemoryRevocations:
    def __init__(self) -> None:
        self.rows: list[tuple[int, x509.ReasonFlags, datetime]] = []

    def add(self, serial_number: int, reason: x509.ReasonFlags, at: datetime) -> None:
        self.rows.append((serial_number, reason, at))

    def revoked(self) -> Sequence[tuple[int, x509.ReasonFlags, datetime]]:
        return self.rows


@pytest.fixture(scope="module")
def material() -> CAMaterial:
    return create_ca_material("Test", now=NOW - timedelta(days=1))


@pytest.fixture
def ca(material: CAMaterial) -> LocalCA:
    return LocalCA(material, MemoryRevocations(), crl_url="http://crl.example.test/test.crl", clock=lambda: NOW)


def _request(cn: str, sans: list[str], profile: Profile = Profile.TLS_SERVER, **kw: object) -> IssueRequest:
    key = generate_private_key(KeySpec(algorithm="ec", size=256))
    return IssueRequest(csr_pem=csr_to_pem(build_csr(key, cn, sans)), profile=profile, idempotency_key="k", **kw)


def test_tls_certificate_verifies_as_a_server_certificate(ca: LocalCA, material: CAMaterial) -> None:
    result = ca.issue(_request("www.example.test", ["www.example.test", "api.example.test", "192.0.2.7"]))
    assert result.pem_chain is not None
    leaf, issuing, root = load_material(result.pem_chain.encode()).certificates
    assert issuing == material.issuing_cert
    assert root == material.root_cert
    verifier = (
        PolicyBuilder()
        .store(Store([material.root_cert]))
        .time(NOW + timedelta(hours=1))
        .build_server_verifier(DNSName("api.example.test"))
    )
    chain = verifier.verify(leaf, [issuing])
    assert chain[-1] == material.root_cert
    assert result.ca_order_id == f"local-{leaf.serial_number:x}"


def test_tls_certificate_extensions(ca: LocalCA) -> None:
    result = ca.issue(_request("www.example.test", ["www.example.test", "192.0.2.7"], validity_days=30))
    leaf = load_material((result.pem_chain or "").encode()).certificates[0]
    ext = leaf.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ext.get_extension_for_class(x509.BasicConstraints).critical
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = ext.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature
    assert not ku.key_cert_sign
    assert not ku.key_encipherment
    sans = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["www.example.test"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["192.0.2.7"]
    cdp = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name == [x509.UniformResourceIdentifier("http://crl.example.test/test.crl")]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "www.example.test"
    assert leaf.not_valid_after_utc == NOW + timedelta(days=30)
    assert leaf.not_valid_before_utc <= NOW


def test_rsa_key_gets_key_encipherment(ca: LocalCA) -> None:
    key = generate_private_key(KeySpec(algorithm="rsa", size=2048))
    request = IssueRequest(csr_pem=csr_to_pem(build_csr(key, "rsa.example.test")), idempotency_key="r")
    leaf = load_material((ca.issue(request).pem_chain or "").encode()).certificates[0]
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment


def test_smime_certificate(ca: LocalCA) -> None:
    result = ca.issue(_request("Alice Example", ["alice@example.test"], Profile.SMIME))
    leaf = load_material((result.pem_chain or "").encode()).certificates[0]
    eku = list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.RFC822Name) == ["alice@example.test"]


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        ({"cn": "alice@example.test", "sans": ["alice@example.test"]}, "needs at least one DNS or IP SAN"),
        ({"cn": "www.example.test", "sans": [], "profile": Profile.SMIME}, "needs an email address SAN"),
        ({"cn": "www.example.test", "sans": [], "validity_days": 400}, "exceeds 398"),
        ({"cn": "www.example.test", "sans": [], "validity_days": 0}, "is not positive"),
    ],
)
def test_unusable_requests_are_refused(ca: LocalCA, request_kwargs: dict[str, object], message: str) -> None:
    cn = str(request_kwargs.pop("cn"))
    sans = list(request_kwargs.pop("sans"))  # type: ignore[call-overload]
    with pytest.raises(PermanentConnectorError, match=message):
        ca.issue(_request(cn, sans, **request_kwargs))  # type: ignore[arg-type]


def test_garbage_csr_is_refused(ca: LocalCA) -> None:
    with pytest.raises(PermanentConnectorError, match="the CSR is not usable"):
        ca.issue(IssueRequest(csr_pem="-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", idempotency_key="g"))


def test_revoke_publishes_a_signed_crl(ca: LocalCA, material: CAMaterial) -> None:
    leaf = load_material((ca.issue(_request("a.example.test", [])).pem_chain or "").encode()).certificates[0]
    other = load_material((ca.issue(_request("b.example.test", [])).pem_chain or "").encode()).certificates[0]
    ca.revoke(leaf.serial_number, x509.ReasonFlags.key_compromise)
    crl = ca.crl(number=7)
    assert crl.is_signature_valid(material.issuing_cert.public_key())  # type: ignore[arg-type]
    assert crl.issuer == material.issuing_cert.subject
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(other.serial_number) is None
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7


def test_material_round_trips_through_storage(material: CAMaterial) -> None:
    loaded = CAMaterial.load(material.public_part(), material.secret_part())
    assert loaded.root_cert == material.root_cert
    assert loaded.issuing_cert == material.issuing_cert
    pub = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert loaded.issuing_key.public_key().public_bytes(*pub) == material.issuing_key.public_key().public_bytes(*pub)
    assert "PRIVATE KEY" not in str(material.public_part())
    assert "PRIVATE KEY" not in repr(material)


def test_damaged_material_gives_a_clear_error(material: CAMaterial) -> None:
    with pytest.raises(PermanentConnectorError, match="stored keys are damaged"):
        CAMaterial.load(material.public_part(), {"root_key_pem": "x"})


def test_ca_hierarchy(material: CAMaterial) -> None:
    root_bc = material.root_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    issuing_bc = material.issuing_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (root_bc.ca, root_bc.path_length) == (True, 1)
    assert (issuing_bc.ca, issuing_bc.path_length) == (True, 0)
    assert material.issuing_cert.issuer == material.root_cert.subject
    material.issuing_cert.verify_directly_issued_by(material.root_cert)
