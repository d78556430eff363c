"""ACME Renewal Information (RFC 9773): the CertID, reading an answer, Retry-After, the chosen time."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certfleet.renewal import ari

NOW = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)


def _leaf(serial: int, key_id: bytes | None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ari.test")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=90))
    )
    if key_id is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(key_id, None, None), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_cert_id_is_the_rfc_example() -> None:
    """RFC 9773 section 4.1: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4 and serial
    0x87654321 (DER 00 87 65 43 21) give aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE."""
    key_id = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    assert ari.cert_id(_leaf(0x87654321, key_id)) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    assert ari.cert_id(_leaf(0x7F, key_id)).endswith(".fw")  # no sign byte needed below 0x80


def test_a_certificate_without_an_authority_key_identifier_has_no_cert_id() -> None:
    with pytest.raises(ari.AriError, match="Authority Key Identifier"):
        ari.cert_id(_leaf(5, None))


def test_an_answer_is_read_and_a_bad_one_refused() -> None:
    body = {
        "suggestedWindow": {"start": "2026-12-06T00:00:00Z", "end": "2026-12-07T12:00:00+00:00"},
        "explanationURL": "https://ca.example/incident/42",
    }
    info = ari.parse(body, "7200", NOW)
    assert (info.start, info.end) == (datetime(2026, 12, 6, tzinfo=UTC), datetime(2026, 12, 7, 12, tzinfo=UTC))
    assert info.explanation_url == "https://ca.example/incident/42"
    assert info.poll_after == timedelta(hours=2)
    assert ari.parse({**body, "explanationURL": "javascript:alert(1)"}, None, NOW).explanation_url is None
    for bad in (
        {},
        {"suggestedWindow": {"start": "2026-12-06T00:00:00Z"}},
        {"suggestedWindow": {"start": "2026-12-06T00:00:00", "end": "2026-12-07T00:00:00"}},  # no offset
        {"suggestedWindow": {"start": "2026-12-07T00:00:00Z", "end": "2026-12-06T00:00:00Z"}},
    ):
        with pytest.raises(ari.AriError):
            ari.parse(bad, None, NOW)


def test_retry_after_is_honoured_within_a_minute_and_a_day() -> None:
    assert ari.poll_delay(None, NOW) == timedelta(hours=6)
    assert ari.poll_delay("21600", NOW) == timedelta(hours=6)
    assert ari.poll_delay("5", NOW) == timedelta(minutes=1)
    assert ari.poll_delay("604800", NOW) == timedelta(days=1)
    assert ari.poll_delay("Fri, 04 Dec 2026 23:00:00 GMT", NOW) == timedelta(hours=3)
    assert ari.poll_delay("soon", NOW) == timedelta(hours=6)


def test_the_time_is_random_inside_the_window_and_kept_while_it_stays_inside() -> None:
    info = ari.parse({"suggestedWindow": {"start": "2026-12-06T00:00:00Z", "end": "2026-12-08T00:00:00Z"}}, None, NOW)
    picks = {ari.choose(info, None, random.Random(seed)) for seed in range(20)}
    assert all(info.start <= p <= info.end for p in picks)
    assert len(picks) == 20  # spread, not one time for a fleet
    kept = datetime(2026, 12, 7, tzinfo=UTC)
    assert ari.choose(info, kept) == kept
    moved = ari.choose(info, datetime(2026, 12, 1, tzinfo=UTC), random.Random(1))
    assert info.start <= moved <= info.end
