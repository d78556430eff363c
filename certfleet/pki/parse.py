"""Load certificate files in whatever format users upload, and describe certificates for display."""

import base64
import functools
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    NameOID,
    ObjectIdentifier,
    SignatureAlgorithmOID,
)
from pydantic import BaseModel

from certfleet.pki.csr import subject_alt_names
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.keys import PrivateKey, describe_public_key, load_private_key, require_supported_key

_PEM_BLOCK = re.compile(rb"-----BEGIN (?P<label>[A-Z0-9 ]+)-----.*?-----END (?P=label)-----", re.DOTALL)
_PEM_KEY_LABELS = {"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY"}
_NOT_CERTIFICATE_FILE = "not a PEM, DER, PKCS#7 or PKCS#12 certificate file"
_BEGIN_LINE = re.compile(rb"-----BEGIN (?P<label>[A-Z0-9 ]+)-----")
_CSR_LABELS = {"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"}
_CSR_ADVICE = "upload the certificate the CA issued for it"

# Names in the style of the Windows certificate manager, which the operator manual uses.
_SIGNATURE_NAMES: dict[ObjectIdentifier, str] = {
    ObjectIdentifier("1.2.840.113549.1.1.2"): "MD2RSA",
    SignatureAlgorithmOID.RSA_WITH_MD5: "MD5RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA1: "SHA1RSA",
    ObjectIdentifier("1.3.14.3.2.29"): "SHA1RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA224: "SHA224RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA256: "SHA256RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA384: "SHA384RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA512: "SHA512RSA",
    SignatureAlgorithmOID.RSASSA_PSS: "RSASSA-PSS",
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: "SHA1ECDSA",
    SignatureAlgorithmOID.ECDSA_WITH_SHA224: "SHA224ECDSA",
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: "SHA256ECDSA",
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: "SHA384ECDSA",
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: "SHA512ECDSA",
    SignatureAlgorithmOID.DSA_WITH_SHA1: "SHA1DSA",
    SignatureAlgorithmOID.DSA_WITH_SHA224: "SHA224DSA",
    SignatureAlgorithmOID.DSA_WITH_SHA256: "SHA256DSA",
    SignatureAlgorithmOID.ED25519: "ED25519",
    SignatureAlgorithmOID.ED448: "ED448",
    SignatureAlgorithmOID.ML_DSA_44: "ML-DSA-44",
    SignatureAlgorithmOID.ML_DSA_65: "ML-DSA-65",
    SignatureAlgorithmOID.ML_DSA_87: "ML-DSA-87",
}

# OpenSSL's short names, which is what operators search for.
_EKU_NAMES: dict[ObjectIdentifier, str] = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
    ExtendedKeyUsageOID.SMARTCARD_LOGON: "msSmartcardLogin",
    ExtendedKeyUsageOID.IPSEC_IKE: "ipsecIKE",
}

_ACCESS_METHOD_NAMES: dict[ObjectIdentifier, str] = {
    AuthorityInformationAccessOID.OCSP: "OCSP",
    AuthorityInformationAccessOID.CA_ISSUERS: "CA Issuers",
}

