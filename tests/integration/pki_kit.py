"""Certificates for handler tests that run without a database: the built-in CA's code, in memory."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from cryptography import x509

from certfleet.connectors.base import CertificateBundle, IssueRequest
from certfleet.connectors.ca.local import CAMaterial, LocalCA, create_ca_material
from certfleet.pki.bundle import chain_to_pem
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.keys import KeySpec, generate_private_key, private_key_to_pem
from certfleet.pki.parse import load_material


class _NoRevocations:
    def add(self, serial_number: int, reason: x509.ReasonFlags, at: datetime) -> None:
        raise NotImplementedError

    def revoked(self) -> Sequence[tuple[int, x509.ReasonFlags, datetime]]:
        return []


@lru_cache(maxsize=1)
def _ca() -> CAMaterial:
    return create_ca_material("Handler test")


def issued_bundle(common_name: str) -> CertificateBundle:
    """A leaf from a two-level CA with its key: what deploy-certificate hands a handler."""
    key = generate_private_key(KeySpec(algorithm="ec", size=256))
    csr = csr_to_pem(build_csr(key, common_name, [common_name]))
    result = LocalCA(_ca(), _NoRevocations()).issue(IssueRequest(csr_pem=csr, idempotency_key=common_name))
    chain = load_material((result.pem_chain or "").encode()).certificates
    intermediates = [c for c in chain[1:] if c.subject != c.issuer]
    return CertificateBundle(chain_to_pem(chain[:1]), chain_to_pem(intermediates), private_key_to_pem(key))


def ca_root_pem() -> bytes:
    """The root the bundles above chain to: what a client trusts (a --ca-bundle file)."""
    return chain_to_pem([_ca().root_cert])
