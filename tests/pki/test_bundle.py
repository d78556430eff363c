import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from certfleet.pki.bundle import (
    certificate_to_der,
    chain_to_pem,
    key_matches_certificate,
    to_java_keystore,
    to_pkcs7,
    to_pkcs12,
)
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.keys import PrivateKey
from certfleet.pki.parse import load_material

from .conftest import PKI, Issued, private_der


@pytest.fixture(scope="module", params=["rsa", "ec"])
def server(pki: PKI, request: pytest.FixtureRequest) -> Issued:
    algorithm: str = request.param
    key = pki.key(algorithm, 3072 if algorithm == "rsa" else 384)
    return pki.leaf(f"{algorithm}.bundle.example.com", key=key, serial=0x00C0FFEE)


def private_key(issued: Issued) -> PrivateKey:
    assert isinstance(issued.key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return issued.key


def keytool(*args: str) -> str:
    """Run Java's keytool; it is part of the machine image, so its absence is a failure, not a skip."""
    executable = shutil.which("keytool")
    assert executable, "keytool (Java 17) must be installed to check keystores are readable by Java"
    result = subprocess.run([executable, *args], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_pem_chain_and_der(pki: PKI, server: Issued) -> None:
    chain = [server.cert, pki.intermediate.cert, pki.root.cert]
    pem = chain_to_pem(chain)
    assert pem == server.pem + pki.intermediate.pem + pki.root.pem
    assert load_material(pem).certificates == chain
    assert certificate_to_der(server.cert) == server.der
    assert load_material(certificate_to_der(server.cert)).certificates == [server.cert]


@pytest.mark.parametrize("der", [False, True], ids=["pem", "der"])
def test_pkcs7_round_trip(pki: PKI, server: Issued, der: bool) -> None:
    data = to_pkcs7([pki.root.cert, server.cert, pki.intermediate.cert], der=der)
    assert data.startswith(b"0" if der else b"-----BEGIN PKCS7-----\n")
    assert load_material(data).certificates == [server.cert, pki.intermediate.cert, pki.root.cert]


def test_pkcs7_needs_certificates() -> None:
    with pytest.raises(CertificateFormatError, match="a PKCS#7 bundle needs at least one certificate"):
        to_pkcs7([])


def test_pkcs12_round_trip_orders_chain_and_names_the_entry(pki: PKI, server: Issued) -> None:
    key = private_key(server)
    data = to_pkcs12(key, [pki.root.cert, pki.intermediate.cert, server.cert], b"s3cret")
    material = load_material(data, b"s3cret")
    assert material.certificates == [server.cert, pki.intermediate.cert, pki.root.cert]
    assert private_der(material.private_key) == private_der(key)

    parsed = pkcs12.load_pkcs12(data, b"s3cret")
    assert parsed.cert is not None
    assert parsed.cert.certificate == server.cert
    assert parsed.cert.friendly_name == b"certfleet"
    assert [c.certificate for c in parsed.additional_certs] == [pki.intermediate.cert, pki.root.cert]


def test_pkcs12_uses_modern_encryption(tmp_path: Path, server: Issued) -> None:
    path = tmp_path / "bundle.p12"
    path.write_bytes(to_pkcs12(private_key(server), [server.cert], b"s3cret", friendly_name="web"))
    result = subprocess.run(
        ["openssl", "pkcs12", "-in", str(path), "-info", "-noout", "-passin", "pass:s3cret"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stderr.startswith("MAC: sha256, ")
    assert "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration 50000, PRF hmacWithSHA256" in result.stderr
    assert "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 50000, PRF hmacWithSHA256" in result.stderr


def test_pkcs12_without_key(pki: PKI, server: Issued) -> None:
    data = to_pkcs12(None, [server.cert, pki.intermediate.cert], b"pw")
    material = load_material(data, b"pw")
    assert material.certificates == [server.cert, pki.intermediate.cert]
    assert material.private_key is None


def test_pkcs12_refuses_empty_password_mismatched_key_and_no_certs(pki: PKI, server: Issued) -> None:
    key = private_key(server)
    with pytest.raises(CertificateFormatError) as caught:
        to_pkcs12(key, [server.cert], b"")
    assert str(caught.value) == "a PKCS#12 bundle needs a password"
    with pytest.raises(CertificateFormatError) as caught:
        to_pkcs12(key, [pki.intermediate.cert], b"pw")
    assert str(caught.value) == (
        "the private key does not belong to the certificate 'CN=Test Intermediate CA,O=Certfleet Test'"
    )
    with pytest.raises(CertificateFormatError, match="a keystore needs at least one certificate"):
        to_pkcs12(key, [], b"pw")


def test_java_reads_the_pkcs12(tmp_path: Path, pki: PKI, server: Issued) -> None:
    path = tmp_path / "bundle.p12"
    path.write_bytes(to_pkcs12(private_key(server), [server.cert, pki.intermediate.cert, pki.root.cert], b"s3cret"))
    listing = keytool("-list", "-v", "-keystore", str(path), "-storepass", "s3cret", "-storetype", "PKCS12")
    assert "Your keystore contains 1 entry" in listing
    assert "Alias name: certfleet\n" in listing
    assert "Entry type: PrivateKeyEntry\n" in listing
    assert "Certificate chain length: 3\n" in listing
    assert f"Serial number: {server.cert.serial_number:x}\n" in listing
    assert "Serial number: c0ffee\n" in listing
    assert f"Owner: CN={server.cert.subject.rfc4514_string().removeprefix('CN=')}\n" in listing


def test_java_keystore_is_readable_by_keytool(tmp_path: Path, pki: PKI, server: Issued) -> None:
    key = private_key(server)
    path = tmp_path / "server.jks"
    path.write_bytes(to_java_keystore(key, [pki.root.cert, server.cert, pki.intermediate.cert], "changeit"))
    listing = keytool("-list", "-v", "-keystore", str(path), "-storepass", "changeit", "-storetype", "JKS")
    assert "Keystore type: JKS" in listing
    assert "Your keystore contains 1 entry" in listing
    assert "Alias name: certfleet\n" in listing
    assert "Entry type: PrivateKeyEntry\n" in listing
    assert "Certificate chain length: 3\n" in listing
    assert "Serial number: c0ffee\n" in listing
    assert listing.index("Owner: CN=Test Intermediate CA") < listing.index("Owner: CN=Test Root CA")

    # Converting makes Java decrypt the key entry; the result must hold our key.
    converted = tmp_path / "converted.p12"
    keytool(
        "-importkeystore",
        "-noprompt",
        "-srckeystore",
        str(path),
        "-srcstoretype",
        "JKS",
        "-srcstorepass",
        "changeit",
        "-destkeystore",
        str(converted),
        "-deststoretype",
        "PKCS12",
        "-deststorepass",
        "changeit",
    )
    material = load_material(converted.read_bytes(), b"changeit")
    assert material.certificates == [server.cert, pki.intermediate.cert, pki.root.cert]
    assert private_der(material.private_key) == private_der(key)


def test_java_keystore_alias_is_lowercased_and_password_required(tmp_path: Path, server: Issued) -> None:
    key = private_key(server)
    path = tmp_path / "alias.jks"
    path.write_bytes(to_java_keystore(key, [server.cert], "changeit", alias="Tomcat"))
    listing = keytool("-list", "-keystore", str(path), "-storepass", "changeit", "-storetype", "JKS")
    assert "tomcat, " in listing
    with pytest.raises(CertificateFormatError, match="a Java keystore needs a password"):
        to_java_keystore(key, [server.cert], "")


def test_key_matches_certificate(pki: PKI, server: Issued) -> None:
    key = private_key(server)
    assert key_matches_certificate(key, server.cert) is True
    assert key_matches_certificate(key, pki.intermediate.cert) is False
    assert key_matches_certificate(pki.ec_key(), server.cert) is False
