"""What to scan: hosts, IP addresses, CIDR ranges, address ranges and host lists, times a list of ports.

Target syntax (one per list item; an item may also hold a pasted list separated by commas, spaces or
newlines)::

    www.example.com            a host name: resolved, every address scanned, the name sent as SNI
    192.0.2.10                 an IPv4 or IPv6 address (no SNI: RFC 6066 forbids IP literals)
    192.0.2.0/24               a CIDR range (IPv4 network and broadcast addresses are left out)
    192.0.2.10-192.0.2.50      an address range; the short form 192.0.2.10-50 works too
    www.example.com@192.0.2.10 connect to the address, send the name as SNI (virtual hosts on one IP)
    host:8443, [2001:db8::1]:8443
                               a port for this target only, instead of the port list

Ports are a list of numbers or a string such as "443,8443,9000-9010".
Every mistake raises TargetError naming the entry and what to write instead.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

from certfleet.fields import host_name_problem

MAX_ENDPOINTS = 2_000_000  # a /16 times 30 ports; more is a typo, not a scan
MAX_TARGET_ENTRIES = 10_000  # entries one discovery request may hand its run (after SNI names are applied)

_SPLIT = re.compile(r"[\s,;]+")


class TargetError(ValueError):
    """A target or port entry cannot be understood; the message names it and shows the accepted forms."""


class Endpoint(NamedTuple):
    """One TLS endpoint to try: `host` is what the user wrote (name or address), `ip` what is dialled."""

    host: str
    ip: str
    port: int
    sni: str | None

    @property
    def locator(self) -> str:
        """Stable key of the place a certificate is served: scan IP, scan port and SNI name."""
        return f"tls:{self.ip}:{self.port}:{self.sni or ''}"

    def where(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{self.port}" + (f" ({self.sni})" if self.sni else "")


@dataclass(frozen=True)
class Target:
    """One parsed target entry: either addresses or a name still to resolve."""

    text: str
    addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] | None  # None: resolve `name`
    name: str | None  # host name to resolve or SNI name to send
    port: int | None  # overrides the port list
    first: int | None = None  # for ranges: integer bounds, expanded lazily
    last: int | None = None
    version: int = 4

    def count(self) -> int:
        if self.first is not None and self.last is not None:
            return self.last - self.first + 1
        return len(self.addresses) if self.addresses is not None else 1

    def ips(self) -> Iterator[str]:
        if self.first is not None and self.last is not None:
            make = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
            for value in range(self.first, self.last + 1):
                yield str(make(value))
        elif self.addresses is not None:
            for address in self.addresses:
                yield str(address)


def split_entries(items: Iterable[str]) -> list[str]:
    """Flatten pasted lists: commas, semicolons, spaces and newlines separate entries."""
    return [part for item in items for part in _SPLIT.split(item.strip()) if part]


def parse_ports(spec: str | int | Sequence[int | str]) -> list[int]:
    """Ports from "443,8443,9000-9010" or a list; sorted, without duplicates."""
    items: list[str]
    if isinstance(spec, int):
        items = [str(spec)]
    elif isinstance(spec, str):
        items = split_entries([spec])
    else:
        items = split_entries(str(item) for item in spec)
    if not items:
        raise TargetError("no port given; write e.g. 443 or 443,8443,9000-9010")
    ports: set[int] = set()
    for item in items:
        low, sep, high = item.partition("-")
        try:
            start, end = int(low), int(high) if sep else int(low)
        except ValueError:
            raise TargetError(f"port {item!r} is not a number or a range like 9000-9010") from None
        if not (1 <= start <= end <= 65535):
            raise TargetError(f"port {item!r} is outside 1-65535 or its range runs backwards")
        ports.update(range(start, end + 1))
    return sorted(ports)


def _split_port(text: str) -> tuple[str, int | None]:
    """Take a trailing :port off 'host:port' or '[v6]:port'; a bare IPv6 address has no port."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise TargetError(f"target {text!r} opens '[' without closing it; write [2001:db8::1]:443")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise TargetError(f"target {text!r}: write [address]:port")
        return host, _port(rest[1:], text)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port(port, text)
    return text, None