_EXTENSION_LABELS: dict[ObjectIdentifier, str] = {
    ExtensionOID.BASIC_CONSTRAINTS: "X509v3 Basic Constraints",
    ExtensionOID.KEY_USAGE: "X509v3 Key Usage",
    ExtensionOID.EXTENDED_KEY_USAGE: "X509v3 Extended Key Usage",
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME: "X509v3 Subject Alternative Name",
    ExtensionOID.ISSUER_ALTERNATIVE_NAME: "X509v3 Issuer Alternative Name",
    ExtensionOID.SUBJECT_KEY_IDENTIFIER: "X509v3 Subject Key Identifier",
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER: "X509v3 Authority Key Identifier",
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS: "Authority Information Access",
    ExtensionOID.SUBJECT_INFORMATION_ACCESS: "Subject Information Access",
    ExtensionOID.CRL_DISTRIBUTION_POINTS: "X509v3 CRL Distribution Points",
    ExtensionOID.FRESHEST_CRL: "X509v3 Freshest CRL",
    ExtensionOID.CERTIFICATE_POLICIES: "X509v3 Certificate Policies",
    ExtensionOID.NAME_CONSTRAINTS: "X509v3 Name Constraints",
    ExtensionOID.POLICY_CONSTRAINTS: "X509v3 Policy Constraints",
    ExtensionOID.INHIBIT_ANY_POLICY: "X509v3 Inhibit Any Policy",
    ExtensionOID.TLS_FEATURE: "TLS Feature",
    ExtensionOID.OCSP_NO_CHECK: "OCSP No Check",
    ExtensionOID.PRECERT_POISON: "CT Precertificate Poison",
    ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS: "CT Precertificate SCTs",
    ExtensionOID.SIGNED_CERTIFICATE_TIMESTAMPS: "CT Certificate SCTs",
}

# Keys that sign the message itself, with no separate hash algorithm.
_PURE_SIGNATURE_KEYS = (
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
    mldsa.MLDSA44PublicKey,
    mldsa.MLDSA65PublicKey,
    mldsa.MLDSA87PublicKey,
)

_ExtensionT = TypeVar("_ExtensionT", bound=x509.ExtensionType)
_R = TypeVar("_R")


@dataclass(frozen=True)
class LoadedMaterial:
    """Certificates (leaf first) and the private key, if any, found in one uploaded file."""

    certificates: list[x509.Certificate]
    private_key: PrivateKey | None

    @property
    def leaf(self) -> x509.Certificate:
        """The end-entity certificate, which load_material puts first."""
        if not self.certificates:
            raise CertificateFormatError("no certificate was loaded")
        return self.certificates[0]


def load_material(data: bytes, password: bytes | None = None) -> LoadedMaterial:
    """Load PEM (certificates, keys, PKCS#7 blocks), DER, PKCS#7 or PKCS#12 data, detecting the format."""
    if b"-----BEGIN" in data:
        certificates, key = _load_pem(data, password)
    else:
        certificates, key = _load_binary(data, password)
    if not certificates:
        raise CertificateFormatError("the file contains no certificate")
    return LoadedMaterial(order_chain(certificates), key)


@functools.lru_cache(maxsize=256)
def stored_chain(pem: str) -> tuple[x509.Certificate, ...]:
    """A chain certfleet stored (PEM, read from the database) parsed, leaf first, as `load_material` orders it.

    Remembered for the last 256 chains: a rotation reads each certificate's chain at several of its steps (checked
    when issued, refused if it cannot be served, its issuers for the proof, the files to install), and the parse and
    ordering cost more than the rest of those steps. Certificates are immutable, so sharing them is safe.
    """
    return tuple(load_material(pem.encode()).certificates)


def _load_pem(data: bytes, password: bytes | None) -> tuple[list[x509.Certificate], PrivateKey | None]:
    certificates: list[x509.Certificate] = []
    keys: list[PrivateKey] = []
    ignored: list[str] = []
    blocks = list(_PEM_BLOCK.finditer(data))
    _refuse_unterminated(data, blocks)
    for number, match in enumerate(blocks, start=1):
        label, block = match.group("label").decode("ascii"), match.group(0)
        if label == "CERTIFICATE":
            certificates.append(_pem_certificate(block, number))
        elif label == "PKCS7":
            certificates.extend(_pkcs7_certificates(block, pem=True))
        elif label in _PEM_KEY_LABELS:
            keys.append(load_private_key(block, password))
        else:
            ignored.append(label)
    if len(keys) > 1:
        raise CertificateFormatError("the file contains more than one private key; upload one key at a time")
    if not certificates:
        if any(label in _CSR_LABELS for label in ignored):
            raise CertificateFormatError(
                f"the PEM file is a certificate signing request (CSR), not a certificate: {_CSR_ADVICE}"
            )
        found = f" (found: {', '.join(ignored)})" if ignored else ""
        raise CertificateFormatError(f"the PEM file contains no CERTIFICATE or PKCS7 block{found}")
    return certificates, keys[0] if keys else None


