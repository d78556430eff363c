"""The certificates discovery and inventory tests serve and import: good, expired, self-signed, SHA-1 and
RSA-1024, made with cryptography under the throwaway PKI of tests/pki/conftest.py, written to files."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from certfleet.discovery.testbed import ListenerSpec
from tests.pki.conftest import PKI, Issued, legacy_signed

NAMES = ("good", "expired", "self_signed", "sha1", "rsa1024")


@dataclass(frozen=True)
class Served:
    """A certificate as a listener serves it: the chain (leaf first) and the files it is loaded from."""

    kind: str  # one of NAMES
    name: str  # file stem (kind with the fleet's prefix)
    chain: list[x509.Certificate]
    key: CertificateIssuerPrivateKeyTypes
    cert_file: Path
    key_file: Path

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def der(self) -> bytes:
        return self.leaf.public_bytes(serialization.Encoding.DER)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest().upper()

    @property
    def sha1(self) -> str:
        return hashlib.sha1(self.der).hexdigest().upper()  # noqa: S324 - a thumbprint, not a security check

    @property
    def serial(self) -> str:
        digits = f"{self.leaf.serial_number:X}"
        return digits.zfill(len(digits) + len(digits) % 2)

    @property
    def pem_chain(self) -> str:
        return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in self.chain)

    def spec(self, port: int = 0, sni: dict[str, Served] | None = None) -> ListenerSpec:
        return ListenerSpec(
            str(self.cert_file),
            str(self.key_file),
            port=port,
            sni={name: (str(s.cert_file), str(s.key_file)) for name, s in (sni or {}).items()},
        )


def _server_leaf(
    pki: PKI, cn: str, key: CertificateIssuerPrivateKeyTypes, not_before: datetime, days: float, serial: int
) -> Issued:
    return pki.issue(
        cn,
        key=key,
        sans=[cn, f"www.{cn}"],
        not_before=not_before,
        days=days,
        serial=serial,
        extensions=[
            x509.BasicConstraints(ca=False, path_length=None),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier("http://crl.test/int.crl")], None, None, None)]
            ),
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier("http://aia.test/int.cer"),
                    )
                ]
            ),
        ],
    )


def _write(
    directory: Path, kind: str, prefix: str, chain: list[x509.Certificate], key: CertificateIssuerPrivateKeyTypes
) -> Served:
    name = f"{prefix}{kind}"
    directory.mkdir(parents=True, exist_ok=True)
    cert_file = directory / f"{name}.pem"
    key_file = directory / f"{name}.key"
    cert_file.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    return Served(kind, name, chain, key, cert_file, key_file)


def make_fleet(pki: PKI, directory: Path, *, now: datetime | None = None, prefix: str = "") -> dict[str, Served]:
    """The five test certificates (with the intermediate in every chain but the self-signed one)."""
    now = now or datetime.now(UTC)
    today = now - timedelta(days=1)
    inter = pki.intermediate.cert
    rsa2048 = pki.rsa_key(2048)
    served: dict[str, Served] = {}

    good = _server_leaf(pki, f"{prefix}good.example.test", rsa2048, today, 90, 0x1001)
    served["good"] = _write(directory, "good", prefix, [good.cert, inter], rsa2048)

    expired = _server_leaf(pki, f"{prefix}expired.example.test", rsa2048, now - timedelta(days=100), 30, 0x1002)
    served["expired"] = _write(directory, "expired", prefix, [expired.cert, inter], rsa2048)

    ec_key = ec.generate_private_key(ec.SECP256R1())
    self_signed = pki.issue(
        f"{prefix}self.example.test", key=ec_key, self_signed=True, sans=[f"{prefix}self.example.test"],
        not_before=today, days=365, serial=0x1003,
    )  # fmt: skip
    served["self_signed"] = _write(directory, "self_signed", prefix, [self_signed.cert], ec_key)

    sha1_source = _server_leaf(pki, f"{prefix}sha1.example.test", rsa2048, today, 90, 0x1004)
    signer = pki.intermediate.key
    assert isinstance(signer, rsa.RSAPrivateKey)
    served["sha1"] = _write(directory, "sha1", prefix, [legacy_signed(sha1_source, signer, "sha1"), inter], rsa2048)

    weak_key = pki.rsa_key(1024)
    weak = _server_leaf(pki, f"{prefix}rsa1024.example.test", weak_key, today, 90, 0x1005)
    served["rsa1024"] = _write(directory, "rsa1024", prefix, [weak.cert, inter], weak_key)
    return served


def expected_reasons(served: Served) -> list[str]:
    """What certfleet.pki.policy says about each test certificate (private CA: no lifetime rule)."""
    return {
        "good": [],
        "expired": [f"expired on {served.leaf.not_valid_after_utc:%Y-%m-%d}"],
        "self_signed": ["self-signed leaf certificate"],
        "sha1": ["signed with SHA-1 (SHA1RSA)"],
        "rsa1024": ["RSA key of 1024 bits is below the 2048-bit minimum"],
    }[served.kind]
