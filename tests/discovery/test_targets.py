"""Target parsing: what a user types becomes exactly these endpoints, and a typo gets a message naming it."""

from __future__ import annotations

import pytest

from certfleet.discovery.targets import Endpoint, TargetError, expand, parse_ports


def fake_dns(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(name: str) -> list[str]:
        if name not in table:
            raise OSError(-2, "Name or service not known")
        return table[name]

    return resolve


def test_ports_lists_and_ranges() -> None:
    assert parse_ports("443, 8443,9000-9002") == [443, 8443, 9000, 9001, 9002]
    assert parse_ports([8443, "443"]) == [443, 8443]
    assert parse_ports(443) == [443]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no port given"),
        ("https", "port 'https' is not a number"),
        ("0", "outside 1-65535"),
        ("70000", "outside 1-65535"),
        ("9010-9000", "runs backwards"),
    ],
)
def test_bad_ports_are_named(spec: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        parse_ports(spec)


def test_cidr_skips_network_and_broadcast_and_times_ports() -> None:
    found = expand(["192.0.2.0/30"], "443,8443").endpoints
    assert found == [
        Endpoint("192.0.2.1", "192.0.2.1", 443, None),
        Endpoint("192.0.2.1", "192.0.2.1", 8443, None),
        Endpoint("192.0.2.2", "192.0.2.2", 443, None),
        Endpoint("192.0.2.2", "192.0.2.2", 8443, None),
    ]
    assert [e.ip for e in expand(["192.0.2.7/32"], 443).endpoints] == ["192.0.2.7"]


def test_ranges_short_and_long_form() -> None:
    assert [e.ip for e in expand(["10.0.0.254-10.0.1.1"], 443).endpoints] == [
        "10.0.0.254",
        "10.0.0.255",
        "10.0.1.0",
        "10.0.1.1",
    ]
    assert [e.ip for e in expand(["10.0.0.5-7"], 443).endpoints] == ["10.0.0.5", "10.0.0.6", "10.0.0.7"]


def test_host_lists_names_ports_and_sni() -> None:
    dns = fake_dns({"web.example.test": ["192.0.2.10", "2001:db8::10"]})
    found = expand(
        ["web.example.test:8443\n192.0.2.20, [2001:db8::1]:9443", "shop.example.test@192.0.2.30"],
        [443],
        resolver=dns,
    ).endpoints
    assert found == [
        Endpoint("web.example.test", "192.0.2.10", 8443, "web.example.test"),
        Endpoint("web.example.test", "2001:db8::10", 8443, "web.example.test"),
        Endpoint("192.0.2.20", "192.0.2.20", 443, None),
        Endpoint("2001:db8::1", "2001:db8::1", 9443, None),
        Endpoint("192.0.2.30", "192.0.2.30", 443, "shop.example.test"),
    ]
    assert found[0].locator == "tls:192.0.2.10:8443:web.example.test"
    assert found[3].where() == "[2001:db8::1]:9443"


def test_duplicates_are_scanned_once() -> None:
    assert len(expand(["192.0.2.1", "192.0.2.0/30", "192.0.2.1:443"], 443).endpoints) == 2


def test_unresolvable_names_are_reported_not_fatal() -> None:
    result = expand(
        ["ok.example.test", "nowhere.example.test"], 443, resolver=fake_dns({"ok.example.test": ["192.0.2.1"]})
    )
    assert [e.ip for e in result.endpoints] == ["192.0.2.1"]
    assert result.unresolved == {
        "nowhere.example.test": "cannot resolve nowhere.example.test: Name or service not known"
    }


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("192.0.2.0/33", "not a valid CIDR range"),
        ("bad_host!", "is not a host name, an IP address, a CIDR range"),
        ("10.0.0.9-10.0.0.1", "ends before it starts"),
        ("10.0.0.1-10.0.1", "write a range as"),
        ("web.example.test:99999", "a port is a number from 1 to 65535"),
        ("[2001:db8::1", "without closing it"),
        ("vhost@web.example.test", "after '@' comes the address"),
    ],
)
def test_bad_targets_are_named(target: str, message: str) -> None:
    with pytest.raises(TargetError, match=message) as info:
        expand([target], 443)
    assert repr(target) in str(info.value)


def test_huge_scans_are_refused_before_anything_is_expanded() -> None:
    with pytest.raises(TargetError, match=r"expand to 4,294,967,296 endpoints, more than the limit"):
        expand(["2001:db8::/96"], 443)


def test_nothing_to_scan() -> None:
    with pytest.raises(TargetError, match="no target given"):
        expand([" , "], 443)