def _refuse_unterminated(data: bytes, blocks: list[re.Match[bytes]]) -> None:
    """A BEGIN line outside every complete block has no END line: the file was cut short or damaged."""
    spans = [match.span() for match in blocks]
    for begin in _BEGIN_LINE.finditer(data):
        if not any(start <= begin.start() < end for start, end in spans):
            label = begin.group("label").decode("ascii")
            line = data.count(b"\n", 0, begin.start()) + 1
            raise CertificateFormatError(
                f"the PEM {label} block that begins on line {line} has no '-----END {label}-----' line: "
                "the file is truncated or damaged"
            )


def _pem_certificate(block: bytes, number: int) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(block)
    except ValueError:
        pass
    try:  # a CSR pasted between CERTIFICATE lines is a common mistake: name it
        x509.load_pem_x509_csr(block.replace(b"CERTIFICATE-----", b"CERTIFICATE REQUEST-----"))
    except ValueError:
        pass
    else:
        raise CertificateFormatError(
            f"PEM block {number} is a certificate signing request (CSR) inside CERTIFICATE armour, "
            f"not a certificate: {_CSR_ADVICE}"
        )
    body = b"".join(block.splitlines()[1:-1])
    try:
        der = base64.b64decode(body, validate=True)
    except ValueError:
        raise CertificateFormatError(
            f"PEM block {number} (CERTIFICATE) is not valid base64: the file is damaged"
        ) from None
    short = _der_shortfall(der)
    if short is not None:
        raise CertificateFormatError(f"PEM block {number} (CERTIFICATE) is truncated: {short}")
    raise CertificateFormatError(f"PEM block {number} is not a valid certificate: its DER content is not X.509")


def _pkcs7_certificates(data: bytes, *, pem: bool) -> list[x509.Certificate]:
    try:
        if pem:
            return pkcs7.load_pem_pkcs7_certificates(data)
        return pkcs7.load_der_pkcs7_certificates(data)
    except (ValueError, UnsupportedAlgorithm) as exc:  # e.g. signed data of another kind (found by fuzzing)
        raise CertificateFormatError("the PKCS#7 data is damaged or contains no certificates") from exc


def _load_binary(data: bytes, password: bytes | None) -> tuple[list[x509.Certificate], PrivateKey | None]:
    try:
        return [x509.load_der_x509_certificate(data)], None
    except ValueError:
        pass
    if _looks_like_pkcs12(data):
        return _load_pkcs12(data, password)
    try:
        return pkcs7.load_der_pkcs7_certificates(data), None
    except (ValueError, UnsupportedAlgorithm):
        pass
    raise CertificateFormatError(_binary_failure(data)) from None


def _binary_failure(data: bytes) -> str:
    """What a binary file that is no certificate is, and what is wrong with it."""
    if not data:
        return "the file is empty"
    if data[0] != 0x30:
        if _is_text(data):
            return f"the file is text without a PEM '-----BEGIN CERTIFICATE-----' block: {_NOT_CERTIFICATE_FILE}"
        return (
            f"the file is binary data that is not DER (it does not start with an ASN.1 SEQUENCE): "
            f"{_NOT_CERTIFICATE_FILE}"
        )
    short = _der_shortfall(data)
    if short is not None:
        return f"the DER file is truncated: {short}"
    try:
        x509.load_der_x509_csr(data)
    except ValueError:
        pass
    else:
        return f"the DER file is a certificate signing request (CSR), not a certificate: {_CSR_ADVICE}"
    return f"the file is DER data but not a certificate, PKCS#7 or PKCS#12 structure: {_NOT_CERTIFICATE_FILE}"


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _der_shortfall(der: bytes) -> str | None:
    """Why a DER value is cut short ("its header announces 1234 bytes, it has 600"), or None when it is not."""
    if len(der) < 2:
        return f"it has {len(der)} byte(s), too few for any DER value"
    first = der[1]
    if first < 0x80:
        header, length = 2, first
    else:
        count = first & 0x7F
        if count == 0:
            return None  # indefinite length (BER): the parser decides
        if count > 4:
            return "its length header is damaged"
        if len(der) < 2 + count:
            return f"it has {len(der)} bytes, it ends inside its length header"
        header, length = 2 + count, int.from_bytes(der[2 : 2 + count], "big")
    if header + length > len(der):
        return f"its header announces {header + length} bytes, it has {len(der)}"
    return None


