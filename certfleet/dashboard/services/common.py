"""Small parsers shared by the services: tags, ports, enum labels, hosts."""

from __future__ import annotations

import enum
import ipaddress
import re
from typing import TypeVar

from certfleet.dashboard.errors import InputError

E = TypeVar("E", bound=enum.Enum)
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def tags(value: str | list[str] | None) -> list[str]:
    """Tags as the user types them: 'env=prod, team=web' or a list; blanks dropped, duplicates removed."""
    items = value if isinstance(value, list) else (value or "").split(",")
    out: list[str] = []
    for item in items:
        tag = item.strip()
        if tag and tag not in out:
            if len(tag) > 100:
                raise InputError(f"tag {tag[:20]!r}… is longer than 100 characters", field="tags")
            out.append(tag)
    return out


def label(enum_type: type[E], value: str, field: str) -> E:
    for member in enum_type:
        if value.strip().lower() in (str(member.value).lower(), member.name.lower()):
            return member
    choices = ", ".join(str(m.value) for m in enum_type)
    raise InputError(f"{field.replace('_', ' ')} must be one of {choices}, not {value!r}", field=field)


def text(value: str | None, field: str, *, required: bool = False, max_len: int = 200) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise InputError(f"{field.replace('_', ' ')} is required", field=field)
        return None
    if len(value) > max_len:
        raise InputError(f"{field.replace('_', ' ')} is longer than {max_len} characters", field=field)
    return value


def host(value: str | None, field: str = "ip_address", *, required: bool = True) -> str | None:
    value = text(value, field, required=required, max_len=255)
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not _HOSTNAME.match(value):
        raise InputError(f"{value!r} is neither an IP address nor a host name", field=field)
    return value


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
