"""The one rule for file and folder paths on a managed server (targets, server paths, key store folders,
file discovery, and the paths a server's own configuration names).

A path is stored exactly as given or refused, never rewritten: it must be absolute, already normal (no
`.` or `..` part, no `//`), free of NUL and control characters, and outside the system locations certfleet
never reads or writes (`DENIED`). A server may further limit where it is written (`require_within`): its
roots are its type's path, its key store folder and an optional extra list set on the server.

Pure functions over strings: the services, the API and the server handlers (at deploy time) share them.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from collections.abc import Iterable

# Credentials, code that runs as root, kernel/device interfaces: never a certificate's place.
DENIED: tuple[str, ...] = (
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/passwd",
    "/etc/group",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/pam.d",
    "/etc/security",
    "/etc/crontab",
    "/etc/cron.d",
    "/etc/cron.hourly",
    "/etc/cron.daily",
    "/etc/cron.weekly",
    "/etc/cron.monthly",
    "/etc/ld.so.preload",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/systemd",
    "/etc/init.d",
    "/etc/profile",
    "/etc/profile.d",
    "/etc/environment",
    "/root/.ssh",
    "/var/spool/cron",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib64",
)
_WINDOWS_DENIED = ("c:\\windows",)
_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:\\")


class PathRefused(ValueError):
    """A path breaks a rule; `rule` is the rule's short name, the message says what to fix."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(f"{message} (rule: {rule})")
        self.rule = rule


def _control(value: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value)


def check_path(value: str, label: str, *, directory: bool = False, windows: bool = False) -> str:
    """`value` unchanged when it follows the rule, else PathRefused naming the rule broken.

    `directory`: a folder, which may end with one `/`. `windows`: a server reached over SMB, whose paths
    follow `windows_path_problem` (drive or UNC paths only).
    """
    if not value:
        raise PathRefused(f"{label} is empty: give an absolute path", "absolute")
    if "\0" in value or _control(value):
        raise PathRefused(f"{label} {value!r} contains a control character (NUL, newline, tab...)", "control")
    if windows:  # a server reached over SMB: Windows paths only
        return _check_windows(value, label, directory)
    if not value.startswith("/"):
        example = "/etc/nginx" if directory else "/etc/nginx/certs/site.pem"
        raise PathRefused(f"{label} {value!r} must be an absolute path on the server, such as {example}", "absolute")
    body = value[:-1] if directory and len(value) > 1 and value.endswith("/") else value
    parts = body.split("/")[1:]
    if any(p in (".", "..") for p in parts):
        raise PathRefused(
            f"{label} {value!r} contains a `.` or `..` part; write the path without them "
            f"(certfleet stores a path exactly as given, never resolved)",
            "dot-segment",
        )
    if any(p == "" for p in parts) and body != "/":
        raise PathRefused(f"{label} {value!r} contains an empty part (`//` or a trailing `/`)", "normal")
    denied = denied_by(body)
    if denied is not None:
        what = "is" if body.rstrip("/") == denied or denied == "/" else "is inside"
        raise PathRefused(
            f"{label} {value!r} {what} {denied}, a system location certfleet never reads or writes",
            "system-location",
        )
    return value


# Names Windows keeps for devices in every folder, with or without an extension ("NUL.txt" is NUL too).
WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"COM{n}" for n in range(1, 10)] + [f"LPT{n}" for n in range(1, 10)]
)
_WINDOWS_FORBIDDEN = '<>:"|?*'
_UNC_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_SHARE = re.compile(r"^[^\\/<>:\"|?*\[\];=+,]{1,80}$")


def is_share_name(value: str) -> bool:
    """An SMB share name (`Certificates`, `D$`): 1-80 characters, none of \\ / < > : " | ? * [ ] ; = + ,"""
    return bool(_SHARE.fullmatch(value))


def is_windows_path(value: str) -> bool:
    """`C:\\...` (a drive) or `\\\\host\\share\\...` (UNC)."""
    return bool(_WINDOWS_ABSOLUTE.match(value)) or value.startswith("\\\\")


