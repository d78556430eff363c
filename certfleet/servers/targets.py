"""What a deployment target may name on its server: file paths inside the server's roots, a DNS server name.

The inventory's Configure action and the dashboard's Add target both ask `target_problems`, so a target is
accepted or refused the same way wherever it is made. Every problem names its field and the rule broken.
"""

from __future__ import annotations

from certfleet.models.orm import Server, ServerConnection
from certfleet.servers import paths
from certfleet.servers.dns_names import NameRefused, check_server_name

TARGET_PATH_FIELDS = ("cert_path", "key_path", "chain_path")
_LABELS = {"cert_path": "cert path", "key_path": "key path", "chain_path": "chain path"}


def roots(server: Server) -> list[str]:
    """Where the server's targets may write: its type path, key store folder and allowed paths."""
    return paths.server_roots(server.app_path, server.keystore_folder, server.allowed_paths)


def target_problems(
    server: Server, values: dict[str, str | int | None], *, prefix: str = ""
) -> list[tuple[str | None, str]]:
    """(field, message) for each path or server name of a target that breaks its rule; empty when fine.

    `values` holds `port`, `cert_path`, `key_path`, `chain_path` and `server_name` (None or "" = not given).
    """
    problems: list[tuple[str | None, str]] = []
    port = values.get("port")
    if port is not None and server.ports and int(port) not in server.ports:
        listed = ", ".join(str(p) for p in server.ports)
        problems.append(
            (
                f"{prefix}port",
                f"port {port} is not a port of server {server.description} ({listed}): add it to the server's Ports "
                "first, or choose one of those",
            )
        )
    windows = server.connection is ServerConnection.SMB
    allowed = roots(server)
    for name in TARGET_PATH_FIELDS:
        value = values.get(name)
        if not value:
            continue
        value = str(value)
        label = _LABELS[name]
        try:
            paths.check_path(value, label, windows=windows)
            if not windows:
                paths.require_within(value, allowed, label)
        except paths.PathRefused as exc:
            problems.append((f"{prefix}{name}", str(exc)))
    sni = values.get("server_name")
    if sni:
        try:
            check_server_name(str(sni))
        except NameRefused as exc:
            problems.append((f"{prefix}server_name", str(exc)))
    return problems
