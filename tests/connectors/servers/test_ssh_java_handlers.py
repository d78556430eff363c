"""WildFly/JBoss EAP and WebLogic handlers over real SSH, on configuration files in the products' formats.

Neither product has a Debian package, so no server runs: each test writes the configuration a fresh
installation has (WildFly's standalone.xml with Elytron TLS, an EAP 7.0 security realm, a WebLogic
domain's config.xml), lets the handler plan, install and verify through an SSH session, then checks the
keystore Java would open and every byte of the XML. For WebLogic only `java weblogic.security.Encrypt`
is a stand-in (put on the PATH by the domain's setDomainEnv.sh): it prints `{AES256}` + base64.
"""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from certfleet.connectors.base import Backup, CertificateBundle
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers.jboss import JBossHandler, alias_of_filter
from certfleet.connectors.servers.server_kinds import ServerSpec, TargetSpec
from certfleet.connectors.servers.ssh import SshTransport
from certfleet.connectors.servers.weblogic import WebLogicHandler
from certfleet.pki.parse import serial_hex
from tests.integration.pki_kit import issued_bundle
from tests.integration.sshd import PASSWORD_USER, chown_tree, scratch_dir


@pytest.fixture
def bundle() -> CertificateBundle:
    return issued_bundle("app.example.test")


def _apply(handler: JBossHandler | WebLogicHandler, bundle: CertificateBundle) -> list[Backup]:
    """What deploy-certificate does with a handler, minus the reload: back up, install, verify."""
    backups = []
    for n, write in enumerate(handler.plan(bundle)):
        backups.append(handler.snapshot(write.path, f"{write.path}.certfleet-backup-{n}"))
        handler.install(write)
    handler.verify()
    return backups


def _serial(store: bytes, password: str) -> str:
    loaded = pkcs12.load_pkcs12(store, password.encode())
    assert loaded.cert is not None
    return serial_hex(loaded.cert.certificate.serial_number)


# -- WildFly / JBoss EAP ------------------------------------------------------------------------------

WILDFLY = """<?xml version='1.0' encoding='UTF-8'?>

<server xmlns="urn:jboss:domain:20.0">
    <extensions>
        <extension module="org.wildfly.extension.elytron"/>
        <extension module="org.wildfly.extension.undertow"/>
    </extensions>
    <profile>
        <subsystem xmlns="urn:wildfly:elytron:18.0" final-providers="combined-providers" disallowed-providers="OracleUcrypto">
            <tls>
                <key-stores>
                    <!-- the application's TLS identity -->
                    <key-store name="applicationKS">
                        <credential-reference clear-text="password"/>
                        <implementation type="JKS"/>
                        <file path="application.keystore" relative-to="jboss.server.config.dir"/>
                    </key-store>
                </key-stores>
                <key-managers>
                    <key-manager name="applicationKM" key-store="applicationKS" generate-self-signed-certificate-host="localhost">
                        <credential-reference clear-text="password"/>
                    </key-manager>
                </key-managers>
                <server-ssl-contexts>
                    <server-ssl-context name="applicationSSC" key-manager="applicationKM"/>
                </server-ssl-contexts>
            </tls>
        </subsystem>
        <subsystem xmlns="urn:jboss:domain:undertow:14.0" default-server="default-server" default-virtual-host="default-host" default-servlet-container="default" default-security-domain="other" statistics-enabled="${wildfly.undertow.statistics-enabled:${wildfly.statistics-enabled:false}}">
            <buffer-cache name="default"/>
            <server name="default-server">
                <http-listener name="default" socket-binding="http" redirect-socket="https" enable-http2="true"/>
                <https-listener name="https" socket-binding="https" ssl-context="applicationSSC" enable-http2="true"/>
                <host name="default-host" alias="localhost">
                    <location name="/" handler="welcome-content"/>
                </host>
            </server>
        </subsystem>
    </profile>
    <interfaces>
        <interface name="public">
            <inet-address value="${jboss.bind.address:127.0.0.1}"/>
        </interface>
    </interfaces>
    <socket-binding-group name="standard-sockets" default-interface="public" port-offset="${jboss.socket.binding.port-offset:100}">
        <socket-binding name="http" port="${jboss.http.port:8080}"/>
        <socket-binding name="https" port="${jboss.https.port:8443}"/>
    </socket-binding-group>
</server>
"""  # noqa: E501 - the products' own long lines

