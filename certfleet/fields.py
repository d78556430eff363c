"""The field types every service and API body uses: name, description, tag, host, e-mail, secret.

One rule per type, the same on create, update, import and filter: a value is stored exactly as sent or
refused with an `InputError` whose message names the field and the rule ("name: 10000 characters, at most
120"; "description: control character U+0000 at position 3"). Nothing is ever stripped, truncated,
lower-cased or turned into None here. Positions count characters (code points) from 0.

Each type is a small frozen rule object:
- `rule.check(value, field)` for services (raises `InputError(field=field)`);
- `Annotated[str, rule]` in a pydantic model (the same rule, reported as a validation error of that key).

Paths and SNI names belong to `certfleet.servers` (they share `Host` where they check a DNS name).
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pydantic is imported only when a model uses a rule: the scan processes import this module
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import core_schema


class InputError(ValueError):
    """Bad input: the message says what to fix; `field` names the form field / JSON key when there is one.

    Defined here (not in the dashboard) so domain services can raise it; the dashboard answers it with 422.
    """

    def __init__(
        self, message: str, field: str | None = None, problems: list[tuple[str | None, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.problems = problems or []  # every (field, message) when a service refuses for several reasons


def safe_text(value: str) -> str:
    """`value` with lone surrogates replaced by U+FFFD: for messages and pages, which must be encodable."""
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _code(char: str) -> str:
    return f"U+{ord(char):04X}"


def _is_noncharacter(code: int) -> bool:
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


# Any character unicode_problem refuses: control characters (category Cc is exactly these two ranges), lone
# surrogates, and the noncharacters (U+FDD0..U+FDEF, the last two code points of every plane). One regex search
# clears clean text at C speed (a directory sync checks 30,000 values); the loop below names the problem.
_NONCHARACTERS = "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
_REFUSED = "\ud800-\udfff\ufdd0-\ufdef" + _NONCHARACTERS
_ANY_REFUSED = re.compile(f"[\x00-\x1f\x7f-\x9f{_REFUSED}]")
_ANY_REFUSED_BUT_LINE_BREAKS = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_REFUSED}]")


def unicode_problem(value: str, *, allow_line_breaks: bool = False) -> str | None:
    """Why `value` cannot be stored as text, or None: lone surrogates (not Unicode at all), control
    characters (invisible, break exports and terminals; tab/CR/LF only in multi-line text) and noncharacters."""
    if (_ANY_REFUSED_BUT_LINE_BREAKS if allow_line_breaks else _ANY_REFUSED).search(value) is None:
        return None
    for position, char in enumerate(value):
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            return f"invalid Unicode: lone surrogate {_code(char)} at position {position}"
        if unicodedata.category(char) == "Cc" and not (allow_line_breaks and char in "\t\r\n"):
            return f"control character {_code(char)} at position {position}"
        if _is_noncharacter(code):
            return f"noncharacter {_code(char)} at position {position}"
    return None


class _Rule:
    """Shared behaviour: `problem()` is the rule, `check()` the service form, the pydantic hook the API form."""

    def problem(self, value: str) -> str | None:
        raise NotImplementedError

    def check(self, value: str, field: str) -> str:
        if not isinstance(value, str):
            raise InputError(f"{field}: must be text", field=field)
        problem = self.problem(value)
        if problem is not None:
            raise InputError(f"{field}: {problem}", field=field)
        return value

    def check_optional(self, value: str | None, field: str) -> str | None:
        """None stays None (no value); any string, even "", must pass the rule."""
        return None if value is None else self.check(value, field)

    def _validate(self, value: str) -> str:
        problem = self.problem(value)
        if problem is not None:
            _refuse(problem)
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return _after(self._validate, handler(source))


def _refuse(problem: str) -> None:
    from pydantic_core import PydanticCustomError

    raise PydanticCustomError("field_rule", problem)


def _after(function: Any, schema: core_schema.CoreSchema) -> core_schema.CoreSchema:
    from pydantic_core import core_schema

    return core_schema.no_info_after_validator_function(function, schema)


def _length_problem(value: str, max_len: int) -> str | None:
    return f"{len(value)} characters, at most {max_len}" if len(value) > max_len else None


@dataclass(frozen=True)
class Name(_Rule):
    """A one-line label: bot, user, token, batch, group, profile names. Not empty, no control characters,
    no leading or trailing whitespace (invisible in lists and a source of look-alike duplicates)."""

    max_len: int

    def problem(self, value: str) -> str | None:
        if not value:
            return "empty"
        return _length_problem(value, self.max_len) or unicode_problem(value) or edge_space_problem(value)


def edge_space_problem(value: str) -> str | None:
    if not value:
        return None  # "" has no edge; whether it may be empty is each rule's own question
    if value.isspace():
        return "only whitespace"
    if value[0].isspace():
        return f"starts with whitespace ({_code(value[0])})"
    if value[-1].isspace():
        return f"ends with whitespace ({_code(value[-1])})"
    return None


def refuse_edge_space(value: str) -> str:
    """`value` as sent, or ValueError (in a pydantic validator: the field's error) when whitespace is around it."""
    problem = edge_space_problem(value)
    if problem is not None:
        raise ValueError(f"{problem}: give the value exactly, without whitespace around it")
    return value


@dataclass(frozen=True)
class Description(_Rule):
    """Free text: may be empty ("" is stored as ""), may span lines (tab, CR, LF) and start or end with
    spaces; never only whitespace, no other control characters."""

    max_len: int

    def problem(self, value: str) -> str | None:
        if not value:
            return None
        if value.isspace():
            return "only whitespace; send an empty value for none"
        return _length_problem(value, self.max_len) or unicode_problem(value, allow_line_breaks=True)


TAG_MAX = 100
TAGS_MAX = 50


@dataclass(frozen=True)
class Tag(_Rule):
    """One tag: a name that also has no comma (the forms separate tags with commas)."""

    max_len: int = TAG_MAX

    def problem(self, value: str) -> str | None:
        problem = Name(self.max_len).problem(value)
        if problem is None and "," in value:
            return f"a comma at position {value.index(',')}; commas separate tags"
        return problem


@dataclass(frozen=True)
class TagList(_Rule):
    """A list of tags: each a `Tag`, at most TAGS_MAX, no duplicates (a duplicate is refused, not merged)."""

    def tags_problem(self, values: list[str]) -> tuple[int | None, str] | None:
        if len(values) > TAGS_MAX:
            return None, f"{len(values)} tags, at most {TAGS_MAX}"
        seen: set[str] = set()
        for index, tag in enumerate(values):
            if not isinstance(tag, str):
                return index, "must be text"
            problem = Tag().problem(tag)
            if problem is not None:
                return index, problem
            if tag in seen:
                return index, f"the same tag as an earlier one (tag {values.index(tag)})"
            seen.add(tag)
        return None

    def check_tags(self, values: list[str], field: str = "tags") -> list[str]:
        found = self.tags_problem(values)
        if found is not None:
            index, problem = found
            where = field if index is None else f"{field}.{index}"
            raise InputError(f"{where}: {problem}", field=field)
        return values

    def _validate_list(self, values: list[str]) -> list[str]:
        found = self.tags_problem(values)
        if found is not None:
            index, problem = found
            _refuse(problem if index is None else f"tag {index}: {problem}")
        return values

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return _after(self._validate_list, handler(source))


def split_form_tags(text: str) -> list[str]:
    """Tags as typed in a form: 'env=prod, team=web'. A comma and the spaces around it are the separator
    (syntax, not part of a tag); nothing else is removed, so the tags then obey the same rule as JSON ones."""
    parts = [part.strip(" ") for part in text.split(",")]
    return [part for part in parts if part]


def form_tags(text: str, field: str = "tags") -> list[str]:
    return TagList().check_tags(split_form_tags(text), field)


_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9A-Fa-f]*)$")


