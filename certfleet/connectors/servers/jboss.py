"""JBoss EAP / WildFly: a PKCS#12 keystore and the Elytron TLS settings of `standalone.xml`.

The JBoss Path is the installation (`standalone/configuration/standalone.xml` under it), a configuration
directory, or the XML file itself. The chain followed, as the server does:

    socket-binding (port, `${prop:default}` and the group's port-offset resolved) = the target's port
    -> undertow `<https-listener socket-binding=...>`
    -> `ssl-context` -> Elytron `<server-ssl-context key-manager=...>` -> `<key-manager key-store=...>`
    -> `<key-store>`: `<file path relative-to>`, `<credential-reference clear-text>`, `<implementation type>`

or, on older servers, `security-realm` -> `<server-identities><ssl><keystore path keystore-password>`.

The keystore is written where the key-store's file points (its clear-text password kept, else a random
one), as PKCS#12; the key-manager's and key-store's credentials, the implementation type and a
`generate-self-signed-certificate-host` (which would hide a missing keystore) are set in the XML, which
keeps its comments, namespaces and layout. A credential-store reference cannot be read remotely: set a
clear-text one for certfleet to manage, or deploy by hand.

Config test: the keystore opens with the configured password and its key matches its certificate.
Restart: `systemctl restart SERVICE`, else `bin/jboss-cli.sh --connect --command=:reload`.
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
from certfleet.connectors.servers.server_kinds import KEY_MODE, ServerKindHandler, bundle_pair
from certfleet.connectors.servers.xml_edit import XmlEditor

CONFIG_MODE = 0o640
_EXPR = re.compile(r"\$\{([^}:]+)(?::([^}]*))?\}")


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _all(root: etree._Element, name: str) -> list[etree._Element]:
    return [e for e in root.iter() if _local(e.tag) == name]


def _child(parent: etree._Element, name: str) -> etree._Element | None:
    return next((e for e in parent if _local(e.tag) == name), None)


def alias_of_filter(alias_filter: str, default: str = "server") -> str | None:
    """The alias an Elytron key-manager's `alias-filter` lets through: its first named alias, or `default` when
    the filter is ALL with exclusions that spare it; None when it lets nothing through that certfleet can write.
    ("ALL:-a,-b", "NONE:+a", "a,b" and "a" are the filter's forms.)"""
    spec = alias_filter.strip()
    allow_all = spec.upper().startswith("ALL")
    if allow_all or spec.upper().startswith("NONE"):
        spec = spec[3 if allow_all else 4 :].lstrip(":")
    items = [item.strip() for item in spec.split(",") if item.strip()]
    named = [item.lstrip("+") for item in items if not item.startswith("-")]
    if named:
        return named[0]
    excluded = {item[1:].lower() for item in items if item.startswith("-")}
    return default if allow_all and default not in excluded else None


def resolve_expression(value: str) -> str:
    """`${jboss.https.port:8443}` -> its default, as a server without that system property reads it."""
    return _EXPR.sub(lambda m: m.group(2) if m.group(2) is not None else m.group(0), value)


@dataclass
class JBossSite:
    editor: XmlEditor
    store_element: etree._Element  # <key-store> (Elytron) or <keystore> (legacy realm)
    key_manager: etree._Element | None
    path: str
    password: str | None
    store_type: str | None
    legacy: bool


class JBossHandler(ServerKindHandler):
    kind: ClassVar[str] = "jboss"
    service_action: ClassVar[str] = "restart"

    @property
    def config_xml(self) -> str:
        path = self.server.app_path
        if path.endswith(".xml"):
            return path
        if posixpath.basename(path.rstrip("/")) == "configuration":
            return self.app_file("standalone.xml")
        return self.app_file("standalone", "configuration", "standalone.xml")

    def _dirs(self) -> dict[str, str]:
        config_dir = posixpath.dirname(self.config_xml)
        base = posixpath.dirname(config_dir)
        return {
            "jboss.server.config.dir": config_dir,
            "jboss.server.base.dir": base,
            "jboss.server.data.dir": posixpath.join(base, "data"),
            "jboss.home.dir": posixpath.dirname(base),
        }

    def locate(self) -> JBossSite:
        raw = self.read_required(self.config_xml, "the JBoss configuration")
        editor = XmlEditor(self.where(), self.config_xml, raw)
        listener = self._https_listener(editor.root)
        if listener.get("ssl-context"):
            return self._elytron(editor, listener.get("ssl-context") or "")
        if listener.get("security-realm"):
            return self._legacy(editor, listener.get("security-realm") or "")
        raise self.fail(f"the https-listener {listener.get('name')!r} names no ssl-context or security-realm")

    def plan(self, bundle: CertificateBundle) -> list[FileWrite]:
        bundle_pair(self.where(), bundle)
        site = self.locate()
        password = site.password or keystores.new_password()
        alias = self._alias(site)
        writes = [FileWrite(site.path, keystores.build_pkcs12(self.where(), bundle, password, alias), KEY_MODE)]
        editor = site.editor
        if site.legacy:
            editor.set_attributes(
                site.store_element,
                {
                    "keystore-password": password,
                    "key-password": password if site.store_element.get("key-password") else None,
                    "provider": keystores.PKCS12 if site.store_element.get("provider") else None,
                    "generate-self-signed-certificate-host": None,
                },
            )
        else:
            self._set_credential(editor, site.store_element, password)
            implementation = _child(site.store_element, "implementation")
            if implementation is None:  # the schema's order: credential-reference, implementation, file
                kids = [e for e in site.store_element if isinstance(e.tag, str)]
                file = _child(site.store_element, "file")
                index = kids.index(file) if file is not None else len(kids)
                editor.insert_child(site.store_element, index, "implementation", {"type": keystores.PKCS12})
            else:
                editor.set_attributes(implementation, {"type": keystores.PKCS12})
            if site.key_manager is not None:
                self._set_credential(editor, site.key_manager, password)
                editor.set_attributes(site.key_manager, {"generate-self-signed-certificate-host": None})
        if editor.changed:
            writes.append(FileWrite(self.config_xml, editor.result(), CONFIG_MODE))
        return writes

    def check_installed(self) -> None:
        site = self.locate()
        data = self.read_required(site.path, "the keystore")
        found = keystores.check_keystore(self.where(), site.path, data, site.password or "", site.store_type)
        wanted = self._alias(site)
        if (found.alias or "").lower() != wanted.lower():  # what the server will look for, not just any key
            raise self.fail(
                f"the keystore {site.path} holds its key under alias {found.alias!r}, but the server looks for "
                f"{wanted!r}: it would find no key"
            )

    def _alias(self, site: JBossSite) -> str:
        """The alias the server looks for: the legacy realm's `alias`, the key-manager's `alias-filter`."""
        if site.legacy:
            return site.store_element.get("alias") or "server"
        alias_filter = site.key_manager.get("alias-filter") if site.key_manager is not None else None
        if not alias_filter:
            return "server"
        alias = alias_of_filter(alias_filter)
        if alias is None:
            raise self.fail(
                f"the key-manager's alias-filter {alias_filter!r} lets no alias through that certfleet could "
                'write: name the certificate\'s alias in it (for example alias-filter="server")'
            )
        return alias

    def default_reload(self) -> str:
        cli = shlex.quote(posixpath.join(self._dirs()["jboss.home.dir"], "bin", "jboss-cli.sh"))
        return self.service_command("restart") or f"{cli} --connect --command=:reload"

    # -- following the configuration -----------------------------------------------------------------

    def _https_listener(self, root: etree._Element) -> etree._Element:
        bindings: dict[str, int] = {}
        for group in _all(root, "socket-binding-group"):
            offset = int(resolve_expression(group.get("port-offset", "0")) or 0)
            for binding in (e for e in group if _local(e.tag) == "socket-binding"):
                port = resolve_expression(binding.get("port", ""))
                if port.isdigit():
                    bindings[binding.get("name", "")] = int(port) + offset
        names = {name for name, port in bindings.items() if port == self.target.port}
        listeners = _all(root, "https-listener")
        for listener in listeners:
            if listener.get("socket-binding") in names:
                return listener
        seen = (
            ", ".join(
                f"{listener.get('socket-binding')}={bindings.get(listener.get('socket-binding') or '', '?')}"
                for listener in listeners
            )
            or "none"
        )
        raise self.fail(
            f"no https-listener in {self.config_xml} is bound to port {self.target.port} (listeners: {seen})"
        )

    def _elytron(self, editor: XmlEditor, context_name: str) -> JBossSite:
        root = editor.root
        context = _named(root, "server-ssl-context", context_name)
        if context is None:
            raise self.fail(f"no server-ssl-context named {context_name!r} in {self.config_xml}")
        manager = _named(root, "key-manager", context.get("key-manager", ""))
        if manager is None:
            raise self.fail(f"the server-ssl-context {context_name!r} names no existing key-manager")
        store = _named(root, "key-store", manager.get("key-store", ""))
        if store is None:
            raise self.fail(f"the key-manager {manager.get('name')!r} names no existing key-store")
        file = _child(store, "file")
        if file is None or not file.get("path"):
            raise self.fail(f"the key-store {store.get('name')!r} has no <file path=...>: it is not file based")
        credential = _child(store, "credential-reference")
        if credential is not None and credential.get("store"):
            raise self.fail(
                f"the key-store {store.get('name')!r} takes its password from credential store "
                f"{credential.get('store')!r}; give it a clear-text credential-reference for certfleet to manage"
            )
        implementation = _child(store, "implementation")
        return JBossSite(
            editor,
            store,
            manager,
            self._path(file.get("path") or "", file.get("relative-to")),
            credential.get("clear-text") if credential is not None else None,
            implementation.get("type") if implementation is not None else None,
            legacy=False,
        )

    def _legacy(self, editor: XmlEditor, realm_name: str) -> JBossSite:
        realm = _named(editor.root, "security-realm", realm_name)
        ssl = next((e for e in _all(realm, "ssl")), None) if realm is not None else None
        keystore = _child(ssl, "keystore") if ssl is not None else None
        if keystore is None or not keystore.get("path"):
            raise self.fail(f"the security-realm {realm_name!r} has no <server-identities><ssl><keystore path=...>")
        return JBossSite(
            editor,
            keystore,
            None,
            self._path(keystore.get("path") or "", keystore.get("relative-to")),
            keystore.get("keystore-password"),
            keystore.get("provider"),
            legacy=True,
        )

    def _path(self, path: str, relative_to: str | None) -> str:
        path = resolve_expression(path)
        if relative_to:
            base = self._dirs().get(relative_to)
            if base is None:
                raise self.fail(f"keystore path is relative to {relative_to!r}, which certfleet cannot resolve")
            return keystores.relative_to(base, path)
        return keystores.relative_to(self._dirs()["jboss.server.config.dir"], path)

    def _set_credential(self, editor: XmlEditor, element: etree._Element, password: str) -> None:
        credential = _child(element, "credential-reference")
        if credential is None:
            editor.insert_child(element, 0, "credential-reference", {"clear-text": password})
        else:
            editor.set_attributes(credential, {"clear-text": password})


def _named(root: etree._Element, name: str, value: str) -> etree._Element | None:
    return next((e for e in _all(root, name) if e.get("name") == value), None)
