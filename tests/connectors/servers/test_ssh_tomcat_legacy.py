"""Tomcat 8.5/9 server.xml with the legacy `<Connector>` TLS attributes, over real SSH.

No Tomcat 9 runs here (Debian 12 ships Tomcat 10.1, which refuses the legacy syntax), so the handler plans,
installs and checks on the configuration tree such a server has, and Java's own `keytool` proves the
keystore it leaves is one Tomcat 9 would open: same file, type, alias and password.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jks
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12

from certfleet.connectors.base import Backup, CertificateBundle
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers.server_kinds import ServerSpec, TargetSpec
from certfleet.connectors.servers.ssh import SshTransport
from certfleet.connectors.servers.tomcat import TomcatHandler, tomcat_version
from certfleet.pki.bundle import to_java_keystore, to_pkcs12
from certfleet.pki.keys import load_private_key
from certfleet.pki.parse import load_material, serial_hex
from tests.integration.pki_kit import issued_bundle
from tests.integration.sshd import PASSWORD_USER, chown_tree, scratch_dir

PORT = 8443

LEGACY_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- a Tomcat 9 server.xml as its how-to writes it -->
<Server port="8005" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{port}" protocol="org.apache.coyote.http11.Http11NioProtocol"
               maxThreads="150" SSLEnabled="true" scheme="https" secure="true"
               clientAuth="false" sslProtocol="TLS"
               {attributes} />
    <Engine name="Catalina" defaultHost="localhost" />
  </Service>
</Server>
"""


@pytest.fixture
def old() -> CertificateBundle:
    return issued_bundle("old.example.test")


@pytest.fixture
def new() -> CertificateBundle:
    return issued_bundle("payments.example.test")


def _jks(bundle: CertificateBundle, password: str, alias: str) -> bytes:
    key = load_private_key(bundle.key_pem)
    return to_java_keystore(key, load_material(bundle.fullchain_pem).certificates, password, alias=alias)


def _tree(attributes: str, files: dict[str, bytes]) -> Path:
    base = scratch_dir(PASSWORD_USER, "certfleet-tomcat9-")
    (base / "conf").mkdir()
    (base / "conf" / "server.xml").write_text(LEGACY_XML.format(port=PORT, attributes=attributes))
    for name, data in files.items():
        (base / name).write_bytes(data)
    chown_tree(base, PASSWORD_USER)
    return base


def _handler(transport: SshTransport, base: Path, version: str | None = "Tomcat 9") -> TomcatHandler:
    server = ServerSpec(server_type="tomcat", app_path=str(base), version=version)
    return TomcatHandler(transport, server, TargetSpec(port=PORT))


def _apply(handler: TomcatHandler, bundle: CertificateBundle) -> list[Backup]:
    """What deploy-certificate does with a handler, minus the restart: back up, install, verify."""
    backups = []
    for n, write in enumerate(handler.plan(bundle)):
        backups.append(handler.snapshot(write.path, f"{write.path}.certfleet-backup-{n}"))
        handler.install(write)
    handler.verify()
    return backups


def _leaf_serial(bundle: CertificateBundle) -> str:
    return serial_hex(load_material(bundle.leaf_pem).certificates[0].serial_number)


