"""Certificate signing requests: build them with validated SANs, load and verify uploaded ones."""

import ipaddress
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.keys import PrivateKey

_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_DNS_LENGTH = 253
MAX_SANS = 1000  # public CAs take 100-250 names; a bound keeps hostile lists from costing time and memory


def _dns_name_problem(name: str) -> str | None:
    if len(name) > _MAX_DNS_LENGTH:
        return f"is longer than {_MAX_DNS_LENGTH} characters"
    labels = name.removeprefix("*.").split(".")
    if all(_DNS_LABEL.fullmatch(label) for label in labels):
        return None
    return "is not a valid DNS name (letters, digits and hyphens between dots, optionally starting with '*.')"


def _email_problem(address: str) -> str | None:
    local, _, domain = address.partition("@")
    if not local or "@" in domain or " " in local or domain.startswith("*.") or _dns_name_problem(domain):
        return "is not a valid email address"
    return None


def _general_name(value: str) -> x509.GeneralName:
    """Turn a SAN as typed by a user into the GeneralName it denotes, or say why it is invalid."""
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        pass
    if "@" in value:
        problem = _email_problem(value)
        if problem is None:
            return x509.RFC822Name(value)
    else:
        problem = _dns_name_problem(value.lower())
        if problem is None:
            return x509.DNSName(value.lower())
    raise CertificateFormatError(f"subject alternative name {value!r} {problem}")


def _common_name_as_san(common_name: str) -> x509.GeneralName | None:
    """The SAN a common name implies; browsers ignore the CN, so a host name CN must be a SAN too."""
    try:
        return _general_name(common_name)
    except CertificateFormatError:
        return None


def build_csr(
    key: PrivateKey,
    common_name: str,
    sans: Sequence[str] = (),
    *,
    organization: str | None = None,
) -> x509.CertificateSigningRequest:
    """Build a SHA-256 signed CSR; a host name, IP or email common name is also listed as a SAN."""
    if isinstance(sans, str):  # a str is a Sequence[str] too: it would become one SAN per character
        raise TypeError("sans must be a sequence of names, not a single string")
    common_name = common_name.strip()
    if len(sans) > MAX_SANS:
        raise CertificateFormatError(f"a CSR takes at most {MAX_SANS} subject alternative names, not {len(sans)}")
    names = [_general_name(san.strip()) for san in sans]
    if common_name and (implied := _common_name_as_san(common_name)) is not None and implied not in names:
        names.insert(0, implied)
    if not common_name and not names:
        raise CertificateFormatError("a CSR needs a common name or at least one subject alternative name")
    unique_names = list(dict.fromkeys(names))

    attributes = [(NameOID.ORGANIZATION_NAME, organization), (NameOID.COMMON_NAME, common_name)]
    try:
        subject = x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes if value])
    except ValueError as exc:  # e.g. a common name longer than the 64 characters X.509 allows
        raise CertificateFormatError(f"invalid subject: {exc}") from exc

    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if unique_names:
        # RFC 5280: with an empty subject the SAN extension carries the identity and must be critical.
        builder = builder.add_extension(x509.SubjectAlternativeName(unique_names), critical=not subject)
    return builder.sign(key, hashes.SHA256())


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Load a PEM or DER CSR and make sure its self-signature verifies (proof the requester holds the key)."""
    try:
        csr = x509.load_pem_x509_csr(data) if b"-----BEGIN" in data else x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise CertificateFormatError(
            "not a PEM or DER certificate signing request; upload the file starting with "
            "'-----BEGIN CERTIFICATE REQUEST-----'"
        ) from exc
    try:  # decoded lazily: a damaged key, name or extension only fails here (found by tests/fuzz)
        valid = csr.is_signature_valid
        _ = csr.subject, csr.extensions
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateFormatError(f"the CSR is damaged: {exc}; regenerate it") from exc
    if not valid:
        raise CertificateFormatError("CSR signature does not verify; regenerate the CSR with its private key")
    return csr


def csr_to_pem(csr: x509.CertificateSigningRequest) -> str:
    """PEM text of a CSR, as CAs and forms expect it."""
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def subject_alt_names(extensions: x509.Extensions) -> list[str]:
    """DNS, IP and email SANs of a CSR's or certificate's extensions, as plain strings."""
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    values: list[str] = []
    for name in san:
        if isinstance(name, x509.DNSName | x509.RFC822Name):
            values.append(name.value)
        elif isinstance(name, x509.IPAddress):
            values.append(str(name.value))
    return values


def csr_sans(csr: x509.CertificateSigningRequest) -> list[str]:
    """DNS, IP and email SANs requested by a CSR."""
    return subject_alt_names(csr.extensions)
