"""Why a certificate counts as vulnerable: weak keys, weak signatures, bad dates, self-signed leaves, and the
public CA lifetime limit. Every rule reports its outcome (passed, failed, not applicable and why), so a rule
that was not applied says so instead of looking like a pass."""

import enum
import math
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from pydantic import BaseModel

from certfleet.pki.parse import CertificateInfo, describe
from certfleet.pki.usage import Usage, classify

# CA/Browser Forum Baseline Requirements: maximum lifetime of a publicly trusted TLS certificate.
PUBLIC_MAX_VALIDITY_DAYS = 398

_MINIMUM_KEY_BITS = {"RSA": 2048, "DSA": 2048, "EC": 256}
_WEAK_HASHES: tuple[tuple[type[hashes.HashAlgorithm], str], ...] = (
    (hashes.SHA1, "SHA-1"),
    (hashes.MD5, "MD5"),
)


class Outcome(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_APPLICABLE = "not applicable"


class RuleOutcome(BaseModel):
    """One rule's verdict on one certificate: "398-day limit: not applicable, private CA"."""

    rule: str
    outcome: Outcome
    detail: str  # the failure reason (as listed under Vulnerable), or why the rule passed or was not applied

    def __str__(self) -> str:
        return f"{self.rule}: {self.outcome.value}, {self.detail}"


KEY_SIZE = "Key size"
SIGNATURE_HASH = "Signature hash"
VALIDITY_DATES = "Validity dates"
SELF_SIGNED = "Self-signed leaf"
LIFETIME_LIMIT = f"{PUBLIC_MAX_VALIDITY_DAYS}-day limit"


def policy_outcomes(
    cert: x509.Certificate,
    *,
    public_rules: bool,
    not_public_because: str = "private CA",
    now: datetime | None = None,
    info: CertificateInfo | None = None,
) -> list[RuleOutcome]:
    """Every rule with its outcome. `public_rules`: the chain is publicly trusted, or an admin holds its private
    root to the public rules; otherwise the public-only rules are "not applicable, `not_public_because`"."""
    now = now or datetime.now(UTC)
    info = info or describe(cert)
    outcomes: list[RuleOutcome] = []

    minimum = _MINIMUM_KEY_BITS.get(info.key_type)
    if minimum is None:
        outcomes.append(_na(KEY_SIZE, f"no minimum is set for {info.key_type} keys"))
    elif info.key_size < minimum:
        outcomes.append(
            _failed(KEY_SIZE, f"{info.key_type} key of {info.key_size} bits is below the {minimum}-bit minimum")
        )
    else:
        outcomes.append(_passed(KEY_SIZE, f"{info.key_type} key of {info.key_size} bits"))

    weak_hash = _weak_signature_hash(cert)
    if weak_hash:
        outcomes.append(_failed(SIGNATURE_HASH, f"signed with {weak_hash} ({info.signature_algorithm})"))
    else:
        outcomes.append(_passed(SIGNATURE_HASH, f"signed with {info.signature_algorithm}"))

    if now > info.not_after:
        outcomes.append(_failed(VALIDITY_DATES, f"expired on {info.not_after:%Y-%m-%d}"))
    elif now < info.not_before:
        outcomes.append(_failed(VALIDITY_DATES, f"not valid until {info.not_before:%Y-%m-%d}"))
    else:
        outcomes.append(_passed(VALIDITY_DATES, f"valid until {info.not_after:%Y-%m-%d}"))

    if info.is_ca:
        outcomes.append(_na(SELF_SIGNED, "CA certificate"))
    elif info.self_signed:
        outcomes.append(_failed(SELF_SIGNED, "self-signed leaf certificate"))
    else:
        outcomes.append(_passed(SELF_SIGNED, "issued by a CA"))

    # Roots and intermediates live for years by design; the lifetime cap applies to TLS server leaves.
    usage = classify(cert)
    days = math.ceil((info.not_after - info.not_before) / timedelta(days=1))
    if info.is_ca or usage is Usage.CA:
        outcomes.append(_na(LIFETIME_LIMIT, "CA certificate"))
    elif usage is not Usage.TLS_SERVER:
        outcomes.append(_na(LIFETIME_LIMIT, f"{usage.label} certificate, the limit is for TLS server certificates"))
    elif not public_rules:
        outcomes.append(_na(LIFETIME_LIMIT, not_public_because))
    elif days > PUBLIC_MAX_VALIDITY_DAYS:
        outcomes.append(
            _failed(
                LIFETIME_LIMIT,
                f"validity of {days} days exceeds the {PUBLIC_MAX_VALIDITY_DAYS} days allowed "
                "for publicly trusted certificates",
            )
        )
    else:
        outcomes.append(_passed(LIFETIME_LIMIT, f"validity of {days} days"))
    return outcomes


def _passed(rule: str, detail: str) -> RuleOutcome:
    return RuleOutcome(rule=rule, outcome=Outcome.PASSED, detail=detail)


def _failed(rule: str, detail: str) -> RuleOutcome:
    return RuleOutcome(rule=rule, outcome=Outcome.FAILED, detail=detail)


def _na(rule: str, detail: str) -> RuleOutcome:
    return RuleOutcome(rule=rule, outcome=Outcome.NOT_APPLICABLE, detail=detail)


def vulnerability_reasons(
    cert: x509.Certificate,
    *,
    publicly_trusted: bool,
    now: datetime | None = None,
    info: CertificateInfo | None = None,
) -> list[str]:
    """Plain-sentence reasons the certificate is vulnerable (the failed rules); an empty list means it is not.

    `publicly_trusted`: apply the public CA rules too. Pass `info` when the caller has already described the
    certificate (describing costs ~0.2 ms).
    """
    outcomes = policy_outcomes(cert, public_rules=publicly_trusted, now=now, info=info)
    return [o.detail for o in outcomes if o.outcome is Outcome.FAILED]


def _weak_signature_hash(cert: x509.Certificate) -> str | None:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:  # e.g. MD2, which cryptography no longer knows
        return "MD2" if cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.2" else None
    for weak, label in _WEAK_HASHES:
        if isinstance(algorithm, weak):
            return label
    return None