def host_name_problem(value: str) -> str | None:
    """Why `value` is not a DNS host name (ASCII letters, digits, '-', '_'; labels of 1-63; 253 in all;
    an optional final dot). A name whose last label is a number is refused: resolvers and browsers read
    `0x7f.1` or `127.1` as IPv4 addresses, so it is one in disguise."""
    if not value.isascii():
        try:
            ascii_form = value.encode("idna").decode("ascii")
        except UnicodeError:
            return "not an ASCII host name"
        return f"not an ASCII host name; write it as {ascii_form}"
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253:
        return "not a host name (1-253 characters)"
    labels = name.split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            shown = label if len(label) <= 63 else label[:20] + "…"
            return f"label {shown!r} is not 1-63 letters, digits, '-' or '_'"
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        return "looks like an IPv4 address but is not four numbers 0-255 (a.b.c.d)"
    return None


@dataclass(frozen=True)
class Host(_Rule):
    """An IPv4 address as a dotted quad, an IPv6 address, or a DNS host name; stored as written."""

    max_len: int = 253

    def problem(self, value: str) -> str | None:
        if not value:
            return "empty"
        problem = _length_problem(value, self.max_len) or unicode_problem(value) or edge_space_problem(value)
        if problem is not None:
            return problem
        if "%" in value:
            return "an IPv6 zone (%...) names an interface of one machine; leave it out"
        try:
            ipaddress.ip_address(value)  # strict: no 127.1, 0x7f.0.0.1, 0177.0.0.1 or leading zeros
            return None
        except ValueError:
            pass
        if ":" in value:
            return "not a valid IPv6 address"
        problem = host_name_problem(value)
        return None if problem is None else f"{problem}; give an IPv4 address (a.b.c.d), an IPv6 address or a host name"


