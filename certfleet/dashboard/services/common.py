"""Small parsers shared by the services: tags, ports, enum labels, hosts. The text rules themselves are
`certfleet.fields`; `text()` remains only for the deployment paths and SNI names that the server rules own."""

from __future__ import annotations

import enum
import re
from typing import TypeVar

from certfleet import fields
from certfleet.dashboard.errors import InputError

E = TypeVar("E", bound=enum.Enum)


tags = fields.tag_input
label = fields.choice


def text(value: str | None, field: str, *, required: bool = False, max_len: int = 200) -> str | None:
    """An optional one-line value (a path, an SNI name, a common name) stored exactly as sent: None or ""
    is no value; anything else must pass `fields.Name` (no edge whitespace, no control characters)."""
    if not value:
        if required:
            raise InputError(f"{field.replace('_', ' ')} is required", field=field)
        return None
    return fields.Name(max_len).check(value, field)


def host(value: str | None, field: str = "ip_address", *, required: bool = True, max_len: int = 255) -> str | None:
    """An IPv4 dotted quad, an IPv6 address or a DNS name (`fields.Host`), stored as written."""
    if value is None and not required:
        return None
    return fields.Host(max_len).check(value or "", field)


def ports(value: str | list[int] | None, field: str = "ports", *, required: bool = False) -> list[int]:
    items = value if isinstance(value, list) else [p for p in re.split(r"[,\s]+", value or "") if p]
    out: list[int] = []
    for item in items:
        try:
            port = int(item)
        except (TypeError, ValueError):
            raise InputError(f"port {item!r} is not a number", field=field) from None
        if not 1 <= port <= 65535:
            raise InputError(f"port {port} is outside 1-65535", field=field)
        if port not in out:
            out.append(port)
    if required and not out:
        raise InputError("give at least one port, e.g. 443", field=field)
    return out


def integer(value: str | int | None, field: str, *, low: int, high: int, default: int | None = None) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is None:
            raise InputError(f"{field.replace('_', ' ')} is required", field=field)
        return default
    try:
        number = int(value)
    except ValueError:
        raise InputError(f"{field.replace('_', ' ')} must be a whole number", field=field) from None
    if not low <= number <= high:
        raise InputError(f"{field.replace('_', ' ')} must be between {low} and {high}", field=field)
    return number