def _looks_like_pkcs12(data: bytes) -> bool:
    """A PFX is SEQUENCE { version INTEGER 3, ... }: enough to tell a bad password from another format."""
    if len(data) < 2 or data[0] != 0x30:
        return False
    start = 2 + (data[1] & 0x7F if data[1] & 0x80 else 0)
    return data[start : start + 3] == b"\x02\x01\x03"


def _load_pkcs12(data: bytes, password: bytes | None) -> tuple[list[x509.Certificate], PrivateKey | None]:
    short = _der_shortfall(data)
    if short is not None:
        raise CertificateFormatError(f"the PKCS#12 file is truncated: {short}")
    try:
        key, certificate, additional = pkcs12.load_key_and_certificates(data, password)
    except ValueError as exc:
        # OpenSSL tells a structure it cannot parse ("Could not deserialize") from a MAC that does not verify
        # ("Invalid password or PKCS12 data"): the first is a damaged file whatever the password.
        if "deserialize" in str(exc):
            raise CertificateFormatError(
                "the PKCS#12 file is damaged: its structure cannot be parsed (no password would open it)"
            ) from None
        if not password:
            raise CertificateFormatError("PKCS#12 file needs a password") from exc
        try:  # a password typed for an unprotected PKCS#12 file is harmless
            key, certificate, additional = pkcs12.load_key_and_certificates(data, None)
        except ValueError:
            raise CertificateFormatError("wrong password for PKCS#12 file") from exc
    certificates = [certificate, *additional] if certificate else list(additional)
    return certificates, require_supported_key(key) if key else None


MAX_CHAIN_CERTIFICATES = 1000  # a CA bundle holds ~150; more in one file is an attack or a mistake


