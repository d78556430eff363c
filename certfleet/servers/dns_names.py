"""The rule for a DNS host name given as a TLS server name (SNI) of a deployment target.

Stored exactly as given or refused. Only the ASCII form is accepted: an internationalised name must be
given as its A-label (`xn--...`), which is what the TLS client sends and what the server's configuration
matches, so what is stored is what goes on the wire. A Unicode name is refused with its A-label spelled
out; a homoglyph of an ASCII name therefore shows up as an `xn--` label a person can see is different.
"""

from __future__ import annotations

import ipaddress
import re

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class NameRefused(ValueError):
    """The value is not a DNS name usable as SNI; the message says why and what to give instead."""


def check_server_name(value: str, label: str = "server name") -> str:
    """`value` unchanged when it is an ASCII DNS host name (A-labels for IDNs), else NameRefused."""
    if not value:
        raise NameRefused(f"{label} is empty; leave it out to use the certificate's common name")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise NameRefused(f"{label} {value!r} contains a control character (NUL, CR, LF...)")
    if not value.isascii():
        raise NameRefused(f"{label} {value!r} is not ASCII: give the name's A-label form{_a_label_hint(value)}")
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        pass
    else:
        raise NameRefused(f"{label} {value!r} is an IP address; TLS server names are DNS names (RFC 6066)")
    if value.endswith("."):
        raise NameRefused(f"{label} {value!r} ends with a dot; TLS server names are written without it")
    if len(value) > 253:
        raise NameRefused(f"{label} is longer than 253 characters, the limit of a DNS name")
    labels = value.split(".")
    for part in labels:
        if not _LABEL.fullmatch(part):
            raise NameRefused(
                f"{label} {value!r} is not a DNS name: each label is 1-63 letters, digits or hyphens, "
                "not starting or ending with a hyphen"
            )
        if part[:4].lower() == "xn--":
            try:
                part.encode("ascii").decode("idna")  # the standard library's IDNA codec: punycode must decode
            except UnicodeError:
                raise NameRefused(
                    f"{label} {value!r} has an invalid A-label {part!r}: its punycode does not decode"
                ) from None
    if labels[-1].isdigit():
        raise NameRefused(f"{label} {value!r} is not a DNS name: its last label is all digits")
    return value


def _a_label_hint(value: str) -> str:
    try:
        return f", here {value.encode('idna').decode('ascii')}"
    except UnicodeError:
        return ""
