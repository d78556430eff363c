"""From a chain of DER certificates to the inventory's columns, with the toolkit in `certfleet.pki`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certfleet.inventory.trust import TrustStore, TrustVerdict
from certfleet.models.orm import CertificateStatus, DeploymentType
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.keys import key_spec_of
from certfleet.pki.parse import CertificateInfo, describe, order_chain
from certfleet.pki.policy import Outcome, RuleOutcome, policy_outcomes
from certfleet.pki.usage import Usage, classify

DEFAULT_KEY_SPEC = "rsa2048"


def thumbprint(der: bytes) -> str:
    """SHA-256 of the DER in uppercase hex, as `describe` and the certificates table spell it."""
    return hashlib.sha256(der).hexdigest().upper()


@dataclass(frozen=True)
class CertificateFacts:
    """Everything the inventory stores about one certificate, computed once per distinct certificate."""

    info: CertificateInfo
    verdict: TrustVerdict
    reasons: list[str]
    pem_chain: str
    key_spec: str | None  # the key certfleet would order on renewal; None when the key type is not one it issues
    usage: Usage
    policy: list[RuleOutcome]
    awaiting_issuer: str | None  # see issuer_key: the chain stops below its root

    @property
    def issuer_ca(self) -> str:
        return self.info.issuer_common_name or self.info.issuer_organization or self.info.issuer


def issuer_key(name: x509.Name) -> str:
    """How a chain that stops below its root finds the CA that completes it: SHA-256 of the DER name."""
    return hashlib.sha256(name.public_bytes()).hexdigest()


def awaiting_issuer(chain: Sequence[x509.Certificate]) -> str | None:
    """The issuer key of the chain's top certificate, or None when the chain ends at a self-issued root."""
    top = chain[-1]
    return None if top.issuer == top.subject else issuer_key(top.issuer)


def load_chain(ders: Sequence[bytes]) -> list[x509.Certificate]:
    try:
        return [x509.load_der_x509_certificate(der) for der in ders]
    except ValueError as exc:
        raise CertificateFormatError(f"the certificate cannot be decoded: {exc}") from exc


def analyze(chain: Sequence[x509.Certificate], trust: TrustStore, now: datetime) -> CertificateFacts:
    """Decode, classify and check a chain (leaf first). Raises CertificateFormatError for unusable data."""
    if not chain:
        raise CertificateFormatError("no certificate was given")
    leaf = chain[0]
    info = describe(leaf)
    verdict = trust.classify(chain)
    policy = policy_outcomes(
        leaf, public_rules=verdict.public_rules, not_public_because=verdict.not_public_because, now=now, info=info
    )
    reasons = [o.detail for o in policy if o.outcome is Outcome.FAILED]
    pem = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain).decode("ascii")
    spec = key_spec_of(leaf.public_key())
    key_spec = None if spec is None else (f"rsa{spec.size}" if spec.algorithm == "rsa" else f"ec-p{spec.size}")
    waiting = None if verdict.anchor else awaiting_issuer(chain)  # a known anchor completes it for trust
    return CertificateFacts(info, verdict, reasons, pem, key_spec, classify(leaf), policy, waiting)


def analyze_material(certificates: Sequence[x509.Certificate], trust: TrustStore, now: datetime) -> CertificateFacts:
    """For files: put the leaf first (files list certificates in any order) and analyze."""
    return analyze(order_chain(certificates), trust, now)


def certificate_values(facts: CertificateFacts, *, now: datetime, discovery_bot_id: int | None) -> dict[str, Any]:
    """Column values of a new inventory row for this certificate (status Discovered, or Expired)."""
    info = facts.info
    return {
        "common_name": info.display_name[:255],
        "sans": info.sans,
        "status": CertificateStatus.EXPIRED if info.not_after <= now else CertificateStatus.DISCOVERED,
        "discovery_bot_id": discovery_bot_id,
        "issuer_ca": facts.issuer_ca[:255],
        "ca_type": facts.verdict.ca_type,
        "trust_anchor": facts.verdict.anchor[:255] if facts.verdict.anchor else None,
        "signature_algorithm": info.signature_algorithm[:40],
        "serial_number": info.serial_number[:80],
        "not_before": info.not_before,
        "expires_on": info.not_after,
        "issued_on": info.not_before,
        "key_type": info.key_type[:20],
        "key_size": info.key_size,
        "key_spec": facts.key_spec or DEFAULT_KEY_SPEC,
        "sha1_thumbprint": info.sha1_thumbprint,
        "sha256_thumbprint": info.sha256_thumbprint,
        "vulnerable": bool(facts.reasons),
        "vulnerability_reasons": facts.reasons,
        "pem_chain": facts.pem_chain,
        "usage": facts.usage.value,
        "awaiting_issuer": facts.awaiting_issuer,
        # Renewal orders what the certificate is: an S/MIME certificate is re-ordered as S/MIME.
        "profile": "smime" if facts.usage is Usage.SMIME else "tls-server",
        "deployment_type": DeploymentType.MANUAL,  # someone else put it there; Configure makes it Automated
        "tags": [],
        "created_at": now,
        "updated_at": now,
    }
