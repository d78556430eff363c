from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from certfleet.pki.policy import PUBLIC_MAX_VALIDITY_DAYS, vulnerability_reasons

from .conftest import NOW, PKI, legacy_signed


def test_clean_certificate_has_no_reasons(pki: PKI) -> None:
    clean = pki.leaf("clean.example.com")
    assert vulnerability_reasons(clean.cert, publicly_trusted=True, now=NOW) == []
    assert vulnerability_reasons(clean.cert, publicly_trusted=False, now=NOW) == []


def test_default_now_is_the_current_time(pki: PKI) -> None:
    current = pki.leaf("current.example.com", not_before=datetime.now(UTC) - timedelta(days=1))
    assert vulnerability_reasons(current.cert, publicly_trusted=True) == []
    assert vulnerability_reasons(pki.leaf("old.example.com").cert, publicly_trusted=True) == ["expired on 2025-04-01"]


def test_ca_certificates_are_not_self_signed_leaves_nor_lifetime_capped(pki: PKI) -> None:
    assert vulnerability_reasons(pki.root.cert, publicly_trusted=True, now=NOW) == []
    assert vulnerability_reasons(pki.intermediate.cert, publicly_trusted=True, now=NOW) == []


@pytest.mark.parametrize(
    ("algorithm", "size", "reason"),
    [
        ("rsa", 1024, "RSA key of 1024 bits is below the 2048-bit minimum"),
        ("ec", 192, "EC key of 192 bits is below the 256-bit minimum"),
        ("dsa", 1024, "DSA key of 1024 bits is below the 2048-bit minimum"),
    ],
)
def test_weak_keys(pki: PKI, algorithm: str, size: int, reason: str) -> None:
    weak = pki.leaf("weak.example.com", key=pki.key(algorithm, size))
    assert vulnerability_reasons(weak.cert, publicly_trusted=False, now=NOW) == [reason]


@pytest.mark.parametrize(
    ("digest", "reason"),
    [
        ("sha1", "signed with SHA-1 (SHA1RSA)"),
        ("md5", "signed with MD5 (MD5RSA)"),
        ("md2", "signed with MD2 (MD2RSA)"),
    ],
)
def test_weak_signature_hashes(pki: PKI, digest: str, reason: str) -> None:
    leaf = pki.leaf("legacy.example.com")
    intermediate_key = pki.intermediate.key
    assert isinstance(intermediate_key, rsa.RSAPrivateKey)
    cert = legacy_signed(leaf, intermediate_key, digest)
    assert vulnerability_reasons(cert, publicly_trusted=True, now=NOW) == [reason]


def test_expired(pki: PKI) -> None:
    expired = pki.leaf("expired.example.com", not_before=datetime(2024, 1, 1, tzinfo=UTC), days=121)
    assert vulnerability_reasons(expired.cert, publicly_trusted=False, now=NOW) == ["expired on 2024-05-01"]


def test_not_yet_valid(pki: PKI) -> None:
    future = pki.leaf("future.example.com", not_before=datetime(2030, 1, 1, tzinfo=UTC))
    assert vulnerability_reasons(future.cert, publicly_trusted=False, now=NOW) == ["not valid until 2030-01-01"]


def test_self_signed_leaf(pki: PKI) -> None:
    self_signed = pki.issue("selfie.example.com", key=pki.key("ec", 256), self_signed=True)
    assert vulnerability_reasons(self_signed.cert, publicly_trusted=False, now=NOW) == ["self-signed leaf certificate"]


def test_validity_cap_applies_only_to_publicly_trusted_leaves(pki: PKI) -> None:
    long_lived = pki.leaf("long.example.com", days=825)
    assert vulnerability_reasons(long_lived.cert, publicly_trusted=True, now=NOW) == [
        "validity of 825 days exceeds the 398 days allowed for publicly trusted certificates"
    ]
    assert vulnerability_reasons(long_lived.cert, publicly_trusted=False, now=NOW) == []


def test_validity_cap_boundary(pki: PKI) -> None:
    assert PUBLIC_MAX_VALIDITY_DAYS == 398
    at_limit = pki.leaf("limit.example.com", days=398)
    one_over = pki.leaf("over.example.com", days=399)
    assert vulnerability_reasons(at_limit.cert, publicly_trusted=True, now=NOW) == []
    half_day_over = pki.leaf("half.example.com", days=398.5)
    for over in (one_over, half_day_over):
        assert vulnerability_reasons(over.cert, publicly_trusted=True, now=NOW) == [
            "validity of 399 days exceeds the 398 days allowed for publicly trusted certificates"
        ]


def test_every_reason_at_once_in_a_stable_order(pki: PKI) -> None:
    key = pki.rsa_key(1024)
    original = pki.issue(
        "everything-wrong.example.com",
        key=key,
        self_signed=True,
        not_before=datetime(2022, 1, 1, tzinfo=UTC),
        days=825,
    )
    cert = legacy_signed(original, key, "sha1")
    assert vulnerability_reasons(cert, publicly_trusted=True, now=NOW) == [
        "RSA key of 1024 bits is below the 2048-bit minimum",
        "signed with SHA-1 (SHA1RSA)",
        "expired on 2024-04-05",
        "self-signed leaf certificate",
        "validity of 825 days exceeds the 398 days allowed for publicly trusted certificates",
    ]
