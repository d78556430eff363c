import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from certfleet.pki.csr import build_csr, csr_sans, csr_to_pem, load_csr
from certfleet.pki.errors import CertificateFormatError

from .conftest import PKI


@pytest.fixture(scope="module")
def key(pki: PKI) -> rsa.RSAPrivateKey:
    return pki.rsa_key()


def san_extension(csr: x509.CertificateSigningRequest) -> x509.Extension[x509.SubjectAlternativeName]:
    return csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_san_types_are_detected_and_cn_is_added_first(key: rsa.RSAPrivateKey) -> None:
    csr = build_csr(
        key,
        "example.com",
        ["www.example.com", "*.example.com", "192.0.2.1", "2001:db8::1", "admin@example.com"],
        organization="Example Corp",
    )
    assert list(san_extension(csr).value) == [
        x509.DNSName("example.com"),
        x509.DNSName("www.example.com"),
        x509.DNSName("*.example.com"),
        x509.IPAddress(ipaddress.IPv4Address("192.0.2.1")),
        x509.IPAddress(ipaddress.IPv6Address("2001:db8::1")),
        x509.RFC822Name("admin@example.com"),
    ]
    assert san_extension(csr).critical is False
    assert csr_sans(csr) == [
        "example.com",
        "www.example.com",
        "*.example.com",
        "192.0.2.1",
        "2001:db8::1",
        "admin@example.com",
    ]
    assert csr.subject.rfc4514_string() == "CN=example.com,O=Example Corp"
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    assert csr.is_signature_valid
    assert csr.public_key() == key.public_key()


def test_cn_already_listed_keeps_the_given_order_and_duplicates_go(key: rsa.RSAPrivateKey) -> None:
    csr = build_csr(key, "b.example.com", ["a.example.com", "B.Example.com", "b.example.com", "a.example.com"])
    assert csr_sans(csr) == ["a.example.com", "b.example.com"]


@pytest.mark.parametrize(
    ("common_name", "expected"),
    [
        ("10.0.0.7", [x509.IPAddress(ipaddress.IPv4Address("10.0.0.7")), x509.DNSName("other.example.com")]),
        ("fe80::1", [x509.IPAddress(ipaddress.IPv6Address("fe80::1")), x509.DNSName("other.example.com")]),
        ("ops@example.com", [x509.RFC822Name("ops@example.com"), x509.DNSName("other.example.com")]),
        ("*.apps.example.com", [x509.DNSName("*.apps.example.com"), x509.DNSName("other.example.com")]),
        ("Payments Service", [x509.DNSName("other.example.com")]),
    ],
)
def test_cn_is_added_as_san_only_when_it_names_a_host_ip_or_mailbox(
    key: rsa.RSAPrivateKey, common_name: str, expected: list[x509.GeneralName]
) -> None:
    csr = build_csr(key, common_name, ["other.example.com"])
    assert list(san_extension(csr).value) == expected
    assert csr.subject.rfc4514_string() == f"CN={common_name}"


def test_cn_alone_becomes_the_only_san(key: rsa.RSAPrivateKey) -> None:
    assert csr_sans(build_csr(key, "host.internal")) == ["host.internal"]


def test_plain_name_cn_without_sans_has_no_san_extension(key: rsa.RSAPrivateKey) -> None:
    csr = build_csr(key, "Payments Service")
    assert csr_sans(csr) == []
    with pytest.raises(x509.ExtensionNotFound):
        san_extension(csr)


def test_empty_subject_makes_the_san_extension_critical(key: rsa.RSAPrivateKey) -> None:
    csr = build_csr(key, "  ", ["api.example.com"])
    assert csr.subject.rfc4514_string() == ""
    assert san_extension(csr).critical is True
    assert csr_sans(csr) == ["api.example.com"]


def test_ec_key_csr(pki: PKI) -> None:
    csr = build_csr(pki.ec_key(384), "ec.example.com")
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    assert csr.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
    assert csr.is_signature_valid


def test_a_single_string_is_not_taken_for_a_list_of_sans(key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(TypeError, match="sans must be a sequence of names, not a single string"):
        build_csr(key, "example.com", "www.example.com")


def test_no_cn_and_no_sans_is_an_error(key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(CertificateFormatError) as caught:
        build_csr(key, "")
    assert str(caught.value) == "a CSR needs a common name or at least one subject alternative name"


@pytest.mark.parametrize(
    ("san", "problem"),
    [
        ("bad_name.example.com", "is not a valid DNS name"),
        ("-leading.example.com", "is not a valid DNS name"),
        ("trailing-.example.com", "is not a valid DNS name"),
        ("double..dot.example.com", "is not a valid DNS name"),
        ("*.*.example.com", "is not a valid DNS name"),
        ("www.*.example.com", "is not a valid DNS name"),
        ("example.com.", "is not a valid DNS name"),
        ("exa mple.com", "is not a valid DNS name"),
        ("", "is not a valid DNS name"),
        ("a" * 64 + ".example.com", "is not a valid DNS name"),
        (".".join(["abcdefghi"] * 26), "is longer than 253 characters"),
        ("user@", "is not a valid email address"),
        ("@example.com", "is not a valid email address"),
        ("a@b@example.com", "is not a valid email address"),
        ("user@bad_domain", "is not a valid email address"),
        ("user@*.example.com", "is not a valid email address"),
    ],
)
def test_invalid_sans_are_named_in_the_error(key: rsa.RSAPrivateKey, san: str, problem: str) -> None:
    with pytest.raises(CertificateFormatError) as caught:
        build_csr(key, "ok.example.com", ["fine.example.com", san])
    assert str(caught.value).startswith(f"subject alternative name {san!r} {problem}")


def test_longest_valid_dns_name_is_accepted(key: rsa.RSAPrivateKey) -> None:
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(longest) == 253
    assert csr_sans(build_csr(key, "", [longest])) == [longest]


def test_too_long_common_name_is_an_error(key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(CertificateFormatError, match=r"^invalid subject: Attribute's length must be"):
        build_csr(key, "x" * 65, ["ok.example.com"])


def test_pem_and_der_round_trip(key: rsa.RSAPrivateKey) -> None:
    csr = build_csr(key, "rt.example.com", ["192.0.2.5"])
    pem = csr_to_pem(csr)
    assert pem.startswith("-----BEGIN CERTIFICATE REQUEST-----\n")
    assert pem.endswith("-----END CERTIFICATE REQUEST-----\n")
    from_pem = load_csr(pem.encode())
    from_der = load_csr(csr.public_bytes(serialization.Encoding.DER))
    assert from_pem == csr
    assert from_der == csr
    assert csr_sans(from_der) == ["rt.example.com", "192.0.2.5"]


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"],
)
def test_garbage_csr_is_rejected(data: bytes) -> None:
    with pytest.raises(CertificateFormatError, match=r"^not a PEM or DER certificate signing request"):
        load_csr(data)


def test_tampered_csr_signature_is_rejected(key: rsa.RSAPrivateKey) -> None:
    der = bytearray(build_csr(key, "tamper.example.com").public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the RSA signature is the last element of the DER
    with pytest.raises(CertificateFormatError) as caught:
        load_csr(bytes(der))
    assert str(caught.value) == "CSR signature does not verify; regenerate the CSR with its private key"