def order_chain(certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """Leaf first, then its issuers by name; duplicates dropped, unrelated certificates at the end.

    Linear in the number of certificates (names are looked up in dicts), and bounded by
    MAX_CHAIN_CERTIFICATES, so a hostile file cannot hold the process with thousands of certificates.
    """
    if len(certs) > MAX_CHAIN_CERTIFICATES:
        raise CertificateFormatError(
            f"the file holds {len(certs):,} certificates, more than the limit of {MAX_CHAIN_CERTIFICATES:,} "
            "per file; split it into smaller files"
        )
    unique = list(dict.fromkeys(certs))
    if not unique:
        return []
    try:  # decoded once here: each access decodes again, and a damaged name only fails when decoded
        names = {cert: (cert.subject, cert.issuer) for cert in unique}
    except ValueError as exc:
        raise CertificateFormatError(f"a certificate has a damaged subject or issuer name: {exc}") from exc
    by_subject: dict[x509.Name, list[x509.Certificate]] = {}
    issued_by: dict[x509.Name, int] = {}  # how many certificates each name issued
    for cert, (subject, issuer) in names.items():
        by_subject.setdefault(subject, []).append(cert)
        issued_by[issuer] = issued_by.get(issuer, 0) + 1
    self_issued = {cert: subject == issuer for cert, (subject, issuer) in names.items()}

    def parent(cert: x509.Certificate) -> x509.Certificate | None:
        """The first certificate named as `cert`'s issuer; a self-issued certificate ends its chain."""
        if self_issued[cert]:
            return None
        return next((c for c in by_subject.get(names[cert][1], ()) if c is not cert), None)

    parents = {cert: parent(cert) for cert in unique}
    lengths = _chain_lengths(unique, parents)
    # A leaf issued nothing (a self-issued certificate's own signature does not count).
    leaves = [c for c in unique if issued_by.get(names[c][0], 0) == int(self_issued[c])]
    # Several candidates (unrelated extras, a root whose child is missing, or a cycle with none):
    # the longest chain wins, then a certificate that is not self-issued.
    start = max(leaves or unique, key=lambda c: (lengths[c], not self_issued[c]))
    chain: dict[x509.Certificate, None] = {}
    link: x509.Certificate | None = start
    while link is not None and link not in chain:
        chain[link] = None
        link = parents[link]
    return list(chain) + [c for c in unique if c not in chain]


def _chain_lengths(
    certs: Sequence[x509.Certificate], parents: dict[x509.Certificate, x509.Certificate | None]
) -> dict[x509.Certificate, int]:
    """Length of the chain from each certificate (following `parents` until none or a repeat), in O(n)."""
    lengths: dict[x509.Certificate, int] = {}
    for cert in certs:
        path: dict[x509.Certificate, int] = {}  # this walk, in order, with its position
        link: x509.Certificate | None = cert
        while link is not None and link not in lengths and link not in path:
            path[link] = len(path)
            link = parents[link]
        walked = list(path)
        if link is not None and link in path:  # a cycle: each member's chain goes round it once
            cycle = walked[path[link] :]
            for member in cycle:
                lengths[member] = len(cycle)
            walked = walked[: path[link]]
        after = 0 if link is None else lengths[link]
        for position, member in enumerate(reversed(walked), start=1):
            lengths[member] = after + position
    return lengths


def load_certificate(data: bytes) -> x509.Certificate:
    """The leaf certificate of a file without a password."""
    return load_material(data).leaf


def serial_hex(serial: int) -> str:
    """Serial number as uppercase hex with an even number of digits, the form CAs and Windows show."""
    if serial < 0:  # invalid per RFC 5280 but found in old certificates: show the encoded bytes
        return serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=True).hex().upper()
    digits = f"{serial:X}"
    return digits.zfill(len(digits) + len(digits) % 2)


class CertificateInfo(BaseModel):
    """Everything the inventory and the UI show about a certificate."""

    common_name: str | None
    sans: list[str]
    subject: str
    issuer: str
    issuer_common_name: str | None
    issuer_organization: str | None
    signature_algorithm: str
    serial_number: str
    not_before: datetime
    not_after: datetime
    key_type: str
    key_size: int
    sha1_thumbprint: str
    sha256_thumbprint: str
    self_signed: bool
    is_ca: bool
    key_usage: list[str]
    extended_key_usage: list[str]
    basic_constraints: str | None
    authority_info_access: list[str]
    crl_distribution_points: list[str]

    @property
    def display_name(self) -> str:
        """Best short label: CN, else first SAN, else the whole subject."""
        return self.common_name or (self.sans[0] if self.sans else self.subject)

    def expires_within_days(self, now: datetime | None = None) -> int:
        """Whole days left until not_after (floored), negative once expired."""
        now = now or datetime.now(UTC)
        return (_as_utc(self.not_after) - _as_utc(now)) // timedelta(days=1)


def _as_utc(moment: datetime) -> datetime:
    """Treat naive datetimes (e.g. read back from a database) as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _decoding(what: str) -> Callable[[Callable[[x509.Certificate], _R]], Callable[[x509.Certificate], _R]]:
    """cryptography decodes a certificate's names, key and extensions only when asked: a damaged one
    raises there (found by tests/fuzz), so those errors become the toolkit's one error type."""

    def wrap(fn: Callable[[x509.Certificate], _R]) -> Callable[[x509.Certificate], _R]:
        @functools.wraps(fn)
        def decoded(cert: x509.Certificate) -> _R:
            try:
                return fn(cert)
            except CertificateFormatError:
                raise
            except (ValueError, UnsupportedAlgorithm) as exc:
                raise CertificateFormatError(f"cannot {what} the certificate: {exc}") from exc

        return decoded

    return wrap


