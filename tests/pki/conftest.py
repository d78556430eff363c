"""A throwaway PKI (root → intermediate → leaves) built with cryptography, shared by the pki tests."""

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Fixed dates keep every expected value (validity, expiry messages) exact.
ROOT_NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
LEAF_NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2025, 2, 1, 12, 0, tzinfo=UTC)

_SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")  # DER of OID 1.2.840.113549.1.1.11
LEGACY_OID_LAST_BYTE = {"md2": 0x02, "md5": 0x04, "sha1": 0x05}
HASHES: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | hashes.SHA3_256]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha3_256": hashes.SHA3_256,
}


def name(common_name: str | None, organization: str | None = None) -> x509.Name:
    attributes = [(NameOID.ORGANIZATION_NAME, organization), (NameOID.COMMON_NAME, common_name)]
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes if value])


def general_names(values: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for value in values:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            names.append(x509.RFC822Name(value) if "@" in value else x509.DNSName(value))
    return names


def private_der(key: PrivateKeyTypes | None) -> bytes:
    """Comparable form of any private key."""
    assert key is not None
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class PKI:
    """Root CA, intermediate CA and a factory for leaves with chosen key, hash and validity."""

    _keys: dict[tuple[str, int], CertificateIssuerPrivateKeyTypes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = self.issue(
            "Test Root CA",
            organization="Certfleet Test",
            key=rsa.generate_private_key(65537, 2048),  # CA keys are never shared with leaves
            self_signed=True,
            not_before=ROOT_NOT_BEFORE,
            days=7305,
            ca_path_length=1,
            serial=1,
        )
        self.intermediate = self.issue(
            "Test Intermediate CA",
            organization="Certfleet Test",
            key=rsa.generate_private_key(65537, 3072),
            issuer=self.root,
            not_before=ROOT_NOT_BEFORE,
            days=5479,
            ca_path_length=0,
            serial=2,
        )

    def key(self, algorithm: str = "rsa", size: int = 2048) -> CertificateIssuerPrivateKeyTypes:
        """Cached keys: RSA generation is the slow part of these tests."""
        if (algorithm, size) not in self._keys:
            if algorithm == "rsa":
                self._keys[algorithm, size] = rsa.generate_private_key(65537, size)
            elif algorithm == "dsa":
                self._keys[algorithm, size] = dsa.generate_private_key(size)
            else:
                curve = {192: ec.SECP192R1(), 256: ec.SECP256R1(), 384: ec.SECP384R1()}[size]
                self._keys[algorithm, size] = ec.generate_private_key(curve)
        return self._keys[algorithm, size]

    def rsa_key(self, size: int = 2048) -> rsa.RSAPrivateKey:
        key = self.key("rsa", size)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def ec_key(self, size: int = 256) -> ec.EllipticCurvePrivateKey:
        key = self.key("ec", size)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def issue(
        self,
        common_name: str | None,
        *,
        organization: str | None = None,
        key: CertificateIssuerPrivateKeyTypes | None = None,
        issuer: Issued | None = None,
        self_signed: bool = False,
        sans: Sequence[str] = (),
        not_before: datetime = LEAF_NOT_BEFORE,
        days: float = 90,
        serial: int = 0x0A1B2C,
        ca_path_length: int | None = None,
        hash_algorithm: str | None = "sha256",
        rsa_padding: padding.PSS | None = None,
        extensions: Sequence[x509.ExtensionType] = (),
    ) -> Issued:
        """Issue a certificate signed by `issuer` (default: the intermediate) or by its own key."""
        key = key or self.key("rsa", 2048)
        signer = None if self_signed else issuer or self.intermediate
        subject = name(common_name, organization)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(signer.cert.subject if signer else subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_before + timedelta(days=days))
        )
        if ca_path_length is not None:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=ca_path_length), True)
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
            )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(general_names(sans)), False)
        for extension in extensions:
            builder = builder.add_extension(extension, False)
        signing_key = signer.key if signer else key
        digest = HASHES[hash_algorithm]() if hash_algorithm else None
        cert = builder.sign(signing_key, digest, rsa_padding=rsa_padding)
        return Issued(cert, key)

    def leaf(self, common_name: str = "leaf.example.com", **options: Any) -> Issued:
        """A TLS server leaf under the intermediate with the usual extensions."""
        extensions: list[x509.ExtensionType] = [
            x509.BasicConstraints(ca=False, path_length=None),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        ]
        options.setdefault("sans", [common_name])
        return self.issue(common_name, extensions=extensions, **options)


def legacy_signed(issued: Issued, signer_key: rsa.RSAPrivateKey, digest: str) -> x509.Certificate:
    """Re-sign a SHA256-with-RSA certificate with SHA-1 or MD5, which cryptography refuses to do.

    The algorithm OIDs (same length) are patched in the TBS and outer structure, the TBS is signed again
    with the legacy hash and the signature (always modulus-length with PKCS#1 v1.5) is swapped in place.
    MD2 cannot be signed any more: its certificate keeps the old signature bytes.
    """
    der = issued.der
    assert der.count(_SHA256_WITH_RSA) == 2
    der = der.replace(_SHA256_WITH_RSA, _SHA256_WITH_RSA[:-1] + bytes([LEGACY_OID_LAST_BYTE[digest]]))
    patched = x509.load_der_x509_certificate(der)
    if digest == "md2":
        return patched
    algorithm = hashes.SHA1() if digest == "sha1" else hashes.MD5()  # noqa: S303 - weak on purpose
    signature = signer_key.sign(patched.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
    assert len(signature) == len(patched.signature)
    return x509.load_der_x509_certificate(der[: -len(signature)] + signature)


@pytest.fixture(scope="session")
def pki() -> PKI:
    return PKI()
