import hashlib
import ipaddress
import struct
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.parse import (
    CertificateInfo,
    LoadedMaterial,
    certificate_text,
    describe,
    load_certificate,
    load_material,
    order_chain,
    serial_hex,
)

from .conftest import PKI, Issued, legacy_signed, private_der

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


@pytest.fixture(scope="module")
def leaf(pki: PKI) -> Issued:
    """A leaf with every extension CertificateInfo reports."""
    return pki.issue(
        "www.example.com",
        organization="Example Corp",
        sans=["www.example.com", "example.com", "192.0.2.10", "2001:db8::1", "admin@example.com"],
        serial=0x0A1B2C,
        days=90,
        hash_algorithm="sha384",
        extensions=[
            x509.BasicConstraints(ca=False, path_length=None),
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier("http://ocsp.example.com"),
                    ),
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier("http://ca.example.com/intermediate.crt"),
                    ),
                ]
            ),
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier("http://crl.example.com/intermediate.crl")],
                        None,
                        None,
                        None,
                    )
                ]
            ),
        ],
    )


def pem_of(*items: Issued) -> bytes:
    return b"".join(item.pem for item in items)


# --- load_material -----------------------------------------------------------------------------------


def test_shuffled_pem_chain_is_ordered_leaf_first(pki: PKI, leaf: Issued) -> None:
    material = load_material(pem_of(pki.root, leaf, pki.intermediate))
    assert material.certificates == [leaf.cert, pki.intermediate.cert, pki.root.cert]
    assert material.leaf == leaf.cert
    assert material.private_key is None


def test_pem_with_text_around_blocks_and_ignored_blocks(pki: PKI, leaf: Issued) -> None:
    data = b"Bag Attributes\n    friendlyName: x\n" + leaf.pem + b"\r\n# comment\n" + pki.intermediate.pem
    assert load_material(data).certificates == [leaf.cert, pki.intermediate.cert]


@pytest.mark.parametrize(
    "key_format",
    [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL],
    ids=["pkcs8", "traditional"],
)
@pytest.mark.parametrize("algorithm", ["rsa", "ec"])
def test_pem_with_private_key(pki: PKI, key_format: serialization.PrivateFormat, algorithm: str) -> None:
    key = pki.key(algorithm, 2048 if algorithm == "rsa" else 256)
    issued = pki.leaf("withkey.example.com", key=key)
    key_pem = key.private_bytes(PEM, key_format, serialization.NoEncryption())
    expected_label = {"rsa": b"RSA PRIVATE KEY", "ec": b"EC PRIVATE KEY"}[algorithm]
    if key_format == serialization.PrivateFormat.PKCS8:
        expected_label = b"PRIVATE KEY"
    assert key_pem.startswith(b"-----BEGIN " + expected_label + b"-----")

    material = load_material(key_pem + issued.pem + pki.intermediate.pem)
    assert material.certificates == [issued.cert, pki.intermediate.cert]
    assert private_der(material.private_key) == private_der(key)


def test_pem_with_encrypted_key_needs_its_password(pki: PKI) -> None:
    key = pki.key("ec", 256)
    issued = pki.leaf("enc.example.com", key=key)
    encrypted = key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    material = load_material(issued.pem + encrypted, b"pw")
    assert private_der(material.private_key) == private_der(key)
    with pytest.raises(CertificateFormatError, match=r"^the private key is encrypted; it needs a password$"):
        load_material(issued.pem + encrypted)
    with pytest.raises(CertificateFormatError, match=r"^wrong password for the private key$"):
        load_material(issued.pem + encrypted, b"nope")


def test_two_private_keys_are_refused(pki: PKI, leaf: Issued) -> None:
    key_pem = pki.key("ec", 256).private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(CertificateFormatError, match="more than one private key"):
        load_material(leaf.pem + key_pem + key_pem)


def test_der_certificate(leaf: Issued) -> None:
    assert load_material(leaf.der) == LoadedMaterial([leaf.cert], None)
    assert load_certificate(leaf.der) == leaf.cert


@pytest.mark.parametrize("encoding", [PEM, DER], ids=["pem", "der"])
def test_pkcs7(pki: PKI, leaf: Issued, encoding: serialization.Encoding) -> None:
    data = pkcs7.serialize_certificates([pki.root.cert, pki.intermediate.cert, leaf.cert], encoding)
    if encoding == PEM:
        assert data.startswith(b"-----BEGIN PKCS7-----")
    material = load_material(data)
    assert material.certificates == [leaf.cert, pki.intermediate.cert, pki.root.cert]
    assert material.private_key is None


