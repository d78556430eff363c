"""Apache httpd: the SSLCertificateFile / SSLCertificateKeyFile / SSLCertificateChainFile of the vhost.

The main configuration is found under the Apache HTTP Path (`conf/httpd.conf`, `httpd.conf`,
`apache2.conf`, or the file it names), with every Include/IncludeOptional followed (conf.d, ssl.conf,
sites-enabled, mods-enabled...). Among the `<VirtualHost>`s on the target's port, the one whose
ServerName/ServerAlias matches the SNI name wins, else the first (Apache's default for that address).
Directives missing in the vhost are inherited from the server config.

Files: with a chain file configured, the certificate file gets the leaf and the chain file the
intermediates; without one it gets the full chain (httpd >= 2.4.8). Without an SSLCertificateKeyFile the
key lives in the certificate file, which is then written with the key appended, mode 0600.

Config test: `apachectl -t` for the packaged layout, else `apache2 -f CONF -t` (or `httpd`); reload:
`systemctl reload SERVICE` when a service name is set, else `-k graceful` the same way.
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass
from typing import ClassVar

from certfleet.connectors.base import CertificateBundle, FileWrite
from certfleet.connectors.servers import apache_conf
from certfleet.connectors.servers.apache_conf import ApacheSyntaxError, Directive
from certfleet.connectors.servers.commands import Verb
from certfleet.connectors.servers.server_kinds import (
    CERT_MODE,
    KEY_MODE,
    ServerKindHandler,
    bundle_pair,
    check_pem_pair,
    resolve,
)

MAIN_CANDIDATES = ("conf/httpd.conf", "httpd.conf", "apache2.conf")


@dataclass(frozen=True)
class ApacheSite:
    cert: Directive
    key: Directive | None
    chain: Directive | None
    cert_path: str
    key_path: str | None
    chain_path: str | None


class ApacheHandler(ServerKindHandler):
    kind: ClassVar[str] = "apache"

    def config_file(self) -> str:
        path = self.server.app_path
        if path.endswith(".conf"):
            return path
        for candidate in MAIN_CANDIDATES:
            full = self.app_file(candidate)
            if self.read_file(full) is not None:
                return full
        names = ", ".join(MAIN_CANDIDATES)
        raise self.fail(f"no main configuration ({names}) under {self.server.app_path}; check the Apache HTTP Path")

    def locate(self) -> tuple[ApacheSite, apache_conf.Tree]:
        main = self.config_file()
        root = posixpath.dirname(main) if self.server.app_path.endswith(".conf") else self.server.app_path
        if posixpath.basename(posixpath.dirname(main)) == "conf":
            root = posixpath.dirname(posixpath.dirname(main))  # the classic layout: ServerRoot/conf/httpd.conf
        try:
            tree = apache_conf.load_tree(main, root, self.read_file, self.list_dir, self.is_dir)
        except ApacheSyntaxError as exc:
            raise self.fail(f"cannot read the Apache configuration: {exc}") from None
        vhost = self._vhost(tree)
        cert = self._find(vhost, tree, "SSLCertificateFile")
        if cert is None or not cert.args:
            raise self.fail(
                f"the <VirtualHost> at {vhost.file}:{vhost.line} has no SSLCertificateFile; configure TLS for it first"
            )
        key = self._find(vhost, tree, "SSLCertificateKeyFile")
        chain = self._find(vhost, tree, "SSLCertificateChainFile")

        def path_of(d: Directive | None) -> str | None:
            if d is None or not d.args:
                return None
            value = tree.expand(d.args[0].value)
            if "${" in value:
                raise self.fail(f"{d.name} at {d.file}:{d.line} uses an undefined variable: {value}")
            return resolve(tree.server_root, value)

        cert_path = path_of(cert)
        assert cert_path is not None
        return ApacheSite(cert, key, chain, cert_path, path_of(key), path_of(chain)), tree

    def plan(self, bundle: CertificateBundle) -> list[FileWrite]:
        bundle_pair(self.where(), bundle)  # a key that is not the leaf's is refused before any file is touched
        site, tree = self.locate()
        cert_path = self.target.cert_path or site.cert_path
        key_path = self.target.key_path or site.key_path
        chain_path = self.target.chain_path or site.chain_path
        writes: list[FileWrite] = []
        if key_path == cert_path:
            key_path = None
        if key_path is None:  # key and certificate share one file
            writes.append(FileWrite(cert_path, bundle.fullchain_pem + bundle.key_pem, KEY_MODE))
        elif chain_path:
            writes.append(FileWrite(cert_path, bundle.leaf_pem, CERT_MODE))
        else:
            writes.append(FileWrite(cert_path, bundle.fullchain_pem, CERT_MODE))
        if key_path is not None:
            writes.append(FileWrite(key_path, bundle.key_pem, KEY_MODE))
        if chain_path:
            # httpd refuses an empty chain file; a certificate straight from a root repeats the leaf there.
            writes.append(FileWrite(chain_path, bundle.chain_pem or bundle.leaf_pem, CERT_MODE))
        edits: dict[str, list[tuple[apache_conf.Arg, str]]] = {}
        for directive, current, wanted in (
            (site.cert, site.cert_path, cert_path),
            (site.key, site.key_path, key_path),
            (site.chain, site.chain_path, chain_path),
        ):
            if directive is not None and wanted is not None and wanted != current:
                edits.setdefault(directive.file, []).append((directive.args[0], wanted))
        for path, changes in edits.items():
            writes.append(FileWrite(path, apache_conf.rewrite_args(tree.files[path], changes).encode(), CERT_MODE))
        return writes

    def check_installed(self) -> None:
        site, _ = self.locate()
        cert = self.read_required(site.cert_path, "the certificate file")
        key = self.read_required(site.key_path, "the key file") if site.key_path else cert
        check_pem_pair(self.where(), cert, key, cert_path=site.cert_path, key_path=site.key_path or site.cert_path)

    def _packaged(self) -> bool:
        """apachectl for the packaged layout (it sets the distribution's environment); for a configuration
        of its own, the httpd binary itself (Debian's apache2ctl insists on /var/run/apache2)."""
        return self.config_file() in ("/etc/apache2/apache2.conf", "/etc/httpd/conf/httpd.conf")

    def _httpd(self, args: str) -> str:
        if self._packaged():
            return f"apachectl {args}"
        inner = f'exec "$(command -v apache2 || command -v httpd)" -f {shlex.quote(self.config_file())} {args}'
        return f"sh -c {shlex.quote(inner)}"

    def default_config_test(self) -> str:
        return self._httpd("-t")

    def default_reload(self) -> str:
        return self.service_command("reload") or self._httpd("-k graceful")

    def default_config_test_verb(self) -> Verb:
        return Verb("apachectl", "configtest") if self._packaged() else Verb("apache2", "-t")

    def default_reload_verb(self) -> Verb:
        return super().default_reload_verb() or (
            Verb("apachectl", "graceful") if self._packaged() else Verb("apache2", "-k graceful")
        )

    def build(self, verb: Verb) -> str:
        program = shlex.quote(verb.program)
        if verb.name in ("apachectl", "apache2ctl") and verb.action in ("configtest", "graceful"):
            return f"{program} {verb.action}"
        if verb.name in ("apache2", "httpd") and verb.action in ("-t", "-k graceful"):
            return f"{program} -f {shlex.quote(self.config_file())} {verb.action}"
        return super().build(verb)

    # -- finding the virtual host --------------------------------------------------------------------

    def _vhost(self, tree: apache_conf.Tree) -> Directive:
        port, sni = self.target.port, self.target.server_name
        exact: list[Directive] = []
        wildcard: list[Directive] = []
        seen: set[int] = set()
        for vhost in _walk(tree.directives, "virtualhost"):
            ports = apache_conf.vhost_ports([tree.expand(v) for v in vhost.values])
            seen.update(p for p in ports if p is not None)
            if port in ports:
                exact.append(vhost)
            elif None in ports:
                wildcard.append(vhost)
        candidates = exact or wildcard
        if not candidates:
            found = ", ".join(str(p) for p in sorted(seen)) or "none"
            raise self.fail(f"no <VirtualHost> for port {port} in the Apache configuration (ports: {found})")
        if sni:
            for vhost in candidates:
                names = [v for d in vhost.children("ServerName") for v in d.values]
                names += [v for d in vhost.children("ServerAlias") for v in d.values]
                if any(apache_conf.name_matches(n, sni) for n in names):
                    return vhost
        return candidates[0]

    def _find(self, vhost: Directive, tree: apache_conf.Tree, name: str) -> Directive | None:
        inside = [d for d in _walk(vhost.block or [], name.lower())]
        if inside:
            return inside[-1]  # the last one wins, as in httpd
        top = [d for d in tree.directives if d.key == name.lower()]
        top += [d for d in _walk([d for d in tree.directives if d.key == "ifmodule"], name.lower())]
        return top[-1] if top else None


def _walk(directives: list[Directive], key: str) -> list[Directive]:
    """Every directive named `key`, looking into <IfModule>, <IfDefine>, <IfVersion> and similar sections."""
    found: list[Directive] = []
    for d in directives:
        if d.key == key:
            found.append(d)
        elif d.block is not None and d.key in ("ifmodule", "ifdefine", "ifversion", "ifdirective", "iffile", "macro"):
            found.extend(_walk(d.block, key))
    return found
