"""nginx: find the `ssl_certificate`/`ssl_certificate_key` of the server block on the target's port.

The configuration is read from the Nginx Path (`nginx.conf` in it, or the file it names), following
`include`s. Among the `server` blocks (in `http` and `stream`) listening on the port, the one whose
`server_name` matches the target's SNI name wins, then the `default_server`, then the first, as nginx
itself picks. Directives missing in the block are inherited from `http`/`stream`. The certificate file
gets the full chain (leaf first), the key file the key with mode 0600.

When the target names explicit certificate/key paths that differ from the configuration, the directive
is rewritten in its own file (only that token changes) and that file is replaced too, with a backup.

Config test: `nginx -t -c CONF`; reload: `systemctl reload SERVICE` when a service name is set, else
`nginx -s reload -c CONF` (nginx finds the running master through the `pid` of that configuration).
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass
from typing import ClassVar

from certfleet.connectors.base import CertificateBundle, FileWrite
from certfleet.connectors.servers import nginx_conf
from certfleet.connectors.servers.commands import Verb
from certfleet.connectors.servers.nginx_conf import Directive, NginxSyntaxError
from certfleet.connectors.servers.server_kinds import (
    CERT_MODE,
    KEY_MODE,
    ServerKindHandler,
    bundle_pair,
    check_pem_pair,
    resolve,
)


@dataclass(frozen=True)
class NginxSite:
    """What the configuration says about the server block serving the target."""

    config_file: str
    block_file: str
    block_line: int
    cert_path: str
    key_path: str
    cert_directive: Directive
    key_directive: Directive


class NginxHandler(ServerKindHandler):
    kind: ClassVar[str] = "nginx"

    @property
    def config_file(self) -> str:
        path = self.server.app_path
        return path if path.endswith(".conf") else self.app_file("nginx.conf")

    def locate(self) -> tuple[NginxSite, nginx_conf.Tree]:
        try:
            tree = nginx_conf.load_tree(self.config_file, self.read_file, self.list_dir)
        except NginxSyntaxError as exc:
            raise self.fail(f"cannot read the nginx configuration: {exc}") from None
        prefix = posixpath.dirname(self.config_file)
        block, inherited = self._server_block(tree.directives)
        cert = block.first("ssl_certificate") or inherited.get("ssl_certificate")
        key = block.first("ssl_certificate_key") or inherited.get("ssl_certificate_key")
        if cert is None or key is None or not cert.args or not key.args:
            raise self.fail(
                f"the server block at {block.file}:{block.line} has no ssl_certificate and ssl_certificate_key; "
                "configure TLS for it first"
            )
        for d in (cert, key):
            if "$" in d.args[0].value:
                raise self.fail(
                    f"{d.name} at {d.file}:{d.line} uses variables ({d.args[0].value}); set the certificate "
                    "and key paths on the deployment target"
                )
        site = NginxSite(
            self.config_file,
            block.file,
            block.line,
            resolve(prefix, cert.args[0].value),
            resolve(prefix, key.args[0].value),
            cert,
            key,
        )
        return site, tree

    def plan(self, bundle: CertificateBundle) -> list[FileWrite]:
        bundle_pair(self.where(), bundle)  # a key that is not the leaf's is refused before any file is touched
        site, tree = self.locate()
        cert_path = self.target.cert_path or site.cert_path
        key_path = self.target.key_path or site.key_path
        if cert_path == key_path:  # one PEM file holds both: the chain, then the key, kept private
            writes = [FileWrite(cert_path, bundle.fullchain_pem + bundle.key_pem, KEY_MODE)]
        else:
            writes = [
                FileWrite(cert_path, bundle.fullchain_pem, CERT_MODE),
                FileWrite(key_path, bundle.key_pem, KEY_MODE),
            ]
        # Paths given on the target win: point the directives at them, in the file that holds them.
        edits: dict[str, list[tuple[nginx_conf.Arg, str]]] = {}
        for directive, current, wanted in (
            (site.cert_directive, site.cert_path, cert_path),
            (site.key_directive, site.key_path, key_path),
        ):
            if wanted != current:
                edits.setdefault(directive.file, []).append((directive.args[0], wanted))
        for path, changes in edits.items():
            text = nginx_conf.rewrite_args(tree.files[path], changes)
            writes.append(FileWrite(path, text.encode(), CERT_MODE))
        return writes

    def check_installed(self) -> None:
        site, _ = self.locate()
        cert = self.read_required(site.cert_path, "the certificate file")
        key = self.read_required(site.key_path, "the key file")
        check_pem_pair(self.where(), cert, key, cert_path=site.cert_path, key_path=site.key_path)

    def default_config_test(self) -> str:
        return self.build(Verb("nginx", "-t"))

    def default_reload(self) -> str:
        return self.build(self.default_reload_verb())

    def default_config_test_verb(self) -> Verb:
        return Verb("nginx", "-t")

    def default_reload_verb(self) -> Verb:
        return super().default_reload_verb() or Verb("nginx", "-s reload")

    def build(self, verb: Verb) -> str:
        conf = shlex.quote(self.config_file)
        if verb.name == "nginx" and verb.action == "-t":
            return f"{shlex.quote(verb.program)} -t -q -c {conf}"
        if verb.name == "nginx" and verb.action == "-s reload":
            return f"{shlex.quote(verb.program)} -s reload -c {conf}"
        return super().build(verb)

    # -- finding the server block --------------------------------------------------------------------

    def _server_block(self, top: list[Directive]) -> tuple[Directive, dict[str, Directive]]:
        port, sni = self.target.port, self.target.server_name
        candidates: list[tuple[Directive, dict[str, Directive], bool]] = []
        seen_ports: set[int] = set()
        for context in (d for d in top if d.name in ("http", "stream") and d.block is not None):
            inherited = {n: d for n in ("ssl_certificate", "ssl_certificate_key") if (d := context.first(n))}
            for server in context.children("server"):
                for listen in server.children("listen"):
                    p = nginx_conf.listen_port(listen.values[0]) if listen.args else None
                    if p is not None:
                        seen_ports.add(p)
                    if p == port:
                        candidates.append((server, inherited, "default_server" in listen.values[1:]))
                        break
        if not candidates:
            ports = ", ".join(str(p) for p in sorted(seen_ports)) or "none"
            raise self.fail(f"no server block in {self.config_file} listens on port {port} (ports: {ports})")
        if sni:
            for server, inherited, _ in candidates:
                names = [v for d in server.children("server_name") for v in d.values]
                if any(nginx_conf.name_matches(n, sni) for n in names):
                    return server, inherited
        for server, inherited, default in candidates:
            if default:
                return server, inherited
        return candidates[0][0], candidates[0][1]
