"""The config-test and reload commands a server may run: a closed choice of known verbs per server type.

A server's `config_test_command` / `reload_command` is either empty (the type's own default), a *verb*
from the tables below, or free text (a custom command). A verb is `PROGRAM ACTION`: PROGRAM is the bare
program name (`nginx`) or a validated absolute path to it (`/usr/sbin/nginx`, resolved on the server at
check time), ACTION is one of the program's known actions. The handler builds the real command line from
the verb with every value shell-quoted (configuration file, service name), so a verb never carries shell
syntax. Anything else is a custom command: run as written, and only when custom commands are turned on
(`CERTFLEET_ALLOW_CUSTOM_COMMANDS`, off by default), because it runs on every deploy, as root with sudo.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from certfleet.connectors.servers.transport import Transport

ALLOW_CUSTOM_ENV = "CERTFLEET_ALLOW_CUSTOM_COMMANDS"

_SYSTEMD_RELOAD = (("systemctl", "reload"), ("systemctl", "restart"))
_SYSTEMD_RESTART = (("systemctl", "restart"),)

# (program, action) pairs per server type; the type's default (empty) is always allowed too.
CONFIG_TEST_VERBS: dict[str, tuple[tuple[str, str], ...]] = {
    "nginx": (("nginx", "-t"),),
    "apache": (("apachectl", "configtest"), ("apache2ctl", "configtest"), ("apache2", "-t"), ("httpd", "-t")),
    "tomcat": (),
    "jetty": (),
    "jboss": (),
    "weblogic": (),
}
RELOAD_VERBS: dict[str, tuple[tuple[str, str], ...]] = {
    "nginx": (("nginx", "-s reload"), *_SYSTEMD_RELOAD),
    "apache": (
        ("apachectl", "graceful"),
        ("apache2ctl", "graceful"),
        ("apache2", "-k graceful"),
        ("httpd", "-k graceful"),
        *_SYSTEMD_RELOAD,
    ),
    "tomcat": _SYSTEMD_RESTART,
    "jetty": _SYSTEMD_RESTART,
    "jboss": _SYSTEMD_RESTART,
    "weblogic": _SYSTEMD_RESTART,
}
# Programs looked up on the server (`command -v`, then the usual sbin folders) at check time.
RESOLVABLE = frozenset(p for table in (CONFIG_TEST_VERBS, RELOAD_VERBS) for verbs in table.values() for p, _ in verbs)
SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/usr/local/bin", "/bin")

_ABSOLUTE_PROGRAM = re.compile(r"^(/[A-Za-z0-9._+-]+)+$")
SERVICE_NAME = re.compile(r"^[A-Za-z0-9@_:+][A-Za-z0-9@._:+-]{0,119}$")


@dataclass(frozen=True)
class Verb:
    program: str  # "nginx" or "/usr/sbin/nginx"
    action: str  # "-t", "-s reload", "configtest", "reload", ...

    @property
    def name(self) -> str:
        return posixpath.basename(self.program)

    @property
    def text(self) -> str:
        return f"{self.program} {self.action}"

    def resolved(self, path: str) -> Verb:
        return Verb(path, self.action)


# Folders anyone may write to, or a login owns: a program there is no system program.
_USER_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/home", "/root", "/var/www")  # noqa: S108 - refused here


def absolute_program(path: str, name: str) -> bool:
    """An absolute, normalised path of safe characters to `name` in a system `bin` or `sbin` folder."""
    folder = posixpath.dirname(path)
    return (
        bool(_ABSOLUTE_PROGRAM.fullmatch(path))
        and posixpath.normpath(path) == path
        and ".." not in path.split("/")
        and posixpath.basename(path) == name
        and posixpath.basename(folder) in ("bin", "sbin")
        and not any(folder == w or folder.startswith(w + "/") for w in _USER_WRITABLE)
    )


def parse_verb(kind: str, which: str, text: str) -> Verb | None:
    """The verb `text` names for a server of `kind` (`which`: "config test" or "reload"); None = custom."""
    table = CONFIG_TEST_VERBS if which == "config test" else RELOAD_VERBS
    program, _, action = text.partition(" ")
    for name, known in table.get(kind, ()):
        if action == known and (program == name or absolute_program(program, name)):
            return Verb(program, action)
    return None


def is_known(kind: str, which: str, text: str) -> bool:
    return parse_verb(kind, which, text) is not None


def choices(kind: str, which: str) -> list[str]:
    """The verbs a server of `kind` may choose, as written (bare program names)."""
    table = CONFIG_TEST_VERBS if which == "config test" else RELOAD_VERBS
    return [f"{p} {a}" for p, a in table.get(kind, ())]


def custom_commands_allowed() -> bool:
    """The process setting, read afresh when a command is chosen or run (a bot may keep it off on its own)."""
    from certfleet.settings import Settings  # read at call time: the setting is the running process's

    return Settings().allow_custom_commands


# A default names one program where the distribution may ship another (Debian apache2, RHEL httpd).
ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "apache2": ("apache2", "httpd"),
    "httpd": ("httpd", "apache2"),
    "apachectl": ("apachectl", "apache2ctl"),
    "apache2ctl": ("apache2ctl", "apachectl"),
}


def resolve_script(names: tuple[str, ...]) -> str:
    """A shell line printing `name<TAB>absolute path` of the first program found, or nothing.

    `command -v` first (the login's PATH plus the sbin folders the SSH transport adds), then the usual
    folders, so a program outside a non-login user's PATH is still found. Names are from the fixed tables.
    """
    parts = []
    for name in names:
        dirs = " ".join(f"{d}/{name}" for d in SEARCH_DIRS)
        parts.append(
            f'p=$(command -v {name} 2>/dev/null); case "$p" in /*) ;; *) p=""; '
            f'for c in {dirs}; do [ -x "$c" ] && {{ p="$c"; break; }}; done;; esac; '
            f'[ -n "$p" ] && {{ printf "{name}\\t%s\\n" "$p"; exit 0; }}; '
        )
    return "".join(parts) + "exit 0"


def resolve(transport: Transport, verb: Verb, timeout: float = 30.0) -> Verb | None:
    """The verb with its program's absolute path on the server, or None when no such program is there."""
    if verb.program.startswith("/") or verb.name not in RESOLVABLE:
        return verb
    names = ALTERNATIVES.get(verb.name, (verb.name,))
    result = transport.run(resolve_script(names), timeout)
    for line in result.output.splitlines():
        name, _, path = line.partition("\t")
        if name in names and absolute_program(path.strip(), name):
            return Verb(path.strip(), verb.action)
    return None
