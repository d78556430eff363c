"""What a certificate is for: TLS server, TLS client, S/MIME, code signing or CA, and whether a server can serve it.

The decision reads, in this order (RFC 5280 §4.2.1.3, .9, .12 and the CA/Browser Forum profiles):

1. basic constraints CA:TRUE, or key usage keyCertSign: a CA certificate.
2. extended key usage, when present: serverAuth (or anyExtendedKeyUsage) makes a TLS server certificate;
   otherwise emailProtection S/MIME, codeSigning code signing, clientAuth TLS client; any other purpose
   (time stamping, OCSP signing, ...) is "other".
3. without extended key usage, the kinds of subject alternative names: a DNS name or IP address makes a TLS
   server certificate; only e-mail addresses make S/MIME; no SAN at all with an e-mail address in the
   subject and no host-like common name is S/MIME. Everything else (old v1 server certificates) is TLS server.

A TLS server can serve only a TLS server certificate whose key usage, when present, allows a handshake
(digitalSignature, keyEncipherment or keyAgreement).
"""

from __future__ import annotations

import enum
import re

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certfleet.pki.errors import CertificateFormatError


class Usage(enum.StrEnum):
    TLS_SERVER = "tls-server"
    TLS_CLIENT = "tls-client"
    SMIME = "smime"
    CODE_SIGNING = "code-signing"
    CA = "ca"
    OTHER = "other"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Usage.TLS_SERVER: "TLS server",
    Usage.TLS_CLIENT: "TLS client",
    Usage.SMIME: "S/MIME",
    Usage.CODE_SIGNING: "code signing",
    Usage.CA: "CA",
    Usage.OTHER: "other",
}
# One article per label, for sentences such as "this is an S/MIME certificate".
_ARTICLES = {Usage.SMIME: "an S/MIME", Usage.OTHER: "a special-purpose"}

_HOST_LIKE = re.compile(r"^(\*\.)?([A-Za-z0-9-]+\.)+[A-Za-z0-9-]+$|^[0-9.]+$|^[0-9A-Fa-f:]+$")


class NotServable(CertificateFormatError):
    """A certificate a TLS server cannot present; the message says why and what it is."""


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:  # duplicate or malformed extensions
        raise CertificateFormatError(f"the certificate has invalid extensions: {exc}") from exc


def classify(cert: x509.Certificate) -> Usage:
    """The certificate's purpose, by basic constraints, key usage, extended key usage and SAN kinds."""
    basic = _extension(cert, x509.BasicConstraints)
    key_usage = _extension(cert, x509.KeyUsage)
    if (isinstance(basic, x509.BasicConstraints) and basic.ca) or (
        isinstance(key_usage, x509.KeyUsage) and key_usage.key_cert_sign
    ):
        return Usage.CA
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if isinstance(eku, x509.ExtendedKeyUsage):
        purposes = set(eku)
        if purposes & {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}:
            return Usage.TLS_SERVER
        for oid, usage in (
            (ExtendedKeyUsageOID.EMAIL_PROTECTION, Usage.SMIME),
            (ExtendedKeyUsageOID.CODE_SIGNING, Usage.CODE_SIGNING),
            (ExtendedKeyUsageOID.CLIENT_AUTH, Usage.TLS_CLIENT),
        ):
            if oid in purposes:
                return usage
        return Usage.OTHER
    san = _extension(cert, x509.SubjectAlternativeName)
    if isinstance(san, x509.SubjectAlternativeName):
        if san.get_values_for_type(x509.DNSName) or san.get_values_for_type(x509.IPAddress):
            return Usage.TLS_SERVER
        if san.get_values_for_type(x509.RFC822Name):
            return Usage.SMIME
    emails = cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    host_like = any(isinstance(n.value, str) and _HOST_LIKE.fullmatch(n.value) for n in names)
    if san is None and emails and not host_like:
        return Usage.SMIME
    return Usage.TLS_SERVER


def described(usage: Usage | str) -> str:
    """ "an S/MIME certificate", "a CA certificate"."""
    usage = Usage(usage)
    return f"{_ARTICLES.get(usage, 'a ' + usage.label)} certificate"


def servable_problem(cert: x509.Certificate, server: str = "a TLS server") -> str | None:
    """Why `server` (e.g. "nginx") cannot present this certificate in a TLS handshake; None when it can."""
    usage = classify(cert)
    if usage is Usage.CA:
        return f"this is {described(usage)}: it issues certificates and cannot be served by {server}"
    if usage is not Usage.TLS_SERVER:
        return f"this is {described(usage)}: it cannot be served by {server}"
    key_usage = _extension(cert, x509.KeyUsage)
    if isinstance(key_usage, x509.KeyUsage) and not (
        key_usage.digital_signature or key_usage.key_encipherment or key_usage.key_agreement
    ):
        return (
            f"its key usage allows neither digitalSignature, keyEncipherment nor keyAgreement: "
            f"{server} cannot use it in a TLS handshake"
        )
    return None


def profile_problem(profile: str, server: str = "a TLS server") -> str | None:
    """The same refusal for a certificate not issued yet, by the profile it will be ordered with."""
    if profile == Usage.SMIME:
        return f"this is {described(Usage.SMIME)}: it cannot be served by {server}"
    return None
