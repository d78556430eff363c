"""Given the issuer, the probe accepts only a served leaf that issuer signed, not any certificate with the
right serial (an impostor can copy a serial and an issuer name, not a signature)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certfleet.connectors.servers import probe
from certfleet.connectors.servers.probe import ProbeError, wait_for_serial

from .test_probe import HOST, TlsServer, server_context

SERIAL = 0x5EED00AA
NOW = dt.datetime.now(dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey, serial: int
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(signer, hashes.SHA256())
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA = _cert("Expected Issuing CA", "Expected Issuing CA", CA_KEY, CA_KEY, 1)


def _serving(tmp_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> TlsServer:
    cert_file, key_file = tmp_path / f"{id(cert)}.crt", tmp_path / f"{id(cert)}.key"
    cert_file.write_bytes(_pem(cert))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return TlsServer(server_context(cert_file, key_file))


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TlsServer]:
    key = ec.generate_private_key(ec.SECP256R1())
    kind = request.param
    if kind == "genuine":
        cert = _cert("www.example.test", "Expected Issuing CA", key, CA_KEY, SERIAL)
    elif kind == "forged-name":  # same serial, same issuer name, signed by the impostor's own key
        cert = _cert("www.example.test", "Expected Issuing CA", key, key, SERIAL)
    else:  # same serial from another CA
        other = ec.generate_private_key(ec.SECP256R1())
        cert = _cert("www.example.test", "Other CA", key, other, SERIAL)
    server = _serving(tmp_path, cert, key)
    yield server
    server.close()


@pytest.mark.parametrize("served", ["genuine"], indirect=True)
def test_the_leaf_the_issuer_signed_is_accepted(served: TlsServer) -> None:
    leaf = wait_for_serial(
        HOST, served.port, server_name="www.example.test", expected_serial=SERIAL, timeout=5, issuer_pem=_pem(CA)
    )
    assert leaf.serial_number == SERIAL
    # a chain (issuer first, then its own issuers) given as text works too
    chain = (_pem(CA) + _pem(_cert("Root", "Root", CA_KEY, CA_KEY, 2))).decode()
    assert wait_for_serial(HOST, served.port, server_name=None, expected_serial=SERIAL, issuer_pem=chain) == leaf


@pytest.mark.parametrize(
    ("served", "problem"),
    [
        ("forged-name", "its signature does not verify with that issuer's key"),
        ("other-ca", "it names 'CN=Other CA' as its issuer"),
    ],
    indirect=["served"],
)
def test_the_right_serial_from_the_wrong_signer_is_refused_at_once(served: TlsServer, problem: str) -> None:
    with pytest.raises(ProbeError) as caught:
        wait_for_serial(HOST, served.port, server_name=None, expected_serial=SERIAL, timeout=30, issuer_pem=_pem(CA))
    message = str(caught.value)
    assert (
        f"127.0.0.1:{served.port}: serves serial 5EED00AA, but that certificate was not issued by "
        "CN=Expected Issuing CA" in message
    )
    assert problem in message
    assert served.handshakes == 1  # refused on the first look, not after waiting out the 30 s
    # Without the issuer the probe cannot tell: this is the hole the argument closes.
    assert wait_for_serial(HOST, served.port, server_name=None, expected_serial=SERIAL).serial_number == SERIAL


def test_an_unreadable_issuer_certificate_is_a_clear_error() -> None:
    with pytest.raises(ProbeError, match="the expected issuer certificate is not a PEM certificate"):
        wait_for_serial(HOST, 1, server_name=None, expected_serial=SERIAL, timeout=1, issuer_pem="not a PEM")


@pytest.mark.parametrize("served", ["genuine"], indirect=True)
def test_the_exact_leaf_deployed_needs_no_signature_check(served: TlsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    leaf = wait_for_serial(HOST, served.port, server_name=None, expected_serial=SERIAL)
    fingerprint = leaf.fingerprint(hashes.SHA256()).hex()

    def no_check(*args: object) -> None:
        raise AssertionError("the leaf deployed, byte for byte, was checked by signature")

    monkeypatch.setattr(probe, "check_issued_by", no_check)
    found = wait_for_serial(
        HOST, served.port, server_name=None, expected_serial=SERIAL, issuer_pem=_pem(CA), expected_sha256=fingerprint
    )
    assert found == leaf


@pytest.mark.parametrize("served", ["forged-name"], indirect=True)
def test_another_leaf_with_the_serial_still_gets_the_signature_check(served: TlsServer) -> None:
    with pytest.raises(ProbeError, match="its signature does not verify with that issuer's key"):
        wait_for_serial(
            HOST, served.port, server_name=None, expected_serial=SERIAL, issuer_pem=_pem(CA), expected_sha256="ab" * 32
        )