def _port(value: str, text: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise TargetError(f"target {text!r} has port {value!r}; a port is a number from 1 to 65535")
    return int(value)


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _hostname(value: str, text: str) -> str:
    """A DNS name by the one host rule (`certfleet.fields`): `0x7f.1` or `127.1` are IPv4 addresses in
    disguise that resolvers would dial, so they are refused rather than scanned."""
    problem = host_name_problem(value)
    if problem is not None:
        raise TargetError(
            f"target {text!r} is not a host name, an IP address, a CIDR range (192.0.2.0/24) "
            f"or an address range (192.0.2.10-192.0.2.50): {problem}"
        )
    return value.rstrip(".").lower()


def parse_target(text: str) -> Target:
    """Parse one entry of the syntax in the module docstring."""
    entry = text.strip()
    if not entry:
        raise TargetError("an empty target was given")
    sni: str | None = None
    if "@" in entry:
        name, _, entry = entry.partition("@")
        sni = _hostname(name, text)
    host, port = _split_port(entry)
    if "/" in host:
        try:
            network = ipaddress.ip_network(host, strict=False)
        except ValueError as exc:
            raise TargetError(f"target {text!r} is not a valid CIDR range: {exc}") from None
        first, last = int(network.network_address), int(network.broadcast_address)
        if network.version == 4 and network.prefixlen < 31:
            first, last = first + 1, last - 1  # skip network and broadcast addresses
        return Target(text, None, sni, port, first=first, last=last, version=network.version)
    if "-" in host and (_address(host.partition("-")[0]) is not None):
        return _parse_range(host, text, sni, port)
    address = _address(host)
    if address is not None:
        return Target(text, (address,), sni, port)
    if sni is not None:
        raise TargetError(f"target {text!r}: after '@' comes the address to connect to, e.g. name@192.0.2.10")
    return Target(text, None, _hostname(host, text), port)


def _parse_range(host: str, text: str, sni: str | None, port: int | None) -> Target:
    low_text, _, high_text = host.partition("-")
    low = ipaddress.ip_address(low_text)
    high = _address(high_text)
    if high is None and low.version == 4 and high_text.isdigit():  # 192.0.2.10-50
        high = _address(low_text.rsplit(".", 1)[0] + "." + high_text)
    if high is None or high.version != low.version:
        raise TargetError(f"target {text!r}: write a range as 192.0.2.10-192.0.2.50 or 192.0.2.10-50")
    if int(high) < int(low):
        raise TargetError(f"target {text!r}: the range ends before it starts")
    return Target(text, None, sni, port, first=int(low), last=int(high), version=low.version)


def count_endpoints(targets: Sequence[Target], port_count: int, *, sni_names: int = 0) -> int:
    """How many endpoints `targets` expand to, computed without expanding them.

    With `sni_names`, each address target that names no SNI of its own is scanned once per name.
    """
    total = 0
    for target in targets:
        per_address = 1 if target.port else port_count
        by_address = target.addresses is not None or target.first is not None
        names = sni_names if sni_names and by_address and target.name is None else 1
        total += target.count() * per_address * names
    return total


def check_endpoint_count(total: int, max_endpoints: int = MAX_ENDPOINTS) -> None:
    if total > max_endpoints:
        raise TargetError(
            f"the targets expand to {total:,} endpoints, more than the limit of {max_endpoints:,}; "
            "split the range or scan fewer ports or SNI names"
        )


Resolver = Callable[[str], list[str]]


def resolve_name(name: str) -> list[str]:
    """All addresses of a name (A and AAAA), in the resolver's order, without duplicates."""
    infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass
class Expansion:
    endpoints: list[Endpoint]
    unresolved: dict[str, str]  # host name -> why it could not be resolved


def expand(
    targets: Sequence[str],
    ports: str | int | Sequence[int | str],
    *,
    resolver: Resolver = resolve_name,
    max_endpoints: int = MAX_ENDPOINTS,
) -> Expansion:
    """Every (address, port, SNI) to scan, in target order, each endpoint once."""
    entries = split_entries(targets)
    if not entries:
        raise TargetError("no target given; write host names, addresses, CIDR ranges or address ranges")
    port_list = parse_ports(ports)
    parsed = [parse_target(entry) for entry in entries]
    check_endpoint_count(count_endpoints(parsed, len(port_list)), max_endpoints)
    names = sorted({t.name for t in parsed if t.addresses is None and t.first is None and t.name})
    resolved, unresolved = _resolve_all(names, resolver)
    endpoints: dict[Endpoint, None] = {}
    for target in parsed:
        target_ports = [target.port] if target.port else port_list
        sni: str | None = target.name
        if target.addresses is None and target.first is None:
            assert target.name is not None
            host, ips = target.name, resolved.get(target.name, [])
        else:
            host, ips = "", list(target.ips())
        for ip in ips:
            for port in target_ports:
                endpoints[Endpoint(host or ip, ip, port, sni)] = None
    return Expansion(list(endpoints), unresolved)


def with_known_names(endpoints: Sequence[Endpoint], known: Iterable[tuple[str, int, str]]) -> list[Endpoint]:
    """The endpoints, plus each SNI name already recorded at an address and port being scanned.

    A server may answer another certificate for each name it is asked; a scan of the address alone would leave
    every place recorded under a name Active on the certificate it served before. Asking each known name again
    updates all of them."""
    scanned = {(e.ip, e.port) for e in endpoints}
    out: dict[Endpoint, None] = dict.fromkeys(endpoints)
    asked = {(e.ip, e.port, e.sni) for e in endpoints}
    for ip, port, name in known:
        if (ip, port) in scanned and (ip, port, name) not in asked:
            out[Endpoint(name, ip, port, name)] = None
            asked.add((ip, port, name))
    return list(out)


def _resolve_all(names: list[str], resolver: Resolver) -> tuple[dict[str, list[str]], dict[str, str]]:
    resolved: dict[str, list[str]] = {}
    unresolved: dict[str, str] = {}
    if not names:
        return resolved, unresolved

    def one(name: str) -> tuple[str, list[str] | str]:
        try:
            return name, resolver(name)
        except OSError as exc:  # socket.gaierror is an OSError
            return name, f"cannot resolve {name}: {exc.strerror or exc}"

    with ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:
        for name, answer in pool.map(one, names):
            if isinstance(answer, str):
                unresolved[name] = answer
            elif not answer:
                unresolved[name] = f"{name} has no address"
            else:
                resolved[name] = answer
    return resolved, unresolved
