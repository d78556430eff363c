"""Java keystores imported as users have them: JKS and JCEKS made by the real `keytool` (and by pyjks, as
certfleet's own deployments write them), one outcome per entry, store and key passwords told apart."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr
from sqlalchemy import select

from certfleet.inventory.schemas import ImportOutcome, UploadedFile
from certfleet.inventory.service import import_files
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, CertificateLocation
from certfleet.pki.bundle import key_matches_certificate, to_java_keystore
from certfleet.pki.keys import load_private_key
from tests.discovery.certs import Served
from tests.pki.conftest import PKI

STORE_PASSWORD = "store-pass-1"
KEY_PASSWORD = "key-pass-22"


def keytool(*args: str) -> None:
    binary = shutil.which("keytool")
    assert binary is not None, "keytool (openjdk) is required: scripts/install-system-packages.sh installs it"
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def stores(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """keytool-made stores: a key entry "web" (its own key password) and a trusted entry "corp-ca"."""
    directory = tmp_path_factory.mktemp("keystores")
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(pki.intermediate.cert.public_bytes(serialization.Encoding.PEM))
    out: dict[str, bytes] = {}
    for kind in ("JKS", "JCEKS"):
        path = directory / f"store.{kind.lower()}"
        keytool("-genkeypair", "-keystore", str(path), "-storetype", kind, "-storepass", STORE_PASSWORD,
                "-keypass", KEY_PASSWORD, "-alias", "web", "-keyalg", "EC", "-groupname", "secp256r1",
                "-dname", "CN=web.keytool.test", "-ext", "SAN=dns:web.keytool.test", "-validity", "30")  # fmt: skip
        keytool("-importcert", "-noprompt", "-keystore", str(path), "-storetype", kind, "-storepass", STORE_PASSWORD,
                "-alias", "corp-ca", "-file", str(ca_file))  # fmt: skip
        out[kind] = path.read_bytes()
    return out


def run(name: str, content: bytes, password: str | None = None, key_password: str | None = None) -> list[ImportOutcome]:
    upload = UploadedFile(
        filename=name,
        content=content,
        password=SecretStr(password) if password else None,
        key_password=SecretStr(key_password) if key_password else None,
    )
    return import_files([upload], actor="alice").outcomes


def stored(cert_id: int) -> Certificate:
    with session_scope() as s:
        row = repo.get(s, Certificate, cert_id)
        s.expunge(row)
        return row


@pytest.mark.parametrize("kind", ["JKS", "JCEKS"])
def test_a_keytool_store_imports_each_entry_with_its_key(
    boot: Bootstrapped, stores: dict[str, bytes], pki: PKI, kind: str
) -> None:
    web, ca = run(f"store.{kind.lower()}", stores[kind], STORE_PASSWORD, KEY_PASSWORD)
    assert (web.entry, web.imported, web.common_name, web.private_key_stored, web.reason) == (
        "web", True, "web.keytool.test", True, None
    )  # fmt: skip
    assert (ca.entry, ca.imported, ca.common_name, ca.private_key_stored) == (
        "corp-ca",
        True,
        "Test Intermediate CA",
        False,
    )
    assert web.certificate_id is not None
    assert ca.certificate_id is not None
    row = stored(web.certificate_id)
    assert row.private_key is not None
    assert row.pem_chain is not None
    leaf = x509.load_pem_x509_certificate(row.pem_chain.encode())
    assert key_matches_certificate(load_private_key(row.private_key), leaf)
    assert stored(ca.certificate_id).usage == "ca"
    with session_scope() as s:  # each entry is a place of its own
        paths = set(s.scalars(select(CertificateLocation.path)))
    assert {f"store.{kind.lower()}#web", f"store.{kind.lower()}#corp-ca"} <= paths


@pytest.mark.parametrize("kind", ["JKS", "JCEKS"])
def test_a_wrong_store_password_is_not_a_wrong_key_password(
    boot: Bootstrapped, stores: dict[str, bytes], kind: str
) -> None:
    (outcome,) = run("store.ks", stores[kind], "not-the-store-password", KEY_PASSWORD)
    assert (outcome.imported, outcome.reason) == (
        False,
        f"wrong store password for the {kind} keystore: its integrity check failed",
    )

    web, ca = run("store.ks", stores[kind], STORE_PASSWORD, "not-the-key-password")
    assert (web.imported, web.private_key_stored) == (True, False)
    assert web.reason == "the key password does not unlock its private key, so only the certificate was imported"
    assert ca.imported

    web, _ = run("store.ks", stores[kind], STORE_PASSWORD)  # no key password: the store password is tried
    assert web.reason == (
        "the store password, used as its key password, does not unlock its private key, so only the certificate "
        "was imported"
    )


def test_without_a_password_the_certificates_are_read_and_the_reason_says_so(
    boot: Bootstrapped, stores: dict[str, bytes]
) -> None:
    web, ca = run("store.jks", stores["JKS"])
    assert (web.imported, web.private_key_stored, ca.imported) == (True, False, True)
    assert web.reason == (
        "no store password was given, so the JKS keystore's integrity was not checked; "
        "no keystore password was given, so its private key was not read"
    )


def test_a_damaged_keystore(boot: Bootstrapped, stores: dict[str, bytes]) -> None:
    (outcome,) = run("cut.jks", stores["JKS"][:150], STORE_PASSWORD)
    assert outcome.imported is False
    assert outcome.reason is not None
    assert outcome.reason.startswith("the JKS keystore is damaged or truncated and cannot be read")


def test_a_pyjks_store_with_the_chain(boot: Bootstrapped, fleet: dict[str, Served]) -> None:
    good = fleet["good"]
    content = to_java_keystore(good.key, good.chain, STORE_PASSWORD, alias="tomcat")  # type: ignore[arg-type]
    (outcome,) = run("tomcat.jks", content, STORE_PASSWORD)
    assert (outcome.entry, outcome.imported, outcome.private_key_stored) == ("tomcat", True, True)
    assert outcome.certificate_id is not None
    assert stored(outcome.certificate_id).pem_chain == good.pem_chain
