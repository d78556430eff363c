"""A file that is not a certificate is told what it is and what is wrong with it."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.parse import load_material
from tests.pki.conftest import PKI, name


def reason(data: bytes, password: bytes | None = None) -> str:
    with pytest.raises(CertificateFormatError) as caught:
        load_material(data, password)
    return str(caught.value)


def test_csr_files(pki: PKI) -> None:
    key = pki.ec_key()
    csr = x509.CertificateSigningRequestBuilder().subject_name(name("csr.example.test")).sign(key, hashes.SHA256())
    pem = csr.public_bytes(serialization.Encoding.PEM)
    advice = "not a certificate: upload the certificate the CA issued for it"
    assert reason(pem) == f"the PEM file is a certificate signing request (CSR), {advice}"
    assert reason(csr.public_bytes(serialization.Encoding.DER)) == (
        f"the DER file is a certificate signing request (CSR), {advice}"
    )
    armoured = pem.replace(b"CERTIFICATE REQUEST", b"CERTIFICATE")
    assert reason(armoured) == f"PEM block 1 is a certificate signing request (CSR) inside CERTIFICATE armour, {advice}"


def test_damaged_pem_and_der(pki: PKI) -> None:
    pem = pki.intermediate.pem
    second_begins = pki.root.pem + pem[:200]
    line = pki.root.pem.count(b"\n") + 1
    assert reason(second_begins) == (
        f"the PEM CERTIFICATE block that begins on line {line} has no '-----END CERTIFICATE-----' line: "
        "the file is truncated or damaged"
    )
    lines = pem.splitlines(keepends=True)
    bad_base64 = lines[0] + b"!!!!" + b"".join(lines[1:])
    assert reason(bad_base64) == "PEM block 1 (CERTIFICATE) is not valid base64: the file is damaged"
    short_body = lines[0] + lines[1] + lines[-1]
    assert reason(short_body).startswith("PEM block 1 (CERTIFICATE) is truncated: its header announces")
    assert reason(b"plain words") == (
        "the file is text without a PEM '-----BEGIN CERTIFICATE-----' block: "
        "not a PEM, DER, PKCS#7 or PKCS#12 certificate file"
    )
    assert reason(bytes([0xFF, 0x00, 0x81])).startswith("the file is binary data that is not DER")
    der = pki.intermediate.der
    assert (
        reason(der[:-1]) == f"the DER file is truncated: its header announces {len(der)} bytes, it has {len(der) - 1}"
    )