@_decoding("read")
def describe(cert: x509.Certificate) -> CertificateInfo:
    """Decode the fields certfleet stores and displays for a certificate."""
    extensions = _extensions(cert)
    public_key = cert.public_key()
    key_type, key_size = describe_public_key(public_key)
    basic = _extension(extensions, x509.BasicConstraints)
    key_usage = _extension(extensions, x509.KeyUsage)
    eku = _extension(extensions, x509.ExtendedKeyUsage)
    aia = _extension(extensions, x509.AuthorityInformationAccess)
    crl = _extension(extensions, x509.CRLDistributionPoints)
    return CertificateInfo(
        common_name=_attribute(cert.subject, NameOID.COMMON_NAME),
        sans=subject_alt_names(extensions),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        issuer_common_name=_attribute(cert.issuer, NameOID.COMMON_NAME),
        issuer_organization=_attribute(cert.issuer, NameOID.ORGANIZATION_NAME),
        signature_algorithm=_signature_name(cert.signature_algorithm_oid),
        serial_number=serial_hex(cert.serial_number),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        key_size=key_size,
        sha1_thumbprint=_thumbprint(cert, "sha1"),
        sha256_thumbprint=_thumbprint(cert, "sha256"),
        self_signed=cert.subject == cert.issuer and _signature_verifies(cert, public_key),
        is_ca=basic is not None and basic.ca,
        key_usage=_key_usage_names(key_usage) if key_usage else [],
        extended_key_usage=[_EKU_NAMES.get(oid, oid.dotted_string) for oid in eku] if eku else [],
        basic_constraints=_basic_constraints_text(basic) if basic else None,
        authority_info_access=[_access_description_text(access) for access in aia] if aia else [],
        crl_distribution_points=[
            name.value
            for point in crl or []
            for name in point.full_name or []
            if isinstance(name, x509.UniformResourceIdentifier)
        ],
    )


def _extensions(cert: x509.Certificate) -> x509.Extensions:
    try:
        return cert.extensions
    except ValueError as exc:  # duplicate or malformed extensions
        raise CertificateFormatError(f"the certificate has invalid extensions: {exc}") from exc


def _extension(extensions: x509.Extensions, kind: type[_ExtensionT]) -> _ExtensionT | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _thumbprint(cert: x509.Certificate, algorithm: str) -> str:
    """Uppercase hex digest of the DER, as Windows shows thumbprints; an identifier, not a security check."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return hashlib.new(algorithm, der, usedforsecurity=False).hexdigest().upper()


def _attribute(name: x509.Name, oid: ObjectIdentifier) -> str | None:
    attributes = name.get_attributes_for_oid(oid)
    if not attributes:
        return None
    value = attributes[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _signature_name(oid: ObjectIdentifier) -> str:
    return _SIGNATURE_NAMES.get(oid, oid.dotted_string)


def _signature_verifies(cert: x509.Certificate, public_key: CertificatePublicKeyTypes) -> bool:
    """Whether `public_key` signed `cert`; unlike verify_directly_issued_by, this accepts SHA-1 and MD5."""
    signature, data = cert.signature, cert.tbs_certificate_bytes
    try:
        hash_algorithm = cert.signature_hash_algorithm
        if isinstance(public_key, _PURE_SIGNATURE_KEYS):
            public_key.verify(signature, data)
        elif hash_algorithm is None:
            return False
        elif isinstance(public_key, rsa.RSAPublicKey):
            parameters = cert.signature_algorithm_parameters
            # MD5 signatures come back without parameters; PKCS#1 v1.5 is the only padding they use.
            rsa_padding = parameters if isinstance(parameters, padding.PSS) else padding.PKCS1v15()
            public_key.verify(signature, data, rsa_padding, hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
        elif isinstance(public_key, dsa.DSAPublicKey):
            public_key.verify(signature, data, hash_algorithm)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
        return False
    return True


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer` (by name and signature) issued `cert`; accepts the legacy hashes old chains use."""
    return cert.issuer == issuer.subject and _signature_verifies(cert, issuer.public_key())