EAP_LEGACY = """<?xml version="1.0" ?>
<server xmlns="urn:jboss:domain:4.2">
    <management>
        <security-realms>
            <security-realm name="ApplicationRealm">
                <server-identities>
                    <ssl>
                        <keystore path="application.keystore" relative-to="jboss.server.config.dir" keystore-password="s3cret" alias="server" key-password="s3cret" generate-self-signed-certificate-host="localhost"/>
                    </ssl>
                </server-identities>
            </security-realm>
        </security-realms>
    </management>
    <profile>
        <subsystem xmlns="urn:jboss:domain:undertow:3.1">
            <server name="default-server">
                <https-listener name="https" socket-binding="https" security-realm="ApplicationRealm"/>
            </server>
        </subsystem>
    </profile>
    <socket-binding-group name="standard-sockets" default-interface="public">
        <socket-binding name="https" port="${jboss.https.port:8443}"/>
    </socket-binding-group>
</server>
"""  # noqa: E501 - the products' own long lines


def _jboss_home(content: str) -> Path:
    home = scratch_dir(PASSWORD_USER, "certfleet-wildfly-")
    config = home / "standalone" / "configuration"
    config.mkdir(parents=True)
    (config / "standalone.xml").write_text(content)
    chown_tree(home, PASSWORD_USER)
    return home


def _jboss(transport: SshTransport, home: Path, port: int) -> JBossHandler:
    return JBossHandler(
        transport,
        ServerSpec(server_type="jboss", app_path=str(home), service_name="wildfly"),
        TargetSpec(port=port, server_name="app.example.test"),
    )


def test_wildfly_elytron_keystore_and_standalone_xml(transport: SshTransport, bundle: CertificateBundle) -> None:
    home = _jboss_home(WILDFLY)
    config = home / "standalone" / "configuration"
    handler = _jboss(transport, home, 8543)  # 8443 + the group's port-offset of 100
    assert handler.default_reload() == "systemctl restart wildfly"

    backups = _apply(handler, bundle)

    store = config / "application.keystore"
    assert _serial(store.read_bytes(), "password") == serial_hex(_leaf_serial(bundle))
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    expected = WILDFLY.replace('<implementation type="JKS"/>', '<implementation type="PKCS12"/>').replace(
        ' generate-self-signed-certificate-host="localhost"', ""
    )
    assert (config / "standalone.xml").read_text() == expected  # nothing else moved, comments kept
    assert [b.existed for b in backups] == [False, True]  # the keystore is new, standalone.xml backed up

    for backup in reversed(backups):
        handler.restore(backup)
    assert (config / "standalone.xml").read_text() == WILDFLY
    assert not store.exists()


def test_wildfly_second_rotation_only_replaces_the_keystore(transport: SshTransport, bundle: CertificateBundle) -> None:
    home = _jboss_home(WILDFLY)
    _apply(_jboss(transport, home, 8543), bundle)
    after_first = (home / "standalone" / "configuration" / "standalone.xml").read_bytes()
    second = issued_bundle("app.example.test")
    writes = _jboss(transport, home, 8543).plan(second)
    assert [w.path for w in writes] == [str(home / "standalone" / "configuration" / "application.keystore")]
    _apply(_jboss(transport, home, 8543), second)
    assert (home / "standalone" / "configuration" / "standalone.xml").read_bytes() == after_first