def test_pkcs7_pem_mixed_with_certificate_blocks(pki: PKI, leaf: Issued) -> None:
    p7 = pkcs7.serialize_certificates([pki.root.cert], PEM)
    assert load_material(p7 + leaf.pem + pki.intermediate.pem).certificates == [
        leaf.cert,
        pki.intermediate.cert,
        pki.root.cert,
    ]


def p12(issued: Issued, cas: list[x509.Certificate], password: bytes | None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    key = issued.key
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return pkcs12.serialize_key_and_certificates(b"test", key, issued.cert, cas, encryption)


def test_pkcs12_with_right_password(pki: PKI, leaf: Issued) -> None:
    material = load_material(p12(leaf, [pki.root.cert, pki.intermediate.cert], b"right"), b"right")
    assert material.certificates == [leaf.cert, pki.intermediate.cert, pki.root.cert]
    assert private_der(material.private_key) == private_der(leaf.key)


@pytest.mark.parametrize("password", [None, b""], ids=["none", "empty"])
def test_pkcs12_missing_password(pki: PKI, leaf: Issued, password: bytes | None) -> None:
    with pytest.raises(CertificateFormatError) as caught:
        load_material(p12(leaf, [], b"right"), password)
    assert str(caught.value) == "PKCS#12 file needs a password"


def test_pkcs12_wrong_password(leaf: Issued) -> None:
    with pytest.raises(CertificateFormatError) as caught:
        load_material(p12(leaf, [], b"right"), b"wrong")
    assert str(caught.value) == "wrong password for PKCS#12 file"


@pytest.mark.parametrize("password", [None, b"typed anyway"])
def test_unprotected_pkcs12(leaf: Issued, password: bytes | None) -> None:
    material = load_material(p12(leaf, [], None), password)
    assert material.certificates == [leaf.cert]
    assert material.private_key is not None


def test_pkcs12_without_certificate(pki: PKI) -> None:
    key = pki.ec_key()
    data = pkcs12.serialize_key_and_certificates(b"k", key, None, None, serialization.NoEncryption())
    with pytest.raises(CertificateFormatError, match=r"^the file contains no certificate$"):
        load_material(data)


def test_pkcs12_with_unsupported_key(pki: PKI) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    issued = pki.issue("ed.example.com", key=key, self_signed=True, hash_algorithm=None)
    data = pkcs12.serialize_key_and_certificates(b"k", key, issued.cert, None, serialization.NoEncryption())
    with pytest.raises(CertificateFormatError, match=r"^Ed25519 private keys are not supported"):
        load_material(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (
            b"hello world",
            "the file is text without a PEM '-----BEGIN CERTIFICATE-----' block: "
            "not a PEM, DER, PKCS#7 or PKCS#12 certificate file",
        ),
        (
            b"\x30\x82\x01\x00\x02\x01\x05garbage",
            "the DER file is truncated: its header announces 260 bytes, it has 14",
        ),
        (
            b"\x30\x03\x02\x01\x05",
            "the file is DER data but not a certificate, PKCS#7 or PKCS#12 structure: "
            "not a PEM, DER, PKCS#7 or PKCS#12 certificate file",
        ),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "PEM block 1 is not a valid certificate: its DER content is not X.509",
        ),
        (b"-----BEGIN PKCS7-----\nAAAA\n-----END PKCS7-----\n", "the PKCS#7 data is damaged or contains no"),
        (b"-----BEGIN NOTHING", "the PEM file contains no CERTIFICATE or PKCS7 block"),
    ],
)
def test_garbage_is_rejected(data: bytes, message: str) -> None:
    with pytest.raises(CertificateFormatError) as caught:
        load_material(data)
    assert str(caught.value).startswith(message)


