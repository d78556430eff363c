"""Valid files of every format the parsers read, for the fuzzers to mutate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID
from hypothesis import strategies as st

from certfleet.pki.csr import build_csr

PASSWORD = b"fuzz"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@cache
def material() -> dict[str, bytes]:
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = datetime(2025, 1, 1, tzinfo=UTC)

    def cert(subject: str, issuer: str, public: ec.EllipticCurvePublicKey, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(_name(issuer))
            .public_key(public)
            .serial_number(0x1234)
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.example.test")]), critical=False)
        )
        return builder.sign(ca_key, hashes.SHA256())

    root = cert("Fuzz CA", "Fuzz CA", ca_key.public_key(), ca=True)
    leaf = cert("www.example.test", "Fuzz CA", key.public_key(), ca=False)
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {
        "der": leaf.public_bytes(serialization.Encoding.DER),
        "pem": leaf.public_bytes(pem) + root.public_bytes(pem) + key_pem,
        "pkcs7-der": pkcs7.serialize_certificates([leaf, root], serialization.Encoding.DER),
        "pkcs7-pem": pkcs7.serialize_certificates([leaf, root], pem),
        "pkcs12": pkcs12.serialize_key_and_certificates(
            b"fuzz", key, leaf, [root], serialization.BestAvailableEncryption(PASSWORD)
        ),
        "csr-pem": build_csr(key, "www.example.test", ["www.example.test"]).public_bytes(pem),
        "csr-der": build_csr(key, "www.example.test", ["a.example.test"]).public_bytes(serialization.Encoding.DER),
    }


@st.composite
def mutated(draw: st.DrawFn, seed: bytes, max_size: int = 8192) -> bytes:
    """A valid file with a few bytes flipped, cut, duplicated or inserted (what a damaged upload looks like)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert", "truncate", "repeat"]))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 16))]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif action == "truncate":
            del data[at:]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data[:max_size])