def windows_path_problem(value: str, *, directory: bool = False) -> tuple[str, str] | None:
    """(message, rule) when `value` is not a plain absolute Windows path, else None.

    A drive path `C:\\Apache24\\conf` or a UNC path `\\\\host\\share\\folder`; backslashes only; no `.` or `..`
    part, no empty part (one trailing backslash on a folder is fine), none of <>:"|?*, no part ending in a
    space or a dot (Windows drops them, so the path would name another file), no reserved device name
    (CON, PRN, AUX, NUL, COM1-9, LPT1-9, with or without an extension), nothing inside C:\\Windows.
    """
    if not value:
        return "is empty: give an absolute Windows path such as C:\\Apache24", "absolute"
    if "\0" in value or _control(value):
        return "contains a control character (NUL, newline, tab...)", "control"
    if not is_windows_path(value):
        return "must be an absolute Windows path, such as C:\\Apache24 or \\\\fileserver\\certs", "absolute"
    if "/" in value:
        return "contains `/`: write a Windows path with backslashes, such as C:\\Apache24\\conf", "windows-separator"
    if _WINDOWS_ABSOLUTE.match(value):
        body = value[3:]
    else:
        host, _, rest = value[2:].partition("\\")
        share, _, body = rest.partition("\\")
        if not _UNC_HOST.fullmatch(host):
            return f"names the host {host!r}, which is not a host name or IPv4 address (\\\\host\\share\\...)", "unc"
        if not _SHARE.fullmatch(share):
            return "has no valid share name after the host (\\\\host\\share\\...)", "unc"
    if directory and body.endswith("\\"):
        body = body[:-1]
    parts = body.split("\\") if body else []
    for part in parts:
        if part in (".", ".."):
            return "contains a `.` or `..` part; write the path without them", "dot-segment"
        if part == "":
            return "contains an empty part (`\\\\` inside, or a trailing `\\` on a file)", "normal"
        bad = next((ch for ch in part if ch in _WINDOWS_FORBIDDEN), None)
        if bad is not None:
            return f"contains {bad!r}, which Windows does not allow in a file name", "windows-character"
        if part.endswith((" ", ".")):
            return f"has a part ending in a space or a dot ({part!r}); Windows drops them", "windows-name"
        if part.split(".")[0].rstrip(" ").upper() in WINDOWS_RESERVED:
            return f"names the reserved device {part.split('.')[0]!r}, not a file", "windows-reserved"
    lowered = value.lower().rstrip("\\")
    for denied in _WINDOWS_DENIED:
        if lowered == denied or lowered.startswith(denied + "\\"):
            return "is inside C:\\Windows, a system location certfleet never reads or writes", "system-location"
    return None


def _check_windows(value: str, label: str, directory: bool = False) -> str:
    found = windows_path_problem(value, directory=directory)
    if found is not None:
        message, rule = found
        raise PathRefused(f"{label} {value!r} {message}", rule)
    return value


_DRIVE_PATH = re.compile(r"^[A-Za-z]:[\\/]")


def posix_view(path: str) -> str:
    """A Windows drive path as the server handlers see it: `C:\\Apache24` or `C:/Apache24` -> `/C:/Apache24`
    (POSIX-absolute, so configuration logic joins and resolves it like a Linux path). Others unchanged."""
    if not _DRIVE_PATH.match(path):
        return path
    view = "/" + path.replace("\\", "/")
    return view if len(view) <= 4 else view.rstrip("/")


def denied_by(path: str) -> str | None:
    """The denied location `path` is (or lies inside), or None; `/` itself counts as the whole system."""
    plain = path.rstrip("/") or "/"
    if plain == "/":
        return "/"
    for denied in DENIED:
        if plain == denied or plain.startswith(denied + "/"):
            return denied
    return None


def refuse_denied(path: str, where: str) -> None:
    """For paths read from a server's own configuration at deploy/check time (they were never validated)."""
    normal = posixpath.normpath(path) if path.startswith("/") else path
    denied = denied_by(normal) if normal.startswith("/") else None
    if denied is not None or "\0" in path:
        raise PathRefused(
            f"{where}: {path} is {'inside ' + denied if denied and denied != '/' else 'a system location'}, "
            "which certfleet never reads or writes; point the configuration at the certificate's own files",
            "system-location",
        )


def within(path: str, roots: Iterable[str]) -> bool:
    plain = path.rstrip("/") or "/"
    for root in roots:
        base = root.rstrip("/") or "/"
        if base == "/" or plain == base or plain.startswith(base + "/"):
            return True
    return False


def require_within(path: str, roots: list[str], label: str) -> None:
    """Refuse a path outside the server's roots (its type path, key store folder and allowed paths)."""
    if roots and not within(path, roots):
        raise PathRefused(
            f"{label} {path!r} is outside the folders this server allows ({', '.join(roots)}); "
            "add its folder to the server's Allowed paths, or choose a path under them",
            "allowed-roots",
        )


def server_roots(app_path: str | None, keystore_folder: str | None, allowed: Iterable[str] | None) -> list[str]:
    """A server's roots: its type path (the folder of a named .conf/.xml file), key store folder, extra list."""
    roots: list[str] = []
    if app_path:
        roots.append(posixpath.dirname(app_path) if app_path.endswith((".conf", ".xml")) else app_path)
    if keystore_folder:
        roots.append(keystore_folder)
    roots.extend(allowed or [])
    return list(dict.fromkeys(r for r in roots if r))
