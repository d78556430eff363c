"""Throwaway PKIs for the emulators: one TLS CA for the HTTPS endpoints, and an issuing hierarchy per CA."""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certfleet tests"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _ca_cert(
    subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


@dataclass
class IssuingCA:
    """A root and an intermediate; signs CSRs the way a CA would, remembers what it revoked."""

    label: str
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    revoked: dict[int, str] = field(default_factory=dict)
    issued: dict[int, x509.Certificate] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        root_name = _name(f"{self.label} Test Root")
        self.root = _ca_cert(root_name, self.root_key, root_name, self.root_key)
        self.intermediate = _ca_cert(_name(f"{self.label} Test Issuing CA"), self.key, root_name, self.root_key)

    @property
    def root_pem(self) -> str:
        return self.root.public_bytes(serialization.Encoding.PEM).decode()

    def chain_pems(self) -> list[str]:
        return [c.public_bytes(serialization.Encoding.PEM).decode() for c in (self.intermediate, self.root)]

    def sign(self, csr_pem: str | bytes, days: int = 90, *, email: bool = False) -> x509.Certificate:
        """`email`: an S/MIME certificate (emailProtection, digitalSignature and keyEncipherment for RSA keys)."""
        data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
        csr = x509.load_pem_x509_csr(data) if b"BEGIN" in data else x509.load_der_x509_csr(data)
        if not csr.is_signature_valid:
            raise ValueError("CSR signature invalid")
        try:
            sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            sans = []
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.intermediate.subject)
            .public_key(csr.public_key())  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.EMAIL_PROTECTION if email else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if email:  # S/MIME: signing, and key transport where the key can do it (RSA)
            rsa_key = isinstance(csr.public_key(), rsa.RSAPublicKey)
            usage = x509.KeyUsage(True, False, rsa_key, False, False, False, False, False, False)
            builder = builder.add_extension(usage, critical=True)
        cert = builder.sign(self.key, hashes.SHA256())
        with self._lock:
            self.issued[cert.serial_number] = cert
        return cert

    def full_chain_pem(self, cert: x509.Certificate) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode() + "".join(self.chain_pems())

    def revoke(self, serial: int, reason: str) -> bool:
        with self._lock:
            if serial not in self.issued:
                return False
            self.revoked.setdefault(serial, reason)
            return True


@dataclass
class TlsIdentity:
    """The HTTPS identity every emulator serves: a test CA and a leaf for localhost / 127.0.0.1."""

    directory: Path

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name("certfleet emulator TLS CA")
        self.ca_cert = _ca_cert(ca_name, ca_key, ca_name, ca_key)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(_name("localhost"))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("pebble"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_pem = self.ca_cert.public_bytes(serialization.Encoding.PEM).decode()
        self.ca_path = self.directory / "tls-ca.pem"
        self.cert_path = self.directory / "tls-cert.pem"
        self.key_path = self.directory / "tls-key.pem"
        self.ca_path.write_text(self.ca_pem)
        self.cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        self.key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