def test_wildfly_writes_the_alias_its_key_manager_filters_for(
    transport: SshTransport, bundle: CertificateBundle
) -> None:
    """The server looks up the key by the key-manager's alias-filter: a key under another alias is no key."""
    store = 'key-store="applicationKS"'
    named = WILDFLY.replace(f"{store} generate", f'{store} alias-filter="certfleet-good" generate')
    home = _jboss_home(named)
    config = home / "standalone" / "configuration"
    _apply(_jboss(transport, home, 8543), bundle)  # the config test (verify) checks the alias too
    loaded = pkcs12.load_pkcs12((config / "application.keystore").read_bytes(), b"password")
    assert loaded.cert is not None
    assert loaded.cert.friendly_name == b"certfleet-good"

    other = home / "standalone" / "configuration" / "standalone.xml"
    other.write_text(other.read_text().replace('alias-filter="certfleet-good"', 'alias-filter="elsewhere"'))
    mismatch = "under alias 'certfleet-good', but the server looks for 'elsewhere'"
    with pytest.raises(PermanentConnectorError, match=mismatch):
        _jboss(transport, home, 8543).check_installed()
    other.write_text(other.read_text().replace('alias-filter="elsewhere"', 'alias-filter="NONE"'))
    with pytest.raises(PermanentConnectorError, match="alias-filter 'NONE' lets no alias through"):
        _jboss(transport, home, 8543).plan(bundle)


@pytest.mark.parametrize(
    ("alias_filter", "alias"),
    [("good", "good"), ("a,b", "a"), ("NONE:+a", "a"), ("ALL", "server"), ("ALL:-old", "server"),
     ("ALL:-server", None), ("NONE", None), ("-x", None)],
)  # fmt: skip
def test_the_alias_an_elytron_filter_lets_through(alias_filter: str, alias: str | None) -> None:
    assert alias_of_filter(alias_filter) == alias


def test_eap_security_realm_keystore(transport: SshTransport, bundle: CertificateBundle) -> None:
    home = _jboss_home(EAP_LEGACY)
    config = home / "standalone" / "configuration"
    _apply(_jboss(transport, home, 8443), bundle)
    loaded = pkcs12.load_pkcs12((config / "application.keystore").read_bytes(), b"s3cret")
    assert loaded.cert is not None
    assert loaded.cert.friendly_name == b"server"  # the realm's alias
    assert (config / "standalone.xml").read_text() == EAP_LEGACY.replace(
        ' generate-self-signed-certificate-host="localhost"', ""
    )


def test_wildfly_errors_name_what_to_fix(transport: SshTransport, bundle: CertificateBundle) -> None:
    home = _jboss_home(WILDFLY)
    with pytest.raises(PermanentConnectorError, match=r"no https-listener .* port 8443 \(listeners: https=8543\)"):
        _jboss(transport, home, 8443).plan(bundle)
    with_store = WILDFLY.replace(
        '<credential-reference clear-text="password"/>\n                        <implementation',
        '<credential-reference store="vault" alias="ks-pw"/>\n                        <implementation',
    )
    (home / "standalone" / "configuration" / "standalone.xml").write_text(with_store)
    with pytest.raises(PermanentConnectorError, match="credential store 'vault'"):
        _jboss(transport, home, 8543).plan(bundle)
    with pytest.raises(PermanentConnectorError, match=r"the JBoss configuration .* does not exist"):
        _jboss(transport, home / "nowhere", 8543).plan(bundle)


# -- WebLogic ------------------------------------------------------------------------------------------

