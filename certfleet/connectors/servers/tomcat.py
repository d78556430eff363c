"""Tomcat: a PKCS#12 keystore, and the `<Connector>`/`<SSLHostConfig>`/`<Certificate>` of server.xml.

`conf/server.xml` under the Tomcat Path (CATALINA_BASE) is parsed with lxml. The `<Connector>` whose
`port` is the target's is chosen; in it the `<SSLHostConfig>` whose `hostName` is the SNI name, else the
connector's default one; in that the `<Certificate>` of the key's type (RSA/EC), else the first.

- A Certificate that names PEM files (`certificateFile`/`certificateKeyFile`) gets new PEM files there.
- Otherwise a PKCS#12 keystore is written where `certificateKeystoreFile` points (relative paths resolve
  against the Tomcat Path; a JKS store is replaced by `<same name>.p12` beside it), or, when none is
  configured, to `<Key Store Folder>/<common name>.p12`; the existing keystore password is kept, else a
  random one is made. server.xml is rewritten (only those
  attributes change, comments and layout stay) when the file, password or type must change.

Tomcat 8.5/9 also read the legacy syntax, TLS attributes on the `<Connector>` itself (`keystoreFile`,
`keystorePass`, `keystoreType`, `keyAlias`, or the OpenSSL `SSLCertificateFile`/`SSLCertificateKeyFile`). Such a
connector is rotated in place: the same keystore file, type, alias and password (`${catalina.base}` expanded),
server.xml untouched, so what the server reads stays what it read. Tomcat 10.1 and later refuse that syntax and
Tomcat before 8.5 does not know `<SSLHostConfig>`: the server's Version says which, and a plan that the
registered version could not start is refused with the reason.

Config test: the keystore on the server opens with the password server.xml names and its key matches its
certificate, then `bin/catalina.sh configtest` when that script is under the Tomcat Path.
Restart: `systemctl restart SERVICE`, else `bin/shutdown.sh` + `bin/startup.sh` under the Tomcat Path.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import ClassVar

from lxml import etree

from certfleet.connectors.base import CertificateBundle, FileWrite
from certfleet.connectors.servers import keystores
from certfleet.connectors.servers.server_kinds import (
    CERT_MODE,
    KEY_MODE,
    ServerKindHandler,
    bundle_pair,
    check_pem_pair,
)
from certfleet.connectors.servers.xml_edit import XmlEditor

CONFIG_MODE = 0o640  # server.xml holds the keystore password
_PEM_ATTRS = ("certificateFile", "certificateKeyFile", "certificateChainFile")
# The legacy <Connector> attributes (Tomcat 8.5/9; removed in 10.1) and Tomcat's defaults for them.
_LEGACY_MARKERS = ("keystoreFile", "SSLCertificateFile")
LEGACY_DEFAULT_PASSWORD = "changeit"  # noqa: S105 - Tomcat's documented default
LEGACY_DEFAULT_ALIAS = "tomcat"  # what keytool's Tomcat how-to names it; Tomcat itself takes the first key
_VERSION = re.compile(r"(\d+)(?:\.(\d+))?")
_PROPERTY = re.compile(r"\$\{([^}]*)\}")


def tomcat_version(text: str | None) -> tuple[int, int] | None:
    """Major and minor from the server's Version field ("Tomcat 9", "9.0.82", "10.1"); None when it has none."""
    match = _VERSION.search(text or "")
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


@dataclass
class TomcatSite:
    editor: XmlEditor
    connector: etree._Element
    host_config: etree._Element | None  # None: to be created
    certificate: etree._Element | None  # None: to be created
    keystore_path: str | None
    password: str | None
    store_type: str | None

    def get(self, name: str) -> str | None:
        return self.certificate.get(name) if self.certificate is not None else None


