"""Why a certificate counts as vulnerable: weak keys, weak signatures, bad dates, self-signed leaves."""

import math
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

from certfleet.pki.parse import CertificateInfo, describe

# CA/Browser Forum Baseline Requirements: maximum lifetime of a publicly trusted TLS certificate.
PUBLIC_MAX_VALIDITY_DAYS = 398

_MINIMUM_KEY_BITS = {"RSA": 2048, "DSA": 2048, "EC": 256}
_WEAK_HASHES: tuple[tuple[type[hashes.HashAlgorithm], str], ...] = (
    (hashes.SHA1, "SHA-1"),
    (hashes.MD5, "MD5"),
)


def vulnerability_reasons(
    cert: x509.Certificate,
    *,
    publicly_trusted: bool,
    now: datetime | None = None,
    info: CertificateInfo | None = None,
) -> list[str]:
    """Plain-sentence reasons the certificate is vulnerable; an empty list means it is not.

    Pass `info` when the caller has already described the certificate (describing costs ~0.2 ms).
    """
    now = now or datetime.now(UTC)
    info = info or describe(cert)
    reasons: list[str] = []

    minimum = _MINIMUM_KEY_BITS.get(info.key_type)
    if minimum is not None and info.key_size < minimum:
        reasons.append(f"{info.key_type} key of {info.key_size} bits is below the {minimum}-bit minimum")

    weak_hash = _weak_signature_hash(cert)
    if weak_hash:
        reasons.append(f"signed with {weak_hash} ({info.signature_algorithm})")

    if now > info.not_after:
        reasons.append(f"expired on {info.not_after:%Y-%m-%d}")
    if now < info.not_before:
        reasons.append(f"not valid until {info.not_before:%Y-%m-%d}")

    if info.self_signed and not info.is_ca:
        reasons.append("self-signed leaf certificate")

    # Roots and intermediates live for years by design; the lifetime cap applies to leaves.
    if publicly_trusted and not info.is_ca:
        days = math.ceil((info.not_after - info.not_before) / timedelta(days=1))
        if days > PUBLIC_MAX_VALIDITY_DAYS:
            reasons.append(
                f"validity of {days} days exceeds the {PUBLIC_MAX_VALIDITY_DAYS} days allowed "
                "for publicly trusted certificates"
            )
    return reasons


def _weak_signature_hash(cert: x509.Certificate) -> str | None:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:  # e.g. MD2, which cryptography no longer knows
        return "MD2" if cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.2" else None
    for weak, label in _WEAK_HASHES:
        if isinstance(algorithm, weak):
            return label
    return None