WEBLOGIC = """<?xml version='1.0' encoding='UTF-8'?>
<domain xmlns="http://xmlns.oracle.com/weblogic/domain" xmlns:sec="http://xmlns.oracle.com/weblogic/security" xmlns:wls="http://xmlns.oracle.com/weblogic/security/wls" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://xmlns.oracle.com/weblogic/security/wls http://xmlns.oracle.com/weblogic/security/wls/1.0/wls.xsd http://xmlns.oracle.com/weblogic/domain http://xmlns.oracle.com/weblogic/1.0/domain.xsd http://xmlns.oracle.com/weblogic/security http://xmlns.oracle.com/weblogic/1.0/security.xsd">
  <name>base_domain</name>
  <domain-version>14.1.1.0.0</domain-version>
  <security-configuration>
    <name>base_domain</name>
    <default-realm>myrealm</default-realm>
    <credential-encrypted>{AES256}q7D0YmK1EIr0JZ8Iy0n3QXg6D0xUOeSxY1o+Y0r0bnM=</credential-encrypted>
  </security-configuration>
  <server>
    <name>AdminServer</name>
    <ssl>
      <name>AdminServer</name>
      <enabled>true</enabled>
      <listen-port>7002</listen-port>
    </ssl>
    <listen-address></listen-address>
  </server>
  <server>
    <name>ms1</name>
    <ssl>
      <name>ms1</name>
      <enabled>true</enabled>
      <listen-port>8002</listen-port>
      <server-private-key-alias>ms1</server-private-key-alias>
      <server-private-key-pass-phrase-encrypted>{AES256}b2xkIHBhc3NwaHJhc2U=</server-private-key-pass-phrase-encrypted>
    </ssl>
    <listen-port>8001</listen-port>
    <listen-address>10.0.0.5</listen-address>
    <key-stores>CustomIdentityAndCustomTrust</key-stores>
    <custom-identity-key-store-file-name>{domain}/security/ms1-identity.p12</custom-identity-key-store-file-name>
    <custom-identity-key-store-type>PKCS12</custom-identity-key-store-type>
    <custom-identity-key-store-pass-phrase-encrypted>{AES256}b2xkIHBhc3NwaHJhc2U=</custom-identity-key-store-pass-phrase-encrypted>
    <custom-trust-key-store-file-name>{domain}/security/trust.jks</custom-trust-key-store-file-name>
    <custom-trust-key-store-type>JKS</custom-trust-key-store-type>
  </server>
  <configuration-version>14.1.1.0.0</configuration-version>
  <admin-server-name>AdminServer</admin-server-name>
</domain>
"""  # noqa: E501 - the products' own long lines

FAKE_JAVA = """#!/bin/sh
# Stand-in for `java weblogic.security.Encrypt`, which needs WebLogic: reads the password from stdin.
[ "$1" = "weblogic.security.Encrypt" ] || { echo "unexpected: $*" >&2; exit 2; }
IFS= read -r password
printf '{AES256}%s\\n' "$(printf '%s' "$password" | base64 -w0)"
"""


def _domain() -> Path:
    domain = scratch_dir(PASSWORD_USER, "certfleet-weblogic-")
    for d in ("config", "bin", "security", "fakebin"):
        (domain / d).mkdir()
    (domain / "config" / "config.xml").write_text(WEBLOGIC.replace("{domain}", str(domain)))
    (domain / "bin" / "setDomainEnv.sh").write_text(f'PATH="{domain}/fakebin:$PATH"; export PATH\n')
    (domain / "fakebin" / "java").write_text(FAKE_JAVA)
    (domain / "fakebin" / "java").chmod(0o755)
    chown_tree(domain, PASSWORD_USER)
    return domain


def _weblogic(transport: SshTransport, domain: Path, port: int) -> WebLogicHandler:
    return WebLogicHandler(
        transport,
        ServerSpec(server_type="weblogic", app_path=str(domain), service_name="wls-ms1"),
        TargetSpec(port=port, server_name="app.example.test"),
    )


def _decrypt(value: str) -> str:
    assert value.startswith("{AES256}")
    return base64.b64decode(value.removeprefix("{AES256}")).decode()


def test_weblogic_managed_server_gets_a_new_identity_keystore(
    transport: SshTransport, bundle: CertificateBundle
) -> None:
    domain = _domain()
    config = domain / "config" / "config.xml"
    original = config.read_text()

    _apply(_weblogic(transport, domain, 8002), bundle)

    text = config.read_text()
    encrypted = text.split("<custom-identity-key-store-pass-phrase-encrypted>")[1].split("<")[0]
    password = _decrypt(encrypted)
    assert len(password) >= 24  # a new random password, never the old one
    assert _serial((domain / "security" / "ms1-identity.p12").read_bytes(), password) == serial_hex(
        _leaf_serial(bundle)
    )
    expected = original.replace("{AES256}b2xkIHBhc3NwaHJhc2U=", encrypted)
    assert text == expected  # alias, type, trust and every other line as they were
    assert not list(domain.glob(".certfleet-*"))  # the password file is gone