def _key_usage_names(usage: x509.KeyUsage) -> list[str]:
    flags = [
        (usage.digital_signature, "digitalSignature"),
        (usage.content_commitment, "nonRepudiation"),
        (usage.key_encipherment, "keyEncipherment"),
        (usage.data_encipherment, "dataEncipherment"),
        (usage.key_agreement, "keyAgreement"),
        (usage.key_cert_sign, "keyCertSign"),
        (usage.crl_sign, "cRLSign"),
    ]
    if usage.key_agreement:  # cryptography only defines these two when keyAgreement is set
        flags += [(usage.encipher_only, "encipherOnly"), (usage.decipher_only, "decipherOnly")]
    return [name for enabled, name in flags if enabled]


def _basic_constraints_text(basic: x509.BasicConstraints) -> str:
    if not basic.ca:
        return "CA:FALSE"
    return "CA:TRUE" if basic.path_length is None else f"CA:TRUE, pathlen:{basic.path_length}"


def _general_name_text(name: x509.GeneralName) -> str:
    """OpenSSL's rendering of a GeneralName, e.g. "DNS:example.com" or "IP Address:192.0.2.1"."""
    match name:
        case x509.DNSName():
            return f"DNS:{name.value}"
        case x509.IPAddress():
            return f"IP Address:{name.value}"
        case x509.RFC822Name():
            return f"email:{name.value}"
        case x509.UniformResourceIdentifier():
            return f"URI:{name.value}"
        case x509.DirectoryName():
            return f"DirName:{name.value.rfc4514_string()}"
        case x509.RegisteredID():
            return f"Registered ID:{name.value.dotted_string}"
        case x509.OtherName():
            return f"othername:{name.type_id.dotted_string}:{name.value.hex().upper()}"
    return str(name)


def _access_description_text(access: x509.AccessDescription) -> str:
    method = _ACCESS_METHOD_NAMES.get(access.access_method, access.access_method.dotted_string)
    return f"{method} - {_general_name_text(access.access_location)}"


def _colon_hex(data: bytes) -> str:
    return ":".join(f"{byte:02X}" for byte in data)


def _hex_lines(data: bytes, indent: str, width: int = 16) -> list[str]:
    return [indent + _colon_hex(data[i : i + width]) for i in range(0, len(data), width)]


@_decoding("show")
def certificate_text(cert: x509.Certificate) -> str:
    """Human-readable dump in the spirit of `openssl x509 -text`, for the "View Certificate" action."""
    oid = cert.signature_algorithm_oid
    signature_name = f"{_signature_name(oid)} ({oid.dotted_string})"
    lines = [
        "Certificate:",
        "    Data:",
        f"        Version: {cert.version.value + 1} (0x{cert.version.value:x})",
        f"        Serial Number: {serial_hex(cert.serial_number)}",
        f"        Signature Algorithm: {signature_name}",
        f"        Issuer: {cert.issuer.rfc4514_string()}",
        "        Validity",
        f"            Not Before: {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC",
        f"            Not After : {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC",
        f"        Subject: {cert.subject.rfc4514_string()}",
        "        Subject Public Key Info:",
        *_public_key_lines(cert.public_key()),
    ]
    extensions = _extensions(cert)
    if len(extensions):
        lines.append("        X509v3 extensions:")
        for extension in extensions:
            label = _EXTENSION_LABELS.get(extension.oid, extension.oid.dotted_string)
            lines.append(f"            {label}:{' critical' if extension.critical else ''}")
            lines.extend(f"                {line}" for line in _extension_lines(extension.value))
    lines += [
        f"    Signature Algorithm: {signature_name}",
        "    Signature Value:",
        *_hex_lines(cert.signature, "        "),
        f"SHA1 Fingerprint: {_thumbprint(cert, 'sha1')}",
        f"SHA256 Fingerprint: {_thumbprint(cert, 'sha256')}",
    ]
    return "\n".join(lines) + "\n"


