"""Fuzz the certificate file parsers: damaged PEM, DER, PKCS#7, PKCS#12 and CSR files, and random bytes,
raise only CertificateFormatError (shown to the user as is), never another exception, and never hang.

Whatever loads is also described and dumped, since cryptography decodes names and extensions lazily.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certfleet.pki.csr import csr_sans, load_csr
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.parse import certificate_text, describe, load_material

from .seeds import PASSWORD, material, mutated


def _use(data: bytes, password: bytes | None) -> None:
    try:
        loaded = load_material(data, password)
        for cert in loaded.certificates:
            describe(cert)
            certificate_text(cert)
    except CertificateFormatError:
        pass


@pytest.mark.parametrize("kind", ["der", "pem", "pkcs7-der", "pkcs7-pem", "pkcs12"])
@given(data=st.data())
def test_damaged_certificate_files_raise_only_the_format_error(kind: str, data: st.DataObject) -> None:
    damaged = data.draw(mutated(material()[kind]))
    _use(damaged, data.draw(st.sampled_from([None, PASSWORD, b"wrong"])))


@given(st.binary(max_size=4096))
def test_random_bytes_raise_only_the_format_error(blob: bytes) -> None:
    _use(blob, None)


@given(st.lists(st.sampled_from(["CERTIFICATE", "PKCS7", "PRIVATE KEY", "X"]), max_size=6), st.binary(max_size=600))
def test_pem_armour_around_junk_raises_only_the_format_error(labels: list[str], body: bytes) -> None:
    blocks = b"".join(
        f"-----BEGIN {label}-----\n".encode() + body + f"\n-----END {label}-----\n".encode() for label in labels
    )
    _use(blocks or b"-----BEGIN", None)


@pytest.mark.parametrize("kind", ["csr-pem", "csr-der"])
@given(data=st.data())
def test_damaged_csrs_raise_only_the_format_error(kind: str, data: st.DataObject) -> None:
    damaged = data.draw(mutated(material()[kind]))
    try:
        csr = load_csr(damaged)
        csr_sans(csr)
        csr.subject.rfc4514_string()
    except CertificateFormatError:
        pass


def test_the_seeds_themselves_load() -> None:
    seeds = material()
    assert load_material(seeds["pkcs12"], PASSWORD).private_key is not None
    for kind in ("der", "pem", "pkcs7-der", "pkcs7-pem"):
        assert load_material(seeds[kind]).leaf.serial_number == 0x1234
    assert csr_sans(load_csr(seeds["csr-pem"])) == ["www.example.test"]