def test_weblogic_admin_server_without_identity_settings_gets_them_in_schema_order(
    transport: SshTransport, bundle: CertificateBundle
) -> None:
    domain = _domain()
    config = domain / "config" / "config.xml"
    original = config.read_text()

    _apply(_weblogic(transport, domain, 7002), bundle)

    text = config.read_text()
    encrypted = text.split("<server-private-key-pass-phrase-encrypted>")[1].split("<")[0]
    keystore = domain / "security" / "app.example.test.p12"
    admin_before = original.split("<server>")[1]
    admin_after = text.split("<server>")[1]
    assert admin_after == admin_before.replace(
        "      <listen-port>7002</listen-port>\n    </ssl>\n    <listen-address></listen-address>\n",
        "      <listen-port>7002</listen-port>\n"
        "      <server-private-key-alias>certfleet</server-private-key-alias>\n"
        f"      <server-private-key-pass-phrase-encrypted>{encrypted}</server-private-key-pass-phrase-encrypted>\n"
        "    </ssl>\n    <listen-address></listen-address>\n"
        "    <key-stores>CustomIdentityAndJavaStandardTrust</key-stores>\n"
        f"    <custom-identity-key-store-file-name>{keystore}</custom-identity-key-store-file-name>\n"
        "    <custom-identity-key-store-type>PKCS12</custom-identity-key-store-type>\n"
        "    <custom-identity-key-store-pass-phrase-encrypted>"
        f"{encrypted}</custom-identity-key-store-pass-phrase-encrypted>\n",
    )
    assert text.split("<server>")[2] == original.split("<server>")[2]  # ms1 untouched
    loaded = pkcs12.load_pkcs12(keystore.read_bytes(), _decrypt(encrypted).encode())
    assert loaded.cert is not None
    assert loaded.cert.friendly_name == b"certfleet"


def test_weblogic_without_its_classes_says_what_it_needs(transport: SshTransport, bundle: CertificateBundle) -> None:
    """Encrypted pass phrases and no usable weblogic.security.Encrypt: refused before anything is written, saying
    why in WebLogic's terms instead of Java's class-not-found line alone."""
    domain = _domain()
    java = domain / "fakebin" / "java"
    missing = "Error: Could not find or load main class weblogic.security.Encrypt"
    java.write_text(f"#!/bin/sh\necho '{missing}' >&2\nexit 1\n")
    before = (domain / "config" / "config.xml").read_text()
    with pytest.raises(PermanentConnectorError) as refused:
        _weblogic(transport, domain, 7002).plan(bundle)
    message = str(refused.value)
    assert "are encrypted with this domain's own key (security/SerializedSystemIni.dat)" in message
    assert "Could not find or load main class weblogic.security.Encrypt" in message
    assert f"{domain}/bin/setDomainEnv.sh to put a Java and WebLogic's classes (weblogic.jar)" in message
    assert (domain / "config" / "config.xml").read_text() == before
    assert sorted(p.name for p in domain.iterdir()) == ["bin", "config", "fakebin", "security"]  # no password file


def test_weblogic_refuses_a_port_without_ssl(transport: SshTransport, bundle: CertificateBundle) -> None:
    domain = _domain()
    with pytest.raises(PermanentConnectorError, match=r"no server .* SSL enabled on port 8001 \(SSL: AdminServer=7002"):
        _weblogic(transport, domain, 8001).plan(bundle)


def _leaf_serial(bundle: CertificateBundle) -> int:
    from certfleet.pki.parse import load_material

    return load_material(bundle.leaf_pem).certificates[0].serial_number
