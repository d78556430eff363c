"""The deployment job carries the exact certificate being deployed (its SHA-256), so the proof can accept the served
leaf byte for byte; a job for another serial (an older deployment's) carries none and the proof checks the issuer's
signature instead."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certfleet.jobs.db_store import _leaf_sha256
from certfleet.pki.parse import serial_hex

NOW = dt.datetime.now(dt.UTC)


def _pem(serial: int) -> tuple[x509.Certificate, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert, cert.public_bytes(serialization.Encoding.PEM).decode()


def test_the_current_certificate_carries_its_fingerprint() -> None:
    cert, pem = _pem(0x1234ABCD)
    assert _leaf_sha256(pem, serial_hex(cert.serial_number)) == cert.fingerprint(hashes.SHA256()).hex()


def test_another_serial_or_none_carries_no_fingerprint() -> None:
    _, pem = _pem(0x1234ABCD)
    assert _leaf_sha256(pem, "0ABC") is None  # an older deployment of the row: not this certificate
    assert _leaf_sha256(pem, "not hex") is None
    assert _leaf_sha256(pem, None) is None
    assert _leaf_sha256(None, "0ABC") is None
