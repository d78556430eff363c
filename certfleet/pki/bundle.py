"""Serialise certificates and keys into the bundle formats deployment targets consume."""

from collections.abc import Sequence

import jks
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.keys import PrivateKey
from certfleet.pki.parse import order_chain

_PUBLIC_KEY_DER = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def chain_to_pem(certs: Sequence[x509.Certificate]) -> bytes:
    """Concatenated PEM certificates, in the given order (nginx, HAProxy and Apache want leaf first)."""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def certificate_to_der(cert: x509.Certificate) -> bytes:
    """Binary DER encoding, as Windows .cer files and some appliances expect."""
    return cert.public_bytes(serialization.Encoding.DER)


def to_pkcs7(certs: Sequence[x509.Certificate], *, der: bool = False) -> bytes:
    """A certificates-only PKCS#7 (.p7b) bundle, PEM unless `der`."""
    if not certs:
        raise CertificateFormatError("a PKCS#7 bundle needs at least one certificate")
    encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
    return pkcs7.serialize_certificates(list(certs), encoding)


def key_matches_certificate(key: PrivateKey, cert: x509.Certificate) -> bool:
    """Whether `key` is the private half of the certificate's public key."""
    return key.public_key().public_bytes(*_PUBLIC_KEY_DER) == cert.public_key().public_bytes(*_PUBLIC_KEY_DER)


def _leaf_first(key: PrivateKey | None, certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """Order the chain and make sure the key belongs to its leaf, which keystores pair it with."""
    ordered = order_chain(certs)
    if not ordered:
        raise CertificateFormatError("a keystore needs at least one certificate")
    if key is not None and not key_matches_certificate(key, ordered[0]):
        raise CertificateFormatError(
            f"the private key does not belong to the certificate {ordered[0].subject.rfc4514_string()!r}"
        )
    return ordered


def to_pkcs12(
    key: PrivateKey | None,
    certs: Sequence[x509.Certificate],
    password: bytes,
    *,
    friendly_name: str = "certfleet",
) -> bytes:
    """A PKCS#12 (.pfx) with the leaf paired to the key and the rest as CA certificates.

    Uses PBES2/AES-256 with an HMAC-SHA256 MAC, which Windows 10+, OpenSSL 3 and Java 11+ read;
    the legacy 3DES/RC2 defaults are rejected by FIPS-mode systems.
    """
    if not password:
        raise CertificateFormatError("a PKCS#12 bundle needs a password")
    leaf, *cas = _leaf_first(key, certs)
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password)
    )
    return pkcs12.serialize_key_and_certificates(friendly_name.encode("utf-8"), key, leaf, cas or None, encryption)


def to_java_keystore(
    key: PrivateKey,
    certs: Sequence[x509.Certificate],
    password: str,
    *,
    alias: str = "certfleet",
) -> bytes:
    """A JKS keystore holding one private key entry with its chain, for Java servers (Tomcat, older JBoss).

    The key entry is protected with the store password, as keytool and Tomcat assume by default.
    pyjks lowercases the alias, as Java does.
    """
    if not password:
        raise CertificateFormatError("a Java keystore needs a password")
    chain = _leaf_first(key, certs)
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    entry = jks.PrivateKeyEntry.new(alias, [certificate_to_der(cert) for cert in chain], pkcs8, "pkcs8")
    keystore = jks.KeyStore.new("jks", [entry])
    data: bytes = keystore.saves(password)  # saves() encrypts the key entry with the store password
    return data