@dataclass(frozen=True)
class CertificateName(_Rule):
    """A name a TLS certificate covers: a `Host`, or a wildcard `*.example.com` (the whole leftmost label, over a
    host name of at least two labels, as CAs and RFC 6125 accept them); stored as written."""

    def problem(self, value: str) -> str | None:
        if not value.startswith("*."):
            if "*" in value:
                return "a wildcard must be the whole leftmost label, as in *.example.com"
            return Host().problem(value)
        rest = value[2:]
        if "*" in rest:
            return "only the leftmost label may be a wildcard, as in *.example.com"
        problem = Host().problem(rest)
        if problem is not None:
            return problem
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(rest)
            return "a wildcard covers host names, not IP addresses"
        if "." not in rest.rstrip("."):
            return "a wildcard needs a domain of at least two labels, as in *.example.com"
        return None


_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
EMAIL_MAX = 254  # RFC 5321: a path is at most 256 octets including the angle brackets


@dataclass(frozen=True)
class Email(_Rule):
    """An address as mail servers take it: local@domain, an ASCII dot-atom local part of at most 64
    characters, a DNS domain, 254 in all. Case is kept (compare with lower() where case must not matter)."""

    def problem(self, value: str) -> str | None:
        if not value:
            return "empty"
        problem = _length_problem(value, EMAIL_MAX) or unicode_problem(value) or edge_space_problem(value)
        if problem is not None:
            return problem
        local, at, domain = value.rpartition("@")
        if not at or not local:
            return "not an e-mail address (name@example.com)"
        if len(local) > 64:
            return f"the part before '@' has {len(local)} characters, at most 64"
        if not _ATEXT.fullmatch(local):
            return (
                "the part before '@' may hold letters, digits, dots (not first, last or doubled) "
                "and !#$%&'*+/=?^_`{|}~-"
            )
        problem = host_name_problem(domain)
        if problem is not None:
            return f"the domain after '@': {problem}"
        return None


@dataclass(frozen=True)
class Secret(_Rule):
    """A password, client secret or key passphrase: any text but invalid Unicode and control characters,
    kept exactly (spaces included). Messages never quote it."""

    max_len: int = 1024

    def problem(self, value: str) -> str | None:
        if not value:
            return "empty"
        return _length_problem(value, self.max_len) or unicode_problem(value)


def tag_input(value: str | list[str] | None, field: str = "tags") -> list[str]:
    """Tags as a form types them ('env=prod, team=web') or as a JSON list; each obeys `Tag`, a duplicate is
    refused (never merged)."""
    if value is None:
        return []
    if isinstance(value, str):
        return form_tags(value, field)
    return TagList().check_tags(list(value), field)


E = TypeVar("E", bound=enum.Enum)


def choice(enum_type: type[E], value: str, field: str) -> E:
    """One of an enumeration's values (or names), in any letter case."""
    for member in enum_type:
        if value.strip().lower() in (str(member.value).lower(), member.name.lower()):
            return member
    choices = ", ".join(str(m.value) for m in enum_type)
    raise InputError(f"{field.replace('_', ' ')} must be one of {choices}, not {value!r}", field=field)


def fraction(value: str | float | None, field: str) -> float | None:
    """A share strictly between 0 and 1 (a renewal fraction: 0 would never renew, 1 would renew at issue), as a
    form types it ("0.25") or as a JSON number; empty is "no value". Stored as the number sent."""
    if value is None or (isinstance(value, str) and not value):
        return None
    if isinstance(value, bool):
        raise InputError(f"{field.replace('_', ' ')} must be a number between 0 and 1", field=field)
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"{field.replace('_', ' ')} must be a number between 0 and 1", field=field) from None
    if not 0 < number < 1:  # also refuses nan and infinities
        raise InputError(
            f"{field.replace('_', ' ')} must be more than 0 and less than 1 (a share of the lifetime), not {value}",
            field=field,
        )
    return number