def test_pem_with_another_block_says_what_it_found() -> None:
    with pytest.raises(CertificateFormatError) as caught:
        load_material(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
    assert str(caught.value) == "the PEM file contains no CERTIFICATE or PKCS7 block (found: X509 CRL)"


def test_pem_without_certificates_says_what_it_found(pki: PKI) -> None:
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(pki.ec_key(), hashes.SHA256())
    with pytest.raises(CertificateFormatError) as caught:
        load_material(csr.public_bytes(PEM))
    assert str(caught.value) == (
        "the PEM file is a certificate signing request (CSR), not a certificate: "
        "upload the certificate the CA issued for it"
    )


def test_empty_material_has_no_leaf() -> None:
    with pytest.raises(CertificateFormatError, match="no certificate was loaded"):
        _ = LoadedMaterial([], None).leaf


# --- order_chain -------------------------------------------------------------------------------------


def test_order_chain_drops_duplicates_and_puts_unrelated_last(pki: PKI, leaf: Issued) -> None:
    stranger = pki.issue("stranger", self_signed=True, serial=99)
    ordered = order_chain([stranger.cert, pki.root.cert, leaf.cert, pki.intermediate.cert, leaf.cert])
    assert ordered == [leaf.cert, pki.intermediate.cert, pki.root.cert, stranger.cert]


def test_order_chain_prefers_the_leaf_with_the_longest_chain(pki: PKI, leaf: Issued) -> None:
    directly_under_root = pki.issue("short.example.com", issuer=pki.root, serial=7)
    ordered = order_chain([directly_under_root.cert, pki.root.cert, pki.intermediate.cert, leaf.cert])
    assert ordered == [leaf.cert, pki.intermediate.cert, pki.root.cert, directly_under_root.cert]


def test_order_chain_with_missing_intermediate_and_edge_cases(pki: PKI, leaf: Issued) -> None:
    assert order_chain([pki.root.cert, leaf.cert]) == [leaf.cert, pki.root.cert]
    assert order_chain([pki.root.cert]) == [pki.root.cert]
    assert order_chain([]) == []


# --- serial_hex --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serial", "expected"),
    [(0x0A1B, "0A1B"), (0xABC, "0ABC"), (0, "00"), (255, "FF"), (256, "0100"), (-1, "FF"), (-129, "FF7F")],
)
def test_serial_hex(serial: int, expected: str) -> None:
    assert serial_hex(serial) == expected


# --- describe ----------------------------------------------------------------------------------------


def test_describe_reports_every_field(leaf: Issued) -> None:
    info = describe(leaf.cert)
    assert info.model_dump() == {
        "common_name": "www.example.com",
        "sans": ["www.example.com", "example.com", "192.0.2.10", "2001:db8::1", "admin@example.com"],
        "subject": "CN=www.example.com,O=Example Corp",
        "issuer": "CN=Test Intermediate CA,O=Certfleet Test",
        "issuer_common_name": "Test Intermediate CA",
        "issuer_organization": "Certfleet Test",
        "signature_algorithm": "SHA384RSA",
        "serial_number": "0A1B2C",
        "not_before": datetime(2025, 1, 1, tzinfo=UTC),
        "not_after": datetime(2025, 4, 1, tzinfo=UTC),
        "key_type": "RSA",
        "key_size": 2048,
        "sha1_thumbprint": hashlib.sha1(leaf.der).hexdigest().upper(),  # noqa: S324 - a thumbprint
        "sha256_thumbprint": hashlib.sha256(leaf.der).hexdigest().upper(),
        "self_signed": False,
        "is_ca": False,
        "key_usage": ["digitalSignature", "keyEncipherment"],
        "extended_key_usage": ["serverAuth", "clientAuth"],
        "basic_constraints": "CA:FALSE",
        "authority_info_access": [
            "OCSP - URI:http://ocsp.example.com",
            "CA Issuers - URI:http://ca.example.com/intermediate.crt",
        ],
        "crl_distribution_points": ["http://crl.example.com/intermediate.crl"],
    }
    assert len(info.sha1_thumbprint) == 40
    assert len(info.sha256_thumbprint) == 64
    assert info.not_before.tzinfo is UTC
    assert info.display_name == "www.example.com"


def test_describe_root_and_intermediate(pki: PKI) -> None:
    root = describe(pki.root.cert)
    assert (root.self_signed, root.is_ca, root.basic_constraints) == (True, True, "CA:TRUE, pathlen:1")
    assert root.key_usage == ["keyCertSign", "cRLSign"]
    assert root.issuer == root.subject == "CN=Test Root CA,O=Certfleet Test"
    assert root.sans == []
    intermediate = describe(pki.intermediate.cert)
    assert (intermediate.self_signed, intermediate.is_ca) == (False, True)
    assert intermediate.basic_constraints == "CA:TRUE, pathlen:0"
    assert (intermediate.key_type, intermediate.key_size) == ("RSA", 3072)
    assert intermediate.not_after == datetime(2035, 1, 1, tzinfo=UTC)


