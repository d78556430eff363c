"""WebLogic: a PKCS#12 identity keystore and the identity keystore settings of the domain's config.xml.

The WebLogic Path is the domain directory (`config/config.xml` under it) or config.xml itself. The
`<server>` whose `<ssl><listen-port>` (7002 when SSL is enabled without one) is the target's port is
chosen; certfleet sets on it:

    <key-stores>CustomIdentityAnd...Trust</key-stores>     (Custom identity; the trust choice is kept)
    <custom-identity-key-store-file-name>                  where the keystore is written
    <custom-identity-key-store-type>PKCS12
    <custom-identity-key-store-pass-phrase-encrypted>
    <ssl><server-private-key-alias> and <server-private-key-pass-phrase-encrypted>

WebLogic keeps passwords encrypted with the domain's own key (`security/SerializedSystemIni.dat`), which
only WebLogic can use: a clear-text pass phrase already in config.xml (development domains) is kept,
otherwise a new random password is encrypted on the server with `weblogic.security.Encrypt` (through
`setDomainEnv.sh`), the password passed in a 0600 file that is removed right after, never on a command
line. Missing elements are inserted in the order of the domain schema; comments and layout stay.

Config test: the keystore opens with the password and its key matches its certificate (when the
password is known to this run), and config.xml parses. Restart: `systemctl restart SERVICE`, or the
server's restart command (WebLogic reads identity keystores at start).
"""

from __future__ import annotations

import posixpath
import secrets
import shlex
from dataclasses import dataclass
from typing import ClassVar

from lxml import etree

from certfleet.connectors.base import CertificateBundle, FileWrite
from certfleet.connectors.servers import keystores
from certfleet.connectors.servers.server_kinds import KEY_MODE, ServerKindHandler, ServerSpec, TargetSpec, bundle_pair
from certfleet.connectors.servers.transport import Transport
from certfleet.connectors.servers.xml_edit import XmlEditor

CONFIG_MODE = 0o640
DEFAULT_SSL_PORT = 7002
DEFAULT_ALIAS = "certfleet"
ENCRYPT_COMMAND = ". {domain}/bin/setDomainEnv.sh >/dev/null 2>&1; java weblogic.security.Encrypt < {password_file}"
# Order of the identity elements in the domain schema's server type.
_IDENTITY_ORDER = (
    "key-stores",
    "custom-identity-key-store-file-name",
    "custom-identity-key-store-type",
    "custom-identity-key-store-pass-phrase-encrypted",
)
_SSL_ORDER = ("server-private-key-alias", "server-private-key-pass-phrase-encrypted")


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _child(parent: etree._Element, name: str) -> etree._Element | None:
    return next((e for e in parent if _local(e.tag) == name), None)


def _text(parent: etree._Element | None, name: str) -> str | None:
    element = _child(parent, name) if parent is not None else None
    return (element.text or "").strip() if element is not None else None


def is_encrypted(value: str | None) -> bool:
    return bool(value) and (value or "").startswith("{")


@dataclass
class WebLogicSite:
    editor: XmlEditor
    server: etree._Element
    ssl: etree._Element
    keystore_path: str | None
    pass_phrase: str | None