class TomcatHandler(ServerKindHandler):
    kind: ClassVar[str] = "tomcat"
    service_action: ClassVar[str] = "restart"

    @property
    def server_xml(self) -> str:
        path = self.server.app_path
        return path if path.endswith(".xml") else self.app_file("conf", "server.xml")

    @property
    def base(self) -> str:
        return self.app_file("..", "..") if self.server.app_path.endswith(".xml") else self.server.app_path

    def locate(self, key_type: str | None = None) -> TomcatSite:
        raw = self.read_required(self.server_xml, "the Tomcat configuration")
        editor = XmlEditor(self.where(), self.server_xml, raw)
        connector = self._connector(editor.root)
        host_config = self._host_config(connector)
        certificate = self._certificate(host_config, key_type) if host_config is not None else None
        site = TomcatSite(editor, connector, host_config, certificate, None, None, None)
        path = site.get("certificateKeystoreFile")
        site.keystore_path = keystores.relative_to(self.base, path) if path and "${" not in path else None
        password = site.get("certificateKeystorePassword")
        site.password = password if password and "${" not in password else None
        site.store_type = site.get("certificateKeystoreType")
        return site

    def plan(self, bundle: CertificateBundle) -> list[FileWrite]:
        key, _ = bundle_pair(self.where(), bundle)
        key_type = "EC" if "EllipticCurve" in type(key).__name__ else "RSA"
        site = self.locate(key_type)
        version = tomcat_version(self.server.version)
        if self._legacy(site):
            if version is not None and version >= (10, 1):
                raise self.fail(
                    f"{self.server_xml} configures TLS with the legacy <Connector> attributes (keystoreFile, "
                    f"SSLCertificateFile), which Tomcat 10.1 and later refuse, but the server is registered as "
                    f"version {self.server.version}: move them into <SSLHostConfig>/<Certificate> or correct "
                    "the server's Version"
                )
            return self._plan_legacy(site.connector, bundle)
        if site.host_config is None and version is not None and version < (8, 5):
            raise self.fail(
                f'the <Connector port="{self.target.port}"> in {self.server_xml} has no TLS settings and the '
                f"server is registered as version {self.server.version}: Tomcat before 8.5 does not read "
                "<SSLHostConfig>; set keystoreFile, keystorePass and keyAlias on the Connector first"
            )
        if site.get("certificateFile") and site.get("certificateKeyFile"):
            return self._plan_pem(site, bundle)
        path = site.keystore_path or keystores.relative_to(
            self.server.keystore_folder or self.app_file("conf"),
            keystores.keystore_file_name(self.target.server_name or "certfleet"),
        )
        if (site.store_type or "JKS").upper() != keystores.PKCS12 and not path.endswith((".p12", ".pfx")):
            # A JKS store (Tomcat's default type) is replaced by a PKCS#12 one beside it, named for what it is.
            path = posixpath.splitext(path)[0] + ".p12"
        password = site.password or keystores.new_password()
        alias = site.get("certificateKeyAlias") or "certfleet"
        writes = [FileWrite(path, keystores.build_pkcs12(self.where(), bundle, password, alias), KEY_MODE)]
        original = site.get("certificateKeystoreFile") or ""
        written_path = path
        if site.keystore_path == path:
            written_path = original
        elif site.keystore_path and original and not posixpath.isabs(original):
            written_path = posixpath.splitext(original)[0] + ".p12"  # stays relative, as the admin wrote it
        values: dict[str, str | None] = {
            "certificateKeystoreFile": written_path,
            "certificateKeystorePassword": password,
            "certificateKeystoreType": keystores.PKCS12,
            "certificateKeyPassword": password if site.get("certificateKeyPassword") else None,
        }
        editor = site.editor
        if site.certificate is not None:
            editor.set_attributes(site.certificate, values)
        else:
            attrs = {"type": key_type, **{k: v for k, v in values.items() if v is not None}}
            if site.host_config is not None:
                editor.insert_child(site.host_config, len(site.host_config), "Certificate", attrs)
            else:
                editor.insert_child(site.connector, 0, "SSLHostConfig", {}, children=[("Certificate", attrs)])
        if editor.changed:
            writes.append(FileWrite(self.server_xml, editor.result(), CONFIG_MODE))
        return writes

    def _plan_pem(self, site: TomcatSite, bundle: CertificateBundle) -> list[FileWrite]:
        cert = site
        chain_file = cert.get("certificateChainFile")
        writes = [
            FileWrite(
                keystores.relative_to(self.base, cert.get("certificateFile") or ""),
                bundle.leaf_pem if chain_file else bundle.fullchain_pem,
                CERT_MODE,
            ),
            FileWrite(keystores.relative_to(self.base, cert.get("certificateKeyFile") or ""), bundle.key_pem, KEY_MODE),
        ]
        if chain_file:
            writes.append(FileWrite(keystores.relative_to(self.base, chain_file), bundle.chain_pem, CERT_MODE))
        return writes

    def check_installed(self) -> None:
        site = self.locate()
        if self._legacy(site):
            self._check_legacy(site.connector)
            return
        if site.certificate is None:
            raise self.fail(f"the TLS <Connector> in {self.server_xml} has no <SSLHostConfig> with a <Certificate>")
        if site.get("certificateFile") and site.get("certificateKeyFile"):
            cert_path = keystores.relative_to(self.base, site.get("certificateFile") or "")
            key_path = keystores.relative_to(self.base, site.get("certificateKeyFile") or "")
            check_pem_pair(
                self.where(),
                self.read_required(cert_path, "the certificate file"),
                self.read_required(key_path, "the key file"),
                cert_path=cert_path,
                key_path=key_path,
            )
            return
        if site.keystore_path is None:
            raise self.fail(f"the <Certificate> in {self.server_xml} names no keystore file")
        data = self.read_required(site.keystore_path, "the keystore")
        keystores.check_keystore(self.where(), site.keystore_path, data, site.password or "changeit", site.store_type)

    def default_config_test(self) -> str | None:
        script = self.app_file("bin", "catalina.sh")
        if self.read_file(script) is None:
            return None
        return f"CATALINA_BASE={shlex.quote(self.base)} {shlex.quote(script)} configtest"

    def default_reload(self) -> str:
        base = shlex.quote(self.base)
        return self.service_command("restart") or (
            f"cd {base} && CATALINA_BASE={base} ./bin/shutdown.sh 20 -force; CATALINA_BASE={base} ./bin/startup.sh"
        )

    # -- the legacy <Connector> attributes (Tomcat 8.5/9) ------------------------------------------------

    @staticmethod
    def _legacy(site: TomcatSite) -> bool:
        return site.host_config is None and any(site.connector.get(name) for name in _LEGACY_MARKERS)

    def _legacy_path(self, connector: etree._Element, attribute: str) -> str:
        """A file the Connector names, `${catalina.base}` expanded as Tomcat does; relative to CATALINA_BASE."""
        raw = connector.get(attribute) or ""
        expanded = raw.replace("${catalina.base}", self.base)
        unknown = _PROPERTY.search(expanded)
        if unknown is not None:
            raise self.fail(
                f"the Connector's {attribute}={raw!r} in {self.server_xml} uses the property "
                f"${{{unknown.group(1)}}}, which certfleet cannot resolve (only ${{catalina.base}}): "
                "write the path out"
            )
        return keystores.relative_to(self.base, expanded)

    def _legacy_password(self, connector: etree._Element, attribute: str, default: str | None) -> str | None:
        value = connector.get(attribute)
        if value is not None and _PROPERTY.search(value):
            raise self.fail(
                f"the Connector's {attribute} in {self.server_xml} is a ${{...}} property, which certfleet "
                "cannot resolve: it cannot build a keystore Tomcat opens"
            )
        return value if value is not None else default

    def _legacy_store(self, connector: etree._Element) -> tuple[str, str, str, str | None]:
        """Path, password, type and alias of the keystore the Connector names."""
        path = self._legacy_path(connector, "keystoreFile")
        password = self._legacy_password(connector, "keystorePass", LEGACY_DEFAULT_PASSWORD) or ""
        key_password = self._legacy_password(connector, "keyPass", None)
        if key_password is not None and key_password != password:
            raise self.fail(
                f"the Connector in {self.server_xml} sets a keyPass other than its keystorePass: certfleet "
                "writes keystores whose key and store passwords are one; remove keyPass or make them equal"
            )
        store_type = (connector.get("keystoreType") or "JKS").upper()
        if store_type not in ("JKS", keystores.PKCS12):
            raise self.fail(
                f"the Connector in {self.server_xml} names a {store_type} keystore; certfleet writes JKS and "
                "PKCS12 keystores"
            )
        return path, password, store_type, connector.get("keyAlias")

    def _plan_legacy(self, connector: etree._Element, bundle: CertificateBundle) -> list[FileWrite]:
        """Replace what the Connector names, in place and in kind; server.xml itself is not changed."""
        if not connector.get("keystoreFile"):
            cert_path = self._legacy_path(connector, "SSLCertificateFile")
            key_attr = "SSLCertificateKeyFile" if connector.get("SSLCertificateKeyFile") else "SSLCertificateFile"
            has_chain = bool(connector.get("SSLCertificateChainFile"))
            writes = [FileWrite(cert_path, bundle.leaf_pem if has_chain else bundle.fullchain_pem, CERT_MODE)]
            key_path = self._legacy_path(connector, key_attr)
            if key_path == cert_path:  # one file with both, as Tomcat allows
                writes = [FileWrite(cert_path, bundle.fullchain_pem + bundle.key_pem, KEY_MODE)]
            else:
                writes.append(FileWrite(key_path, bundle.key_pem, KEY_MODE))
            if has_chain:
                writes.append(
                    FileWrite(self._legacy_path(connector, "SSLCertificateChainFile"), bundle.chain_pem, CERT_MODE)
                )
            return writes
        path, password, store_type, alias = self._legacy_store(connector)
        name = alias or LEGACY_DEFAULT_ALIAS
        build = keystores.build_jks if store_type == "JKS" else keystores.build_pkcs12
        return [FileWrite(path, build(self.where(), bundle, password, name), KEY_MODE)]

    def _check_legacy(self, connector: etree._Element) -> None:
        if not connector.get("keystoreFile"):
            cert_path = self._legacy_path(connector, "SSLCertificateFile")
            key_attr = "SSLCertificateKeyFile" if connector.get("SSLCertificateKeyFile") else "SSLCertificateFile"
            key_path = self._legacy_path(connector, key_attr)
            check_pem_pair(
                self.where(),
                self.read_required(cert_path, "the certificate file"),
                self.read_required(key_path, "the key file"),
                cert_path=cert_path,
                key_path=key_path,
            )
            return
        path, password, store_type, alias = self._legacy_store(connector)
        found = keystores.check_keystore(
            self.where(), path, self.read_required(path, "the keystore"), password, store_type
        )
        if alias is not None and (found.alias or "").lower() != alias.lower():  # Java aliases ignore case
            raise self.fail(
                f"the keystore {path} holds its key under alias {found.alias!r}, but the Connector's keyAlias is "
                f"{alias!r}: Tomcat would find no key"
            )

    # -- finding the connector -----------------------------------------------------------------------

    def _connector(self, root: etree._Element) -> etree._Element:
        connectors = root.findall("./Service/Connector")
        for connector in connectors:
            if connector.get("port") == str(self.target.port):
                if connector.get("SSLEnabled", "false").lower() != "true":
                    raise self.fail(
                        f'the <Connector port="{self.target.port}"> in {self.server_xml} is not a TLS connector '
                        '(SSLEnabled="true" is missing)'
                    )
                return connector
        ports = ", ".join(c.get("port", "?") for c in connectors) or "none"
        raise self.fail(f"no <Connector> in {self.server_xml} has port {self.target.port} (ports: {ports})")

    def _host_config(self, connector: etree._Element) -> etree._Element | None:
        configs = connector.findall("SSLHostConfig")
        sni = self.target.server_name
        default_name = connector.get("defaultSSLHostConfigName", "_default_")
        if sni is not None:
            for config in configs:
                if config.get("hostName", "").lower() == sni.lower():
                    return config
        for config in configs:
            if config.get("hostName", "_default_") == default_name:
                return config
        return configs[0] if configs else None

    def _certificate(self, host_config: etree._Element, key_type: str | None) -> etree._Element | None:
        certificates = host_config.findall("Certificate")
        for want in (key_type, "UNDEFINED"):
            for cert in certificates:
                if (cert.get("type") or "UNDEFINED").upper() == (want or "").upper():
                    return cert
        return certificates[0] if certificates else None
