"""What every server-type handler shares: the server and target it serves, file replacement, commands.

A handler is built per deployment target from a `ServerSpec` (the Add Server form) and a `TargetSpec`
(the port and SNI name a certificate is served on). It finds where the application keeps the certificate
by reading the server's configuration through its `Transport`, plans the files to replace (certificate
files, a keystore, a rewritten configuration), and tests and reloads the server with its own commands.

Backups, atomic installs and restores are the same for every kind (a file copied next to the original),
so the deployment journal and `rollback-deployment` work unchanged for all of them.
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography import x509

from certfleet.connectors.base import Backup, CertificateBundle, FileWrite, UndoableChange
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers import commands
from certfleet.connectors.servers.commands import Verb
from certfleet.connectors.servers.transport import Transport, restore_file, snapshot_file
from certfleet.pki.bundle import key_matches_certificate
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.keys import PrivateKey, load_private_key
from certfleet.pki.parse import load_material
from certfleet.servers import paths

KEY_MODE = 0o600
CERT_MODE = 0o644


@dataclass(frozen=True)
class ServerSpec:
    """The Add Server fields a handler needs (no credentials: those belong to the transport)."""

    server_type: str
    app_path: str  # Nginx Path, Apache HTTP Path, Tomcat Path, Jetty Path, JBoss Path, WebLogic Path
    keystore_folder: str | None = None
    service_name: str | None = None
    version: str | None = None
    config_test_command: str | None = None  # a verb of `commands`, or custom text; empty: the type's default
    reload_command: str | None = None  # the same for the reload
    command_timeout: float = 120.0


@dataclass(frozen=True)
class TargetSpec:
    port: int
    server_name: str | None = None  # SNI name the certificate is served for
    cert_path: str | None = None  # explicit paths override what the configuration says (PEM servers)
    key_path: str | None = None
    chain_path: str | None = None


class ServerKindHandler:
    """Base of the per-type handlers: subclasses implement `plan`, `check_installed` and the commands."""

    kind: ClassVar[str] = ""
    service_action: ClassVar[str] = "reload"  # what `systemctl` does to the service after a deploy

    def __init__(self, transport: Transport, server: ServerSpec, target: TargetSpec) -> None:
        if not server.app_path:
            raise PermanentConnectorError(f"{server.server_type} server: set its installation path")
        self.transport = transport
        self.server = server
        self.target = target

    # -- the ServerHandler protocol ------------------------------------------------------------------

    def plan(self, bundle: CertificateBundle) -> list[FileWrite]:
        raise NotImplementedError

    def snapshot(self, path: str, backup_path: str) -> Backup:
        self.refuse_system_path(path)
        return snapshot_file(self.transport, path, backup_path)

    def install(self, write: FileWrite) -> None:
        self.refuse_system_path(write.path)
        self.transport.write_atomic(write.path, write.data, write.mode)

    def verify(self) -> None:
        """What is on the server now must load (certificate and key pair up), then the server's own test."""
        self.check_installed()
        command = self.config_test_command()
        if command:
            self.run_checked("config test", command)

    def activate(self) -> None:
        self.run_checked("reload", self.reload_command())

    def restore(self, backup: Backup) -> None:
        restore_file(self.transport, backup)

    def changes(self, bundle: CertificateBundle) -> list[UndoableChange]:
        return []  # every change of this kind is a file replacement

    def undo(self, action: str, data: dict[str, Any]) -> None:
        raise PermanentConnectorError(f"a {self.kind} server journals no {action!r} step: nothing to undo with it")

    # -- commands: a known verb of the type (built here, every value quoted) or an allowed custom one ---

    def config_test_command(self) -> str | None:
        stored = self.server.config_test_command
        return self.default_config_test() if not stored else self._chosen("config test", stored)

    def reload_command(self) -> str:
        stored = self.server.reload_command
        return self.default_reload() if not stored else self._chosen("reload", stored)

    def chosen_verbs(self) -> tuple[Verb | None, Verb | None]:
        """The config-test and reload verbs in effect (stored or the type's default); None: none or custom."""
        test = self.server.config_test_command
        reload = self.server.reload_command
        return (
            commands.parse_verb(self.kind, "config test", test) if test else self.default_config_test_verb(),
            commands.parse_verb(self.kind, "reload", reload) if reload else self.default_reload_verb(),
        )

    def _chosen(self, what: str, stored: str) -> str:
        verb = commands.parse_verb(self.kind, what, stored)
        if verb is not None:
            return self.build(verb)
        if not commands.custom_commands_allowed():
            known = ", ".join(f"`{c}`" for c in commands.choices(self.kind, what)) or "none besides the default"
            raise self.fail(
                f"the {what} command `{stored}` is a custom command and custom commands are turned off "
                f"({commands.ALLOW_CUSTOM_ENV}); an Admin must choose the type's default or one of: {known}"
            )
        return stored

    def build(self, verb: Verb) -> str:
        """The command line of a verb; subclasses build their own programs' verbs."""
        if verb.name == "systemctl":
            service = self.server.service_name
            if not service or not commands.SERVICE_NAME.fullmatch(service):
                raise self.fail(f"`{verb.text}` needs the Service Name of the server (e.g. nginx)")
            return f"{shlex.quote(verb.program)} {verb.action} {shlex.quote(service)}"
        raise self.fail(f"`{verb.text}` is not a command of a {self.kind} server")

    def default_config_test_verb(self) -> Verb | None:
        """The verb the type's default config test runs, when it is one (for resolving its program)."""
        return None

    def default_reload_verb(self) -> Verb | None:
        return Verb("systemctl", self.service_action) if self.server.service_name else None

    # -- for subclasses ------------------------------------------------------------------------------

    def check_installed(self) -> None:
        raise NotImplementedError

    def default_config_test(self) -> str | None:
        return None

    def default_reload(self) -> str:
        raise NotImplementedError

    def service_command(self, verb: str) -> str | None:
        """`systemctl VERB service` when the form names a service, else None (the type's own command)."""
        if not self.server.service_name:
            return None
        return self.build(Verb("systemctl", verb))

    def where(self) -> str:
        return f"{self.kind} on {self.transport.label}, port {self.target.port}"

    def fail(self, message: str) -> PermanentConnectorError:
        return PermanentConnectorError(f"{self.where()}: {message}")

    def app_file(self, *parts: str) -> str:
        return posixpath.normpath(posixpath.join(self.server.app_path, *parts))

    def refuse_system_path(self, path: str) -> None:
        """Paths also come from the server's own configuration (never validated by certfleet): a file
        there that names /etc/shadow or /proc/... is refused before it is read or written."""
        try:
            paths.refuse_denied(path, self.where())
        except paths.PathRefused as exc:
            raise PermanentConnectorError(str(exc)) from None

    def read_file(self, path: str) -> bytes | None:
        self.refuse_system_path(path)
        return self.transport.read(path)

    def read_required(self, path: str, what: str) -> bytes:
        data = self.read_file(path)
        if data is None:
            raise self.fail(f"{what} {path} does not exist")
        return data

    def list_dir(self, path: str) -> list[str]:
        """Names in a directory, for include globs; empty when it does not exist."""
        lister = getattr(self.transport, "list_dir", None)
        if lister is not None:
            names: list[str] = lister(path)
            return names
        result = self.transport.run(f"ls -1A -- {shlex.quote(path)}", self.server.command_timeout)
        return result.output.split() if result.exit_code == 0 else []

    def is_dir(self, path: str) -> bool:
        stat = getattr(self.transport, "stat", None)
        if stat is not None:
            st = stat(path)
            return bool(st is not None and st.is_dir)
        return self.transport.run(f"test -d {shlex.quote(path)}", self.server.command_timeout).exit_code == 0

    def run_checked(self, what: str, command: str) -> str:
        result = self.transport.run(command, self.server.command_timeout)
        if result.exit_code != 0:
            raise PermanentConnectorError(
                f"{what} `{command}` on {self.transport.label} failed with exit code {result.exit_code}: "
                f"{result.tail() or 'no output'}"
            )
        return result.output