def test_a_legacy_jks_connector_is_rotated_in_place(
    transport: SshTransport, old: CertificateBundle, new: CertificateBundle
) -> None:
    attributes = 'keystoreFile="${catalina.base}/conf/payments.jks" keystorePass="s3cret!" keyAlias="Payments"'
    base = _tree(attributes, {"conf/payments.jks": _jks(old, "s3cret!", "payments")})
    server_xml = (base / "conf" / "server.xml").read_bytes()
    handler = _handler(transport, base)

    writes = handler.plan(new)
    assert [w.path for w in writes] == [str(base / "conf" / "payments.jks")]  # server.xml is not rewritten
    _apply(handler, new)

    assert (base / "conf" / "server.xml").read_bytes() == server_xml
    assert not (base / "conf" / "payments.p12").exists()
    store = jks.KeyStore.loads((base / "conf" / "payments.jks").read_bytes(), "s3cret!")
    assert store.store_type == "jks"
    assert list(store.private_keys) == ["payments"]  # the alias keyAlias names (Java ignores its case)
    entry = store.private_keys["payments"]
    leaf = load_material(b"".join(_pem(der) for _, der in entry.cert_chain)).certificates[0]
    assert serial_hex(leaf.serial_number) == _leaf_serial(new)
    keytool = shutil.which("keytool")
    assert keytool, "keytool missing: run `bash scripts/install-system-packages.sh` (openjdk-17-jre-headless)"
    listing = subprocess.run(
        [keytool, "-list", "-keystore", str(base / "conf" / "payments.jks"), "-storepass", "s3cret!"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Keystore type: JKS" in listing
    assert "payments, " in listing
    assert "PrivateKeyEntry" in listing


def test_restoring_a_legacy_connector_passes_the_check_so_the_rollback_restarts(
    transport: SshTransport, old: CertificateBundle, new: CertificateBundle
) -> None:
    base = _tree(
        'keystoreFile="conf/.keystore" keystorePass="changeit"', {"conf/.keystore": _jks(old, "changeit", "x")}
    )
    before = (base / "conf" / ".keystore").read_bytes()
    handler = _handler(transport, base)
    backups = _apply(handler, new)
    assert (base / "conf" / ".keystore").read_bytes() != before

    for backup in backups:
        handler.restore(backup)
    handler.verify()  # the check understands what was there before (it raised "no <SSLHostConfig>" once)
    assert (base / "conf" / ".keystore").read_bytes() == before


def test_a_pkcs12_legacy_keystore_stays_pkcs12_with_its_password(
    transport: SshTransport, old: CertificateBundle, new: CertificateBundle
) -> None:
    key = load_private_key(old.key_pem)
    p12 = to_pkcs12(key, load_material(old.fullchain_pem).certificates, b"pw", friendly_name="tomcat")
    attributes = 'keystoreFile="/CATALINA_BASE/conf/site.p12" keystoreType="PKCS12" keystorePass="pw"'
    base = _tree("", {"conf/site.p12": p12})
    (base / "conf" / "server.xml").write_text(
        LEGACY_XML.format(port=PORT, attributes=attributes.replace("/CATALINA_BASE", str(base)))
    )
    _apply(_handler(transport, base, version="9.0.82"), new)
    found = _handler(transport, base).plan(new)[0]
    assert found.path == str(base / "conf" / "site.p12")
    loaded = pkcs12.load_pkcs12((base / "conf" / "site.p12").read_bytes(), b"pw")
    assert loaded.cert is not None
    assert serial_hex(loaded.cert.certificate.serial_number) == _leaf_serial(new)


def test_openssl_style_legacy_pem_files_are_replaced_in_place(
    transport: SshTransport, old: CertificateBundle, new: CertificateBundle
) -> None:
    attributes = (
        'SSLCertificateFile="${catalina.base}/conf/site.crt" SSLCertificateKeyFile="conf/site.key" '
        'SSLCertificateChainFile="conf/chain.pem"'
    )
    base = _tree(attributes, {"conf/site.crt": old.leaf_pem, "conf/site.key": old.key_pem, "conf/chain.pem": b""})
    _apply(_handler(transport, base), new)
    assert (base / "conf" / "site.crt").read_bytes() == new.leaf_pem
    assert (base / "conf" / "site.key").read_bytes() == new.key_pem
    assert (base / "conf" / "chain.pem").read_bytes() == new.chain_pem


def test_a_keystore_without_the_alias_the_connector_names_fails_the_check(
    transport: SshTransport, old: CertificateBundle
) -> None:
    base = _tree('keystoreFile="conf/k.jks" keyAlias="tomcat"', {"conf/k.jks": _jks(old, "changeit", "other")})
    with pytest.raises(PermanentConnectorError, match=r"alias 'other'.*keyAlias is 'tomcat'"):
        _handler(transport, base).verify()


@pytest.mark.parametrize(
    ("attributes", "version", "message"),
    [
        ('keystoreFile="conf/k.jks"', "Tomcat 10.1", "Tomcat 10.1 and later refuse"),
        ('keystoreFile="${catalina.home}/conf/k.jks"', "Tomcat 9", r"\$\{catalina.home\}.*write the path out"),
        ('keystoreFile="conf/k.jks" keystorePass="${ks.pass}"', "Tomcat 9", "keystorePass.*property"),
        ('keystoreFile="conf/k.jks" keyPass="other"', "Tomcat 9", "keyPass other than its keystorePass"),
        ('keystoreFile="conf/k.jks" keystoreType="PKCS11"', "Tomcat 9", "PKCS11 keystore"),
        ("", "Tomcat 8.0", "Tomcat before 8.5 does not read <SSLHostConfig>"),
    ],
)
def test_what_the_registered_tomcat_could_not_run_is_refused_before_anything_is_written(
    transport: SshTransport, old: CertificateBundle, new: CertificateBundle, attributes: str, version: str, message: str
) -> None:
    base = _tree(attributes, {"conf/k.jks": _jks(old, "changeit", "tomcat")})
    before = {p: p.read_bytes() for p in (base / "conf").iterdir()}
    with pytest.raises(PermanentConnectorError, match=message):
        _handler(transport, base, version=version).plan(new)
    assert {p: p.read_bytes() for p in (base / "conf").iterdir()} == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Tomcat 9", (9, 0)), ("9.0.82", (9, 0)), ("10.1", (10, 1)), ("Apache Tomcat/8.5.100", (8, 5)), ("", None)],
)
def test_tomcat_versions_are_told_apart(text: str, expected: tuple[int, int] | None) -> None:
    assert tomcat_version(text) == expected


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)


def test_a_jks_whose_key_is_not_its_certificates_fails_the_check(
    transport: SshTransport, old: CertificateBundle, new: CertificateBundle
) -> None:
    leaf_der = load_material(old.leaf_pem).certificates[0].public_bytes(Encoding.DER)
    other_key = load_private_key(new.key_pem).private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    entry = jks.PrivateKeyEntry.new("tomcat", [leaf_der], other_key, "pkcs8")
    base = _tree('keystoreFile="conf/k.jks"', {"conf/k.jks": jks.KeyStore.new("jks", [entry]).saves("changeit")})
    with pytest.raises(PermanentConnectorError, match="the key does not match the certificate"):
        _handler(transport, base).verify()
