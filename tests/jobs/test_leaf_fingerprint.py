"""The deployment job carries the exact certificate being deployed (its SHA-256), so the proof can accept the served
leaf byte for byte; a job for another serial (an older deployment's) carries none and the proof checks the issuer's
signature instead."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certfleet.jobs.db_store import _leaf_sha256
from certfleet.pki.parse import serial_hex
from tests.connectors.servers.test_probe import write_pair

SERIAL = 0x1234ABCD


def _pem(tmp_path: Path) -> tuple[x509.Certificate, str]:
    cert_path, _ = write_pair(tmp_path, SERIAL)
    pem = cert_path.read_text()
    return x509.load_pem_x509_certificate(pem.encode()), pem


def test_the_current_certificate_carries_its_fingerprint(tmp_path: Path) -> None:
    cert, pem = _pem(tmp_path)
    assert _leaf_sha256(pem, serial_hex(cert.serial_number)) == cert.fingerprint(hashes.SHA256()).hex()


def test_another_serial_or_none_carries_no_fingerprint(tmp_path: Path) -> None:
    _, pem = _pem(tmp_path)
    assert _leaf_sha256(pem, "0ABC") is None  # an older deployment of the row: not this certificate
    assert _leaf_sha256(pem, "not hex") is None
    assert _leaf_sha256(pem, None) is None
    assert _leaf_sha256(None, "0ABC") is None