def check_pem_pair(where: str, cert_pem: bytes, key_pem: bytes, *, cert_path: str, key_path: str) -> None:
    """The served certificate file must parse and its key must be the private half of its leaf."""
    try:
        certs = load_material(cert_pem).certificates
    except CertificateFormatError as exc:
        raise PermanentConnectorError(f"{where}: {cert_path} holds no readable certificate: {exc}") from None
    if not certs:
        raise PermanentConnectorError(f"{where}: {cert_path} holds no certificate")
    try:
        key = load_private_key(key_pem)
    except (CertificateFormatError, ValueError, TypeError) as exc:
        raise PermanentConnectorError(f"{where}: {key_path} holds no readable private key: {exc}") from None
    require_key_matches(where, key, certs[0], f"the key in {key_path} does not match the certificate in {cert_path}")


def require_key_matches(where: str, key: PrivateKey, leaf: x509.Certificate, message: str) -> None:
    if not key_matches_certificate(key, leaf):
        raise PermanentConnectorError(f"{where}: {message} ({leaf.subject.rfc4514_string()})")


def bundle_pair(where: str, bundle: CertificateBundle) -> tuple[PrivateKey, list[x509.Certificate]]:
    """The bundle's key and chain, refusing a key that is not the leaf's before anything is written."""
    chain = load_material(bundle.leaf_pem + bundle.chain_pem).certificates
    try:
        key = load_private_key(bundle.key_pem)
    except (CertificateFormatError, ValueError, TypeError) as exc:
        raise PermanentConnectorError(f"{where}: the certificate's private key cannot be read: {exc}") from None
    require_key_matches(where, key, chain[0], "the private key to install does not match the certificate")
    return key, chain


def resolve(base: str, path: str) -> str:
    path = paths.posix_view(path)  # `C:/Apache24/...` in a Windows server's configuration is absolute too
    return posixpath.normpath(path if posixpath.isabs(path) else posixpath.join(base, path))
