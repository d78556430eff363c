"""Jetty: a PKCS#12 keystore and the `jetty.sslContext.*` settings of the Jetty base's start ini files.

The Jetty Path is the Jetty base (the directory with `start.d/` or `start.ini`). The ssl module's
properties are read from `start.d/*.ini` then `start.ini` (a later file wins, as start.jar reads them):
`jetty.ssl.port` (default 8443) must be the target's port; `jetty.sslContext.keyStorePath` (relative to
the base) is where the keystore is written, or `<Key Store Folder or base/etc>/<common name>.p12` when
unset; `jetty.sslContext.keyStorePassword` (plain or Jetty `OBF:`) is kept, else a random one is made.

The ini file holding the settings (else the one enabling `--module=ssl`, else `start.d/ssl.ini`) is
rewritten line by line: only the `key=value` lines certfleet sets change (a commented-out default is
replaced in place), every other line and comment stays.

Config test: the keystore opens with the configured password and its key matches its certificate.
Restart: `systemctl restart SERVICE`, or the server's restart command.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import ClassVar

from certfleet.connectors.base import CertificateBundle, FileWrite
from certfleet.connectors.servers import keystores
from certfleet.connectors.servers.server_kinds import KEY_MODE, ServerKindHandler, bundle_pair

CONFIG_MODE = 0o640  # the ini holds the keystore password
DEFAULT_SSL_PORT = 8443
PORT = "jetty.ssl.port"
PATH = "jetty.sslContext.keyStorePath"
PASSWORD = "jetty.sslContext.keyStorePassword"  # noqa: S105 - a property name
TYPE = "jetty.sslContext.keyStoreType"
KEY_PASSWORD = "jetty.sslContext.keyManagerPassword"  # noqa: S105 - a property name
_LINE = re.compile(r"^(?P<lead>\s*)(?P<comment>#\s*)?(?P<key>[A-Za-z][A-Za-z0-9_.\-]*)\s*=\s*(?P<value>.*?)\s*$")


def deobfuscate(value: str) -> str:
    """Jetty's `OBF:` encoding (org.eclipse.jetty.util.security.Password) is reversible by design."""
    if not value.startswith("OBF:"):
        return value
    s, out, i = value[4:], bytearray(), 0
    while i < len(s):
        if s[i] == "U":
            i += 1
            out.append((int(s[i : i + 4], 36) >> 8) & 0xFF)
        else:
            i0 = int(s[i : i + 4], 36)
            out.append(((i0 // 256 + i0 % 256 - 254) // 2) & 0xFF)
        i += 4
    return out.decode("utf-8")


@dataclass
class IniFile:
    path: str
    text: str
    values: dict[str, str] = field(default_factory=dict)
    enables_ssl: bool = False

    @classmethod
    def parse(cls, path: str, text: str) -> IniFile:
        ini = cls(path, text)
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("--module=") and "ssl" in stripped[9:].split(","):
                ini.enables_ssl = True
            m = _LINE.match(line)
            if m and not m.group("comment"):
                ini.values[m.group("key")] = m.group("value")
        return ini

    def with_values(self, values: dict[str, str]) -> str:
        """The text with `key=value` set for each key: active lines replaced, else a commented default
        uncommented in place, else appended."""
        lines = self.text.splitlines(keepends=True)
        pending = dict(values)
        for pass_commented in (False, True):
            for n, line in enumerate(lines):
                m = _LINE.match(line.rstrip("\r\n"))
                if not m or bool(m.group("comment")) != pass_commented or m.group("key") not in pending:
                    continue
                ending = line[len(line.rstrip("\r\n")) :] or "\n"
                lines[n] = f"{m.group('lead')}{m.group('key')}={pending.pop(m.group('key'))}{ending}"
        text = "".join(lines)
        if pending:
            if text and not text.endswith("\n"):
                text += "\n"
            text += "".join(f"{k}={v}\n" for k, v in pending.items())
        return text


class JettyHandler(ServerKindHandler):
    kind: ClassVar[str] = "jetty"
    service_action: ClassVar[str] = "restart"

    def ini_files(self) -> list[IniFile]:
        start_d = self.app_file("start.d")
        names = sorted(n for n in self.list_dir(start_d) if n.endswith(".ini"))
        files = []
        for path in [posixpath.join(start_d, n) for n in names] + [self.app_file("start.ini")]:
            data = self.read_file(path)
            if data is not None:
                files.append(IniFile.parse(path, data.decode("utf-8", "replace")))
        if not files:
            raise self.fail(f"no start.d/*.ini or start.ini under {self.server.app_path}; check the Jetty Path")
        return files

    def settings(self) -> tuple[dict[str, str], IniFile | None, list[IniFile]]:
        files = self.ini_files()
        merged: dict[str, str] = {}
        for ini in files:
            merged.update(ini.values)
        owner = next((f for f in reversed(files) if PATH in f.values or PASSWORD in f.values), None)
        owner = owner or next((f for f in files if f.enables_ssl), None)
        port = int(merged.get(PORT, DEFAULT_SSL_PORT))
        if port != self.target.port:
            raise self.fail(
                f"the Jetty base at {self.server.app_path} serves TLS on port {port}, not {self.target.port}"
            )
        return merged, owner, files

    def plan(self, bundle: CertificateBundle) -> list[FileWrite]:
        bundle_pair(self.where(), bundle)
        merged, owner, _ = self.settings()
        configured = merged.get(PATH)
        path = (
            keystores.relative_to(self.server.app_path, configured)
            if configured and "$" not in configured
            else keystores.relative_to(
                self.server.keystore_folder or self.app_file("etc"),
                keystores.keystore_file_name(self.target.server_name or "certfleet"),
            )
        )
        password = deobfuscate(merged[PASSWORD]) if merged.get(PASSWORD) else keystores.new_password()
        writes = [FileWrite(path, keystores.build_pkcs12(self.where(), bundle, password, "jetty"), KEY_MODE)]
        stored = merged.get(PASSWORD) or password
        same_path = configured and keystores.relative_to(self.server.app_path, configured) == path
        wanted = {
            PATH: configured if same_path and configured else path,
            PASSWORD: stored,
            TYPE: keystores.PKCS12,
            # A PKCS#12 key has the store's password; Jetty 9's default key password ("keypwd") would fail.
            KEY_PASSWORD: stored,
        }
        if any(merged.get(k) != v for k, v in wanted.items()):
            ini = owner or IniFile.parse(self.app_file("start.d", "ssl.ini"), "--module=ssl\n")
            writes.append(FileWrite(ini.path, ini.with_values(wanted).encode(), CONFIG_MODE))
        return writes

    def check_installed(self) -> None:
        merged, _, _ = self.settings()
        configured = merged.get(PATH)
        if not configured:
            raise self.fail(f"no {PATH} is set in the Jetty base {self.server.app_path}")
        path = keystores.relative_to(self.server.app_path, configured)
        data = self.read_required(path, "the keystore")
        password = deobfuscate(merged.get(PASSWORD, ""))
        keystores.check_keystore(self.where(), path, data, password, merged.get(TYPE))

    def default_reload(self) -> str:
        command = self.service_command("restart")
        if command is None:
            raise self.fail("Jetty has no reload of its own: set the service name or a restart command")
        return command