def test_describe_certificate_without_extensions(pki: PKI) -> None:
    info = describe(pki.issue(None, organization="Bare Org").cert)
    assert info.common_name is None
    assert info.sans == []
    assert info.key_usage == info.extended_key_usage == info.authority_info_access == []
    assert info.crl_distribution_points == []
    assert info.basic_constraints is None
    assert info.is_ca is False
    assert info.display_name == "O=Bare Org"


def test_display_name_falls_back_to_first_san(pki: PKI) -> None:
    info = describe(pki.issue(None, sans=["first.example.com", "second.example.com"]).cert)
    assert info.display_name == "first.example.com"


def test_unknown_eku_key_agreement_and_pathless_ca(pki: PKI) -> None:
    custom = x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")
    info = describe(
        pki.issue(
            "misc",
            key=pki.key("ec", 256),
            extensions=[
                x509.BasicConstraints(ca=True, path_length=None),
                x509.KeyUsage(False, True, False, False, True, False, False, False, True),
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING, custom]),
            ],
        ).cert
    )
    assert info.basic_constraints == "CA:TRUE"
    assert info.key_usage == ["nonRepudiation", "keyAgreement", "decipherOnly"]
    assert info.extended_key_usage == ["codeSigning", "1.3.6.1.4.1.99999.1"]
    assert (info.key_type, info.key_size) == ("EC", 256)


PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


@pytest.mark.parametrize(
    ("algorithm", "size", "hash_algorithm", "rsa_padding", "expected"),
    [
        ("rsa", 2048, "sha256", None, "SHA256RSA"),
        ("rsa", 2048, "sha384", None, "SHA384RSA"),
        ("rsa", 2048, "sha512", None, "SHA512RSA"),
        ("rsa", 2048, "sha256", PSS, "RSASSA-PSS"),
        ("ec", 256, "sha256", None, "SHA256ECDSA"),
        ("ec", 384, "sha384", None, "SHA384ECDSA"),
        ("dsa", 2048, "sha256", None, "SHA256DSA"),
    ],
)
def test_signature_algorithm_names_and_self_signature_check(
    pki: PKI,
    algorithm: str,
    size: int,
    hash_algorithm: str,
    rsa_padding: padding.PSS | None,
    expected: str,
) -> None:
    key = pki.key(algorithm, size)
    issued = pki.issue("self", key=key, self_signed=True, hash_algorithm=hash_algorithm, rsa_padding=rsa_padding)
    info = describe(issued.cert)
    assert info.signature_algorithm == expected
    assert info.self_signed is True
    assert (info.key_type, info.key_size) == (algorithm.upper(), size)


def test_pure_and_unnamed_signature_algorithms(pki: PKI) -> None:
    ed = describe(pki.issue("ed", key=ed25519.Ed25519PrivateKey.generate(), self_signed=True, hash_algorithm=None).cert)
    assert (ed.signature_algorithm, ed.key_type, ed.key_size, ed.self_signed) == (
        "ED25519",
        "Ed25519",
        256,
        True,
    )

    ml_dsa = describe(
        pki.issue("pq", key=mldsa.MLDSA44PrivateKey.generate(), self_signed=True, hash_algorithm=None).cert
    )
    assert (ml_dsa.signature_algorithm, ml_dsa.key_type, ml_dsa.key_size) == ("ML-DSA-44", "ML-DSA-44", 10496)
    assert ml_dsa.self_signed is True

    cert = pki.issue("sha3", key=pki.key("ec", 256), self_signed=True, hash_algorithm="sha3_256").cert
    info = describe(cert)
    assert info.signature_algorithm == "2.16.840.1.101.3.4.3.10"
    assert info.self_signed is True


@pytest.mark.parametrize(
    ("digest", "expected_name", "verifies"),
    [("sha1", "SHA1RSA", True), ("md5", "MD5RSA", True), ("md2", "MD2RSA", False)],
)
def test_legacy_signatures_are_named_and_verified(pki: PKI, digest: str, expected_name: str, verifies: bool) -> None:
    key = pki.rsa_key()
    original = pki.issue("legacy.example.com", key=key, self_signed=True)
    info = describe(legacy_signed(original, key, digest))
    assert info.signature_algorithm == expected_name
    assert info.self_signed is verifies


