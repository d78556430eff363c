"""The built-in private CA (connector kind `local`): root, issuing CA, TLS and S/MIME leaves, CRLs.

The CA's keys are handed in (the caller keeps them encrypted at rest) and revocations go to an injected
store, so this module holds no state of its own and never touches the database.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certfleet.connectors.base import IssueRequest, IssueResult, Profile
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.pki.csr import load_csr
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.keys import KeySpec, PrivateKey, generate_private_key, load_private_key, private_key_to_pem

CA_KEY_SPEC = KeySpec(algorithm="ec", size=384)
ROOT_YEARS = 20
ISSUING_YEARS = 10
MAX_TLS_VALIDITY_DAYS = 398
BACKDATE = timedelta(minutes=5)  # tolerate clock skew between the CA and the servers


@dataclass(frozen=True)
class CAMaterial:
    root_cert: x509.Certificate
    issuing_cert: x509.Certificate
    root_key: PrivateKey = field(repr=False)
    issuing_key: PrivateKey = field(repr=False)

    def public_part(self) -> dict[str, str]:
        return {
            "root_cert_pem": self.root_cert.public_bytes(serialization.Encoding.PEM).decode(),
            "issuing_cert_pem": self.issuing_cert.public_bytes(serialization.Encoding.PEM).decode(),
        }

    def secret_part(self) -> dict[str, str]:
        return {
            "root_key_pem": private_key_to_pem(self.root_key).decode(),
            "issuing_key_pem": private_key_to_pem(self.issuing_key).decode(),
        }

    @classmethod
    def load(cls, public: dict[str, str], secret: dict[str, str]) -> CAMaterial:
        try:
            return cls(
                root_cert=x509.load_pem_x509_certificate(public["root_cert_pem"].encode()),
                issuing_cert=x509.load_pem_x509_certificate(public["issuing_cert_pem"].encode()),
                root_key=load_private_key(secret["root_key_pem"].encode(), trusted=True),
                issuing_key=load_private_key(secret["issuing_key_pem"].encode(), trusted=True),
            )
        except (KeyError, ValueError) as exc:
            raise PermanentConnectorError(f"the built-in CA's stored keys are damaged: {exc}") from exc


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _sign_algorithm(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    return hashes.SHA384() if isinstance(key, ec.EllipticCurvePrivateKey) else hashes.SHA256()


def create_ca_material(name: str, *, organization: str = "certfleet", now: datetime | None = None) -> CAMaterial:
    """A new root (path length 1) and an issuing CA (path length 0) signed by it."""
    now = now or datetime.now(UTC)
    root_key = generate_private_key(CA_KEY_SPEC)
    issuing_key = generate_private_key(CA_KEY_SPEC)
    root_name = _name(f"{name} Root CA", organization)
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=365 * ROOT_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(root_ski, critical=False)
        .sign(root_key, _sign_algorithm(root_key))
    )
    issuing = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} Issuing CA", organization))
        .issuer_name(root_name)
        .public_key(issuing_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=365 * ISSUING_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(issuing_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False)
        .sign(root_key, _sign_algorithm(root_key))
    )
    return CAMaterial(root_cert=root, issuing_cert=issuing, root_key=root_key, issuing_key=issuing_key)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


class RevocationStore(Protocol):
    def add(self, serial_number: int, reason: x509.ReasonFlags, at: datetime) -> None: ...

    def revoked(self) -> Sequence[tuple[int, x509.ReasonFlags, datetime]]: ...


class LocalCA:
    kind: ClassVar[str] = "local"

    def __init__(
        self,
        material: CAMaterial,
        revocations: RevocationStore,
        *,
        default_validity_days: int = 90,
        crl_url: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.material = material
        self.revocations = revocations
        self.default_validity_days = default_validity_days
        self.crl_url = crl_url
        self.clock = clock

    @property
    def chain(self) -> list[x509.Certificate]:
        """What follows a leaf it issues: the issuing CA, then the root."""
        return [self.material.issuing_cert, self.material.root_cert]

    def issue(self, request: IssueRequest) -> IssueResult:
        try:
            csr = load_csr(request.csr_pem.encode())
        except CertificateFormatError as exc:
            raise PermanentConnectorError(f"the CSR is not usable: {exc}") from exc
        validity = self.default_validity_days if request.validity_days is None else request.validity_days
        if validity < 1:
            raise PermanentConnectorError(f"validity of {validity} days is not positive")
        if request.profile is Profile.TLS_SERVER and validity > MAX_TLS_VALIDITY_DAYS:
            raise PermanentConnectorError(
                f"validity of {validity} days exceeds {MAX_TLS_VALIDITY_DAYS}, the most a TLS client accepts"
            )
        sans = _csr_sans(csr)
        now = self.clock()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_leaf_subject(csr, request.profile, sans))
            .issuer_name(self.material.issuing_cert.subject)
            .public_key(csr.public_key())  # type: ignore[arg-type]  # load_csr admits only RSA and EC keys
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + timedelta(days=validity))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(csr, request.profile), critical=True)
            .add_extension(x509.ExtendedKeyUsage(_eku(request.profile)), critical=False)
            .add_extension(x509.SubjectAlternativeName(_checked_sans(sans, request.profile)), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)  # type: ignore[arg-type]
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.material.issuing_cert.public_key()  # type: ignore[arg-type]
                ),
                critical=False,
            )
        )
        if self.crl_url:
            builder = builder.add_extension(_crl_distribution(self.crl_url), critical=False)
        leaf = builder.sign(self.material.issuing_key, _sign_algorithm(self.material.issuing_key))
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [leaf, *self.chain])
        return IssueResult(pem_chain=pem.decode(), ca_order_id=f"local-{leaf.serial_number:x}")

    def status(self, ca_order_id: str) -> IssueResult:
        raise PermanentConnectorError(f"the built-in CA issues at once; it holds no pending order {ca_order_id}")

    def revoke(self, serial_number: int, reason: x509.ReasonFlags) -> None:
        self.revocations.add(serial_number, reason, self.clock())

    def crl(self, *, next_update_days: int = 7, number: int | None = None) -> x509.CertificateRevocationList:
        now = self.clock()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.material.issuing_cert.subject)
            .last_update(now)
            .next_update(now + timedelta(days=next_update_days))
            .add_extension(x509.CRLNumber(number if number is not None else int(now.timestamp())), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.material.issuing_cert.public_key()  # type: ignore[arg-type]
                ),
                critical=False,
            )
        )
        for serial, reason, at in self.revocations.revoked():
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at)
            if reason is not x509.ReasonFlags.unspecified:
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(self.material.issuing_key, _sign_algorithm(self.material.issuing_key))


def _csr_sans(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    try:
        return list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def _checked_sans(sans: list[x509.GeneralName], profile: Profile) -> list[x509.GeneralName]:
    wanted: list[x509.GeneralName]
    if profile is Profile.TLS_SERVER:
        wanted = [n for n in sans if isinstance(n, x509.DNSName | x509.IPAddress)]
        if not wanted:
            raise PermanentConnectorError("a TLS server certificate needs at least one DNS or IP SAN in the CSR")
    else:
        wanted = [n for n in sans if isinstance(n, x509.RFC822Name)]
        if not wanted:
            raise PermanentConnectorError("an S/MIME certificate needs an email address SAN in the CSR")
    return wanted


def _leaf_subject(csr: x509.CertificateSigningRequest, profile: Profile, sans: list[x509.GeneralName]) -> x509.Name:
    keep = [NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME]
    if profile is Profile.SMIME:
        keep.append(NameOID.EMAIL_ADDRESS)
    attrs = [a for a in csr.subject if a.oid in keep]
    if not attrs and sans:  # an empty subject is legal but unreadable in every inventory
        first = sans[0].value
        value = str(first) if isinstance(first, ipaddress.IPv4Address | ipaddress.IPv6Address) else first
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, str(value))]
    return x509.Name(attrs)


def _leaf_key_usage(csr: x509.CertificateSigningRequest, profile: Profile) -> x509.KeyUsage:
    is_rsa = isinstance(csr.public_key(), rsa.RSAPublicKey)
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=is_rsa,  # RSA key exchange / S/MIME key transport; EC uses agreement
        data_encipherment=False,
        key_agreement=not is_rsa and profile is Profile.SMIME,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _eku(profile: Profile) -> list[x509.ObjectIdentifier]:
    if profile is Profile.SMIME:
        return [ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CLIENT_AUTH]
    return [ExtendedKeyUsageOID.SERVER_AUTH]


def _crl_distribution(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )
