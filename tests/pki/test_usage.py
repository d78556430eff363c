"""What a certificate is for, from basic constraints, key usage, extended key usage and SAN kinds, and which
certificates a TLS server can serve."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certfleet.pki.usage import Usage, classify, servable_problem
from tests.pki.conftest import PKI

EKU = ExtendedKeyUsageOID


def _ku(**on: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")  # fmt: skip
    return x509.KeyUsage(**{n: on.get(n, False) for n in names})


def test_smime_leaf_with_only_an_email_san_and_email_protection(pki: PKI) -> None:
    cert = pki.issue(
        "Alice Example",
        sans=["alice@example.test"],
        extensions=[x509.ExtendedKeyUsage([EKU.EMAIL_PROTECTION]), _ku(digital_signature=True)],
    ).cert
    assert classify(cert) is Usage.SMIME
    assert servable_problem(cert, "nginx") == "this is an S/MIME certificate: it cannot be served by nginx"


@pytest.mark.parametrize(
    ("extensions", "sans", "usage"),
    [
        ([x509.ExtendedKeyUsage([EKU.SERVER_AUTH])], ["www.example.test"], Usage.TLS_SERVER),
        ([x509.ExtendedKeyUsage([EKU.SERVER_AUTH, EKU.CLIENT_AUTH])], ["www.example.test"], Usage.TLS_SERVER),
        ([x509.ExtendedKeyUsage([EKU.CLIENT_AUTH])], ["device-7.example.test"], Usage.TLS_CLIENT),
        ([x509.ExtendedKeyUsage([EKU.CODE_SIGNING])], [], Usage.CODE_SIGNING),
        ([x509.ExtendedKeyUsage([EKU.TIME_STAMPING])], [], Usage.OTHER),
        ([], ["www.example.test"], Usage.TLS_SERVER),  # no EKU: the SAN kinds decide
        ([], ["192.0.2.7"], Usage.TLS_SERVER),
        ([], ["bob@example.test"], Usage.SMIME),
        ([x509.BasicConstraints(ca=True, path_length=None)], [], Usage.CA),
        ([_ku(key_cert_sign=True, crl_sign=True)], [], Usage.CA),
    ],
)
def test_classification(pki: PKI, extensions: list[x509.ExtensionType], sans: list[str], usage: Usage) -> None:
    assert classify(pki.issue("subject", sans=sans, extensions=extensions).cert) is usage


def test_an_email_in_the_subject_without_sans_is_smime(pki: PKI) -> None:
    cert = pki.issue("Carol", extensions=[]).cert
    assert classify(cert) is Usage.TLS_SERVER  # a v1-style certificate with a plain name: served by old servers
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "carol@example.test")]))
        .issuer_name(pki.intermediate.cert.subject)
        .public_key(pki.rsa_key().public_key())
        .serial_number(5)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    signer = pki.intermediate.key
    assert classify(builder.sign(signer, hashes.SHA256())) is Usage.SMIME  # type: ignore[arg-type]


def test_what_a_tls_server_cannot_serve(pki: PKI) -> None:
    assert servable_problem(pki.intermediate.cert, "tomcat") == (
        "this is a CA certificate: it issues certificates and cannot be served by tomcat"
    )
    client = pki.issue("c", extensions=[x509.ExtendedKeyUsage([EKU.CLIENT_AUTH])]).cert
    assert servable_problem(client, "nginx") == "this is a TLS client certificate: it cannot be served by nginx"
    signing = pki.issue("s", extensions=[x509.ExtendedKeyUsage([EKU.CODE_SIGNING])]).cert
    assert servable_problem(signing, "apache") == "this is a code signing certificate: it cannot be served by apache"
    only_commitment = pki.issue("www.example.test", sans=["www.example.test"],
                                extensions=[_ku(content_commitment=True)]).cert  # fmt: skip
    assert servable_problem(only_commitment, "nginx") == (
        "its key usage allows neither digitalSignature, keyEncipherment nor keyAgreement: "
        "nginx cannot use it in a TLS handshake"
    )
    tls = [x509.ExtendedKeyUsage([EKU.SERVER_AUTH]), _ku(digital_signature=True)]
    server = pki.issue("www.example.test", sans=["www.example.test"], extensions=tls).cert
    assert servable_problem(server, "nginx") is None