def test_same_name_but_other_key_is_not_self_signed(pki: PKI) -> None:
    impostor_ca = pki.issue("Same Name", key=pki.key("ec", 384), self_signed=True)
    cert = pki.issue("Same Name", key=pki.key("ec", 256), issuer=impostor_ca).cert
    assert cert.subject == cert.issuer
    assert describe(cert).self_signed is False


def test_expires_within_days(leaf: Issued) -> None:
    info = describe(leaf.cert)  # not_after 2025-04-01 00:00 UTC
    assert info.expires_within_days(datetime(2025, 2, 1, 12, 0, tzinfo=UTC)) == 58
    assert info.expires_within_days(datetime(2025, 3, 31, 0, 0, tzinfo=UTC)) == 1
    assert info.expires_within_days(datetime(2025, 3, 31, 0, 0, 1, tzinfo=UTC)) == 0
    assert info.expires_within_days(datetime(2025, 4, 2, 12, 0, tzinfo=UTC)) == -2
    assert info.expires_within_days() < -200  # the real clock is well past 2025-04-01
    assert info.expires_within_days(datetime(2025, 2, 1, 12, 0)) == 58  # naive means UTC


def test_info_round_trips_through_json(leaf: Issued) -> None:
    info = describe(leaf.cert)
    assert CertificateInfo.model_validate_json(info.model_dump_json()) == info


# --- certificate_text --------------------------------------------------------------------------------


def test_certificate_text_shows_the_decoded_certificate(leaf: Issued) -> None:
    text = certificate_text(leaf.cert)
    lines = text.splitlines()
    for expected in [
        "Certificate:",
        "        Version: 3 (0x2)",
        "        Serial Number: 0A1B2C",
        "        Signature Algorithm: SHA384RSA (1.2.840.113549.1.1.12)",
        "        Issuer: CN=Test Intermediate CA,O=Certfleet Test",
        "            Not Before: 2025-01-01 00:00:00 UTC",
        "            Not After : 2025-04-01 00:00:00 UTC",
        "        Subject: CN=www.example.com,O=Example Corp",
        "            Public Key Algorithm: RSA",
        "                Public-Key: (2048 bit)",
        "                Exponent: 65537 (0x10001)",
        "            X509v3 Subject Alternative Name:",
        "                DNS:www.example.com, DNS:example.com, IP Address:192.0.2.10, "
        "IP Address:2001:db8::1, email:admin@example.com",
        "            X509v3 Basic Constraints:",
        "                CA:FALSE",
        "            X509v3 Key Usage:",
        "                digitalSignature, keyEncipherment",
        "            X509v3 Extended Key Usage:",
        "                serverAuth, clientAuth",
        "            Authority Information Access:",
        "                OCSP - URI:http://ocsp.example.com",
        "                CA Issuers - URI:http://ca.example.com/intermediate.crt",
        "            X509v3 CRL Distribution Points:",
        "                Full Name: URI:http://crl.example.com/intermediate.crl",
        "    Signature Algorithm: SHA384RSA (1.2.840.113549.1.1.12)",
        "    Signature Value:",
        f"SHA256 Fingerprint: {hashlib.sha256(leaf.der).hexdigest().upper()}",
    ]:
        assert expected in lines, expected
    public_key = leaf.cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    modulus = public_key.public_numbers().n.to_bytes(256, "big")
    assert "                    " + ":".join(f"{b:02X}" for b in modulus[:16]) in lines
    signature_start = lines.index("    Signature Value:") + 1
    assert lines[signature_start] == "        " + ":".join(f"{b:02X}" for b in leaf.cert.signature[:16])


def test_certificate_text_for_ca_and_ec_keys(pki: PKI) -> None:
    key = pki.ec_key(384)
    ca = pki.issue(
        "EC CA",
        key=key,
        self_signed=True,
        ca_path_length=0,
        extensions=[
            x509.SubjectKeyIdentifier(b"\x01\x02\xab"),
            x509.AuthorityKeyIdentifier(b"\x01\x02\xab", None, None),
            x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier("2.23.140.1.2.1"), None)]),
            x509.NameConstraints([x509.DNSName("example.com")], [x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))]),
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"\xde\xad"),
            x509.OCSPNoCheck(),
        ],
    )
    lines = certificate_text(ca.cert).splitlines()
    for expected in [
        "            Public Key Algorithm: EC",
        "                Public-Key: (384 bit)",
        "                Curve: secp384r1",
        "            X509v3 Basic Constraints: critical",
        "                CA:TRUE, pathlen:0",
        "            X509v3 Key Usage: critical",
        "                keyCertSign, cRLSign",
        "            X509v3 Subject Key Identifier:",
        "                01:02:AB",
        "            X509v3 Authority Key Identifier:",
        "                keyid:01:02:AB",
        "            X509v3 Certificate Policies:",
        "                Policy: 2.23.140.1.2.1",
        "            X509v3 Name Constraints:",
        "                Permitted: DNS:example.com",
        "                Excluded: IP Address:10.0.0.0/8",
        "            1.2.3.4:",
        "                DE:AD",
        "            OCSP No Check:",
        "                <OCSPNoCheck()>",
    ]:
        assert expected in lines, expected
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert "                    " + ":".join(f"{b:02X}" for b in point[:16]) in lines


