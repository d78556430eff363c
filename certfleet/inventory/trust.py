"""Public or private: does a served chain verify to the system's trusted roots, or to a registered private root?

The system roots are certifi's bundle plus the operating system's (/etc/ssl/certs), loaded once per
process. Verification uses cryptography's path builder (`cryptography.x509.verification`): the leaf is
checked as a client-style end entity with no name or key-usage rules (the question is who issued it, not
whether a browser would accept it for some host), the CAs above it by the Web PKI rules. The check is
made at the middle of the leaf's validity, so an expired certificate from a public CA is still Public.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import certifi
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import verification

from certfleet.models.orm import CAType

SYSTEM_BUNDLES = (Path(certifi.where()), Path("/etc/ssl/certs/ca-certificates.crt"))
SYSTEM_DIRECTORY = Path("/etc/ssl/certs")


# A CA must still say it is one; nothing else is required of a private CA.
_LENIENT_CA = verification.ExtensionPolicy.permit_all().require_present(
    x509.BasicConstraints, verification.Criticality.AGNOSTIC, None
)


class TrustVerdict(NamedTuple):
    ca_type: CAType
    anchor: str | None  # the root the chain verifies to, by name; None when it verifies to none
    publicly_trusted: bool
    public_rules: bool = False  # hold it to the public CA rules: publicly trusted, or its private root is chosen

    @property
    def not_public_because(self) -> str:
        """Why the public-only rules were not applied, in the words of the policy view."""
        if self.anchor is None:
            return "the chain verifies to no known root"
        return f"private CA ({self.anchor})"


def _name_of(cert: x509.Certificate) -> str:
    for oid in (x509.NameOID.COMMON_NAME, x509.NameOID.ORGANIZATIONAL_UNIT_NAME, x509.NameOID.ORGANIZATION_NAME):
        values = cert.subject.get_attributes_for_oid(oid)
        if values:
            return str(values[0].value)
    return cert.subject.rfc4514_string()


def _fingerprint(cert: x509.Certificate) -> bytes:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def load_system_roots(
    bundles: Iterable[Path] = SYSTEM_BUNDLES, directory: Path = SYSTEM_DIRECTORY
) -> list[x509.Certificate]:
    """Every root of the bundles (and of *.pem/*.crt in `directory` when no bundle exists), each once."""
    roots: dict[bytes, x509.Certificate] = {}
    sources = [path for path in bundles if path.is_file()]
    if not sources and directory.is_dir():
        sources = sorted(p for p in directory.iterdir() if p.suffix in {".pem", ".crt"} and p.is_file())
    for path in sources:
        try:
            with warnings.catch_warnings():  # a few old roots have negative serials; they still anchor chains
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                certs = x509.load_pem_x509_certificates(path.read_bytes())
            for cert in certs:
                roots.setdefault(_fingerprint(cert), cert)
        except ValueError:
            continue  # one unreadable file must not hide the other roots
    return list(roots.values())


class TrustStore:
    """System roots and the organisation's private roots; `classify` says which one a chain verifies to."""

    def __init__(
        self,
        system_roots: Sequence[x509.Certificate],
        private_roots: Sequence[tuple[str, x509.Certificate]],
        public_rules_roots: Iterable[x509.Certificate] = (),
    ):
        self._public_rules = {_fingerprint(cert) for cert in public_rules_roots}
        self._system = verification.Store(list(system_roots)) if system_roots else None
        self._system_names = {_fingerprint(c): _name_of(c) for c in system_roots}
        self._private = verification.Store([cert for _, cert in private_roots]) if private_roots else None
        self._private_names = {_fingerprint(cert): name for name, cert in private_roots}
        self._paths: dict[tuple[bytes, tuple[bytes, ...]], tuple[TrustVerdict, x509.Certificate | None]] = {}

    def classify(self, chain: Sequence[x509.Certificate]) -> TrustVerdict:
        """Chain is leaf first, as served (intermediates may be missing, extra, or include the root)."""
        leaf, rest = chain[0], list(chain[1:])
        leaf_print = _fingerprint(leaf)
        if leaf_print in self._private_names:  # a registered self-signed certificate
            return TrustVerdict(
                CAType.PRIVATE, self._private_names[leaf_print], False, leaf_print in self._public_rules
            )
        if leaf.issuer == leaf.subject:  # self-issued: trusted only if it is itself a root
            if leaf_print in self._system_names:
                return TrustVerdict(CAType.PUBLIC, self._system_names[leaf_print], True, True)
            return _UNTRUSTED
        # Thousands of leaves share a few issuing paths: verify a path once, then only each leaf's signature.
        key = (leaf.issuer.public_bytes(), tuple(_fingerprint(c) for c in rest))
        cached = self._paths.get(key)
        if cached is not None:
            verdict, issuer = cached
            if issuer is None or _directly_issued(leaf, issuer):
                return verdict
        verdict, issuer = self._verify_path(leaf, rest)
        if len(self._paths) >= _PATH_CACHE_SIZE:
            self._paths.clear()
        self._paths[key] = (verdict, issuer)
        return verdict

    def _verify_path(
        self, leaf: x509.Certificate, rest: list[x509.Certificate]
    ) -> tuple[TrustVerdict, x509.Certificate | None]:
        at = _middle_of_validity(leaf)
        path = _verify(self._system, leaf, rest, at)
        if path is not None:
            anchor = path[-1]
            name = self._system_names.get(_fingerprint(anchor), _name_of(anchor))
            return TrustVerdict(CAType.PUBLIC, name, True, True), path[1]
        path = _verify(self._private, leaf, rest, at, lenient=True)
        if path is not None:
            anchor = path[-1]
            name = self._private_names.get(_fingerprint(anchor), _name_of(anchor))
            return TrustVerdict(CAType.PRIVATE, name, False, _fingerprint(anchor) in self._public_rules), path[1]
        return _UNTRUSTED, None


_UNTRUSTED = TrustVerdict(CAType.PRIVATE, None, False)
_PATH_CACHE_SIZE = 4096


def _directly_issued(leaf: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _middle_of_validity(cert: x509.Certificate) -> datetime:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return (start + (end - start) / 2).astimezone(UTC) if end > start else start


def _verify(
    store: verification.Store | None,
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    at: datetime,
    *,
    lenient: bool = False,
) -> list[x509.Certificate] | None:
    if store is None:
        return None
    # Private CAs are often built by hand without the extensions the Web PKI requires: only the path counts.
    ca_policy = _LENIENT_CA if lenient else verification.ExtensionPolicy.webpki_defaults_ca()
    verifier = (
        verification.PolicyBuilder()
        .store(store)
        .time(at)
        .extension_policies(ca_policy=ca_policy, ee_policy=verification.ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    try:
        return list(verifier.verify(leaf, intermediates).chain)
    except (verification.VerificationError, ValueError):
        return None


_lock = threading.Lock()
_system_roots: list[x509.Certificate] | None = None


def system_roots() -> list[x509.Certificate]:
    """Loaded once per process (about 150 roots, a few milliseconds)."""
    global _system_roots
    with _lock:
        if _system_roots is None:
            _system_roots = load_system_roots()
        return _system_roots