class WebLogicHandler(ServerKindHandler):
    kind: ClassVar[str] = "weblogic"
    service_action: ClassVar[str] = "restart"

    def __init__(
        self, transport: Transport, server: ServerSpec, target: TargetSpec, *, encrypt_command: str = ENCRYPT_COMMAND
    ) -> None:
        super().__init__(transport, server, target)
        self.encrypt_command = encrypt_command
        self._planned_password: str | None = None  # known only to the run that wrote the keystore

    @property
    def config_xml(self) -> str:
        path = self.server.app_path
        return path if path.endswith(".xml") else self.app_file("config", "config.xml")

    @property
    def domain(self) -> str:
        return posixpath.dirname(posixpath.dirname(self.config_xml))

    def locate(self) -> WebLogicSite:
        raw = self.read_required(self.config_xml, "the WebLogic domain configuration")
        editor = XmlEditor(self.where(), self.config_xml, raw)
        seen: list[str] = []
        for server in (e for e in editor.root if _local(e.tag) == "server"):
            ssl = _child(server, "ssl")
            if ssl is None or (_text(ssl, "enabled") or "false").lower() != "true":
                continue
            port = int(_text(ssl, "listen-port") or DEFAULT_SSL_PORT)
            seen.append(f"{_text(server, 'name')}={port}")
            if port == self.target.port:
                path = _text(server, "custom-identity-key-store-file-name")
                return WebLogicSite(
                    editor,
                    server,
                    ssl,
                    keystores.relative_to(self.domain, path) if path else None,
                    _text(server, "custom-identity-key-store-pass-phrase-encrypted"),
                )
        found = ", ".join(seen) or "none"
        raise self.fail(f"no server in {self.config_xml} has SSL enabled on port {self.target.port} (SSL: {found})")

    def plan(self, bundle: CertificateBundle) -> list[FileWrite]:
        bundle_pair(self.where(), bundle)
        site = self.locate()
        path = site.keystore_path or keystores.relative_to(
            self.server.keystore_folder or posixpath.join(self.domain, "security"),
            keystores.keystore_file_name(self.target.server_name or "identity"),
        )
        alias = _text(site.ssl, "server-private-key-alias") or DEFAULT_ALIAS
        if site.pass_phrase and not is_encrypted(site.pass_phrase):
            password, stored = site.pass_phrase, site.pass_phrase
        else:
            password = keystores.new_password()
            stored = self.encrypt(password)
        self._planned_password = password
        writes = [FileWrite(path, keystores.build_pkcs12(self.where(), bundle, password, alias), KEY_MODE)]
        trust = _text(site.server, "key-stores") or "CustomIdentityAndJavaStandardTrust"
        if not trust.startswith("CustomIdentity"):
            trust = "CustomIdentityAndJavaStandardTrust"
        _set_in_order(
            site.editor,
            site.server,
            _IDENTITY_ORDER,
            {
                "key-stores": trust,
                "custom-identity-key-store-file-name": path,
                "custom-identity-key-store-type": keystores.PKCS12,
                "custom-identity-key-store-pass-phrase-encrypted": stored,
            },
            after=("listen-address", "listen-port", "ssl", "name"),
        )
        _set_in_order(
            site.editor,
            site.ssl,
            _SSL_ORDER,
            {"server-private-key-alias": alias, "server-private-key-pass-phrase-encrypted": stored},
            after=(),
        )
        if site.editor.changed:
            writes.append(FileWrite(self.config_xml, site.editor.result(), CONFIG_MODE))
        return writes

    def encrypt(self, password: str) -> str:
        """`weblogic.security.Encrypt` on the server, with the domain's key; the password goes in a file."""
        password_file = posixpath.join(self.domain, f".certfleet-{secrets.token_hex(6)}")
        self.transport.write_atomic(password_file, password.encode() + b"\n", 0o600)
        try:
            command = self.encrypt_command.format(
                domain=shlex.quote(self.domain), password_file=shlex.quote(password_file)
            )
            result = self.transport.run(command, self.server.command_timeout)
        finally:
            self.transport.remove(password_file)
        encrypted = [line.strip() for line in result.output.splitlines() if line.strip().startswith("{")]
        if result.exit_code != 0 or not encrypted:
            # Typically "Could not find or load main class weblogic.security.Encrypt": no WebLogic classes.
            said = f"exit code {result.exit_code}: {result.tail() or 'no output'}" if result.exit_code else "no value"
            raise self.fail(
                f"the pass phrases in {self.config_xml} are encrypted with this domain's own key "
                "(security/SerializedSystemIni.dat), which only WebLogic's classes can use, and "
                f"`java weblogic.security.Encrypt` did not encrypt a new one ({said}). certfleet needs "
                f"{self.domain}/bin/setDomainEnv.sh to put a Java and WebLogic's classes (weblogic.jar) on the "
                "PATH and CLASSPATH of the login, or a clear-text pass phrase in config.xml (development domains)"
            )
        return encrypted[-1]

    def check_installed(self) -> None:
        site = self.locate()
        if site.keystore_path is None:
            raise self.fail(f"the server in {self.config_xml} names no custom identity keystore")
        data = self.read_required(site.keystore_path, "the identity keystore")
        password = self._planned_password or (None if is_encrypted(site.pass_phrase) else site.pass_phrase)
        if password is not None:
            keystores.check_keystore(
                self.where(), site.keystore_path, data, password, _text(site.server, "custom-identity-key-store-type")
            )

    def default_reload(self) -> str:
        command = self.service_command("restart")
        if command is None:
            raise self.fail("WebLogic reads keystores at start: set the service name or a restart command")
        return command


def _set_in_order(
    editor: XmlEditor,
    parent: etree._Element,
    order: tuple[str, ...],
    values: dict[str, str],
    *,
    after: tuple[str, ...],
) -> None:
    """Set child elements' text, inserting missing ones after their predecessor in `order` (or after the
    first of `after` found, or at the end): the domain schema fixes the order of a server's elements."""
    kids = [e for e in parent if isinstance(e.tag, str)]
    for position, name in enumerate(order):
        element = _child(parent, name)
        if element is not None:
            editor.set_text(element, values[name])
            continue
        anchor = next((e for n in reversed(order[:position]) if (e := _child(parent, n)) is not None), None)
        if anchor is None:
            anchor = next((e for n in after if (e := _child(parent, n)) is not None), None)
        index = kids.index(anchor) + 1 if anchor is not None else len(kids)
        editor.insert_child(parent, index, name, text=values[name])  # same index: kept in call order