def signed_certificate_timestamps(log_id: bytes, timestamp_ms: int) -> x509.UnrecognizedExtension:
    """A one-entry SCT list (RFC 6962), which cryptography decodes when the certificate is loaded."""
    signature = b"\x30\x06\x02\x01\x01\x02\x01\x01"
    sct = b"\x00" + log_id + struct.pack(">QH", timestamp_ms, 0) + b"\x04\x03"
    sct += struct.pack(">H", len(signature)) + signature
    sct_list = struct.pack(">H", len(sct) + 2) + struct.pack(">H", len(sct)) + sct
    octet_string = b"\x04" + bytes([len(sct_list)]) + sct_list
    return x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2"), octet_string)


def test_certificate_text_renders_less_common_extensions(pki: PKI) -> None:
    uri = x509.UniformResourceIdentifier
    issuer_dn = x509.DirectoryName(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Old CA")]))
    cert = pki.issue(
        "rare",
        key=pki.ec_key(),
        sans=["mail@example.com"],
        extensions=[
            x509.IssuerAlternativeName(
                [uri("https://ca.example.com"), x509.RegisteredID(x509.ObjectIdentifier("1.2.3"))]
            ),
            x509.AuthorityKeyIdentifier(None, [issuer_dn], 0x1F),
            x509.SubjectInformationAccess(
                [x509.AccessDescription(x509.ObjectIdentifier("1.3.6.1.5.5.7.48.5"), uri("http://repo.example.com"))]
            ),
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        None,
                        x509.RelativeDistinguishedName([x509.NameAttribute(x509.NameOID.COMMON_NAME, "CRL1")]),
                        None,
                        None,
                    ),
                    x509.DistributionPoint(None, None, None, [issuer_dn]),
                ]
            ),
            x509.FreshestCRL([x509.DistributionPoint([uri("http://delta.example.com")], None, None, None)]),
            x509.CertificatePolicies(
                [
                    x509.PolicyInformation(
                        x509.ObjectIdentifier("1.3.6.1.4.1.44947.1.1.1"),
                        ["http://cps.example.com", x509.UserNotice(None, "Test use only")],
                    )
                ]
            ),
        ],
    ).cert
    # OtherName SANs and SCTs go on a second certificate, which has no other SAN extension.
    other_name = x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x01a")
    sct_cert = pki.issue(
        "sct",
        key=pki.ec_key(),
        extensions=[
            x509.SubjectAlternativeName([other_name]),
            signed_certificate_timestamps(bytes(range(32)), 1735689600000),
        ],
    ).cert
    lines = certificate_text(cert).splitlines() + certificate_text(sct_cert).splitlines()
    for expected in [
        "                email:mail@example.com",
        "            X509v3 Issuer Alternative Name:",
        "                URI:https://ca.example.com, Registered ID:1.2.3",
        "                DirName:CN=Old CA",
        "                serial:1F",
        "            Subject Information Access:",
        "                1.3.6.1.5.5.7.48.5 - URI:http://repo.example.com",
        "                Relative Name: CN=CRL1",
        "                CRL Issuer: DirName:CN=Old CA",
        "            X509v3 Freshest CRL:",
        "                Full Name: URI:http://delta.example.com",
        "                Policy: 1.3.6.1.4.1.44947.1.1.1; CPS: http://cps.example.com; User Notice: Test use only",
        "                othername:1.3.6.1.4.1.311.20.2.3:0C0161",
        "            CT Precertificate SCTs:",
        "                SCT from log 000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
        " at 2025-01-01 00:00:00 UTC",
    ]:
        assert expected in lines, expected