def _public_key_lines(public_key: CertificatePublicKeyTypes) -> list[str]:
    algorithm, size = describe_public_key(public_key)
    lines = [f"            Public Key Algorithm: {algorithm}", f"                Public-Key: ({size} bit)"]
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        modulus = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        lines += ["                Modulus:", *_hex_lines(modulus, "                    ")]
        lines.append(f"                Exponent: {numbers.e} (0x{numbers.e:x})")
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        point = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        lines += ["                pub:", *_hex_lines(point, "                    ")]
        lines.append(f"                Curve: {public_key.curve.name}")
    return lines


def _extension_lines(value: x509.ExtensionType) -> list[str]:
    """One extension's values, one entry per line."""
    match value:
        case x509.BasicConstraints():
            return [_basic_constraints_text(value)]
        case x509.KeyUsage():
            return [", ".join(_key_usage_names(value))]
        case x509.ExtendedKeyUsage():
            return [", ".join(_EKU_NAMES.get(oid, oid.dotted_string) for oid in value)]
        case x509.SubjectAlternativeName() | x509.IssuerAlternativeName():
            return [", ".join(_general_name_text(name) for name in value)]
        case x509.SubjectKeyIdentifier():
            return [_colon_hex(value.digest)]
        case x509.AuthorityKeyIdentifier():
            lines = [f"keyid:{_colon_hex(value.key_identifier)}"] if value.key_identifier else []
            lines += [_general_name_text(name) for name in value.authority_cert_issuer or []]
            if value.authority_cert_serial_number is not None:
                lines.append(f"serial:{serial_hex(value.authority_cert_serial_number)}")
            return lines
        case x509.AuthorityInformationAccess() | x509.SubjectInformationAccess():
            return [_access_description_text(access) for access in value]
        case x509.CRLDistributionPoints() | x509.FreshestCRL():
            return [_distribution_point_text(point) for point in value]
        case x509.CertificatePolicies():
            return [_policy_text(policy) for policy in value]
        case x509.NameConstraints():
            permitted = [f"Permitted: {_general_name_text(n)}" for n in value.permitted_subtrees or []]
            return permitted + [f"Excluded: {_general_name_text(n)}" for n in value.excluded_subtrees or []]
        case x509.PrecertificateSignedCertificateTimestamps() | x509.SignedCertificateTimestamps():
            return [
                f"SCT from log {sct.log_id.hex().upper()} at {sct.timestamp:%Y-%m-%d %H:%M:%S} UTC" for sct in value
            ]
        case x509.UnrecognizedExtension():
            return _hex_lines(value.value, "")
    return [repr(value)]


def _distribution_point_text(point: x509.DistributionPoint) -> str:
    if point.full_name:
        return "Full Name: " + ", ".join(_general_name_text(name) for name in point.full_name)
    if point.relative_name:
        return f"Relative Name: {point.relative_name.rfc4514_string()}"
    return "CRL Issuer: " + ", ".join(_general_name_text(name) for name in point.crl_issuer or [])


def _policy_text(policy: x509.PolicyInformation) -> str:
    qualifiers = [
        f"CPS: {q}" if isinstance(q, str) else f"User Notice: {q.explicit_text or ''}"
        for q in policy.policy_qualifiers or []
    ]
    return "; ".join([f"Policy: {policy.policy_identifier.dotted_string}", *qualifiers])
