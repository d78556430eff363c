"""A discovery request is bounded by what it expands to, computed before SNI names multiply the targets."""

from __future__ import annotations

import pytest

from certfleet.dashboard.errors import InputError
from certfleet.dashboard.services.inventory import DiscoverRequest, discovery_targets
from certfleet.discovery.targets import MAX_ENDPOINTS, MAX_TARGET_ENTRIES, count_endpoints, expand, parse_target


def _addresses(n: int) -> list[str]:
    return [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(1, n + 1)]


def test_sni_names_times_address_targets_over_the_entry_limit_are_refused_before_multiplying() -> None:
    request = DiscoverRequest(targets=_addresses(200), sni_names=[f"v{i}.example.test" for i in range(200)])
    with pytest.raises(InputError) as caught:
        discovery_targets(request)
    assert caught.value.field == "sni_names"
    assert (
        f"40,000 scan entries (each address target once per SNI name: 200), more than the limit of "
        f"{MAX_TARGET_ENTRIES:,}" in str(caught.value)
    )


def test_sni_names_times_a_range_over_the_endpoint_limit_are_refused() -> None:
    # One /16 with 31 names: 31 entries, but 65,534 x 31 endpoints, over the limit of 2,000,000.
    request = DiscoverRequest(targets=["10.1.0.0/16"], sni_names=[f"v{i}.example.test" for i in range(31)])
    with pytest.raises(InputError) as caught:
        discovery_targets(request)
    assert caught.value.field == "sni_names"
    assert f"expand to 2,031,554 endpoints, more than the limit of {MAX_ENDPOINTS:,}" in str(caught.value)


def test_a_request_within_the_limits_is_multiplied_out() -> None:
    request = DiscoverRequest(
        targets=["192.0.2.1", "www.example.test", "a.example.test@192.0.2.2"],
        sni_names=["x.example.test", "y.example.test"],
        ports="443,8443",
    )
    assert discovery_targets(request) == [
        "x.example.test@192.0.2.1",
        "y.example.test@192.0.2.1",
        "www.example.test",
        "a.example.test@192.0.2.2",
    ]


def test_count_endpoints_matches_what_expand_produces() -> None:
    entries = ["192.0.2.0/29", "192.0.2.20-25", "198.51.100.7:8443", "[2001:db8::1]", "n.example.test@192.0.2.9"]
    parsed = [parse_target(e) for e in entries]
    expanded = expand(entries, "443,8443")
    assert count_endpoints(parsed, 2) == len(expanded.endpoints) == 6 * 2 + 6 * 2 + 1 + 2 + 2
