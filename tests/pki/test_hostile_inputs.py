"""Hostile certificate files: ordering a chain is linear in its size, and a file's size in certificates is bounded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.parse import MAX_CHAIN_CERTIFICATES, load_material, order_chain

from .conftest import PKI


class Counter:
    def __init__(self) -> None:
        self.operations = 0


@dataclass(eq=False)
class CountingName:
    """Stands in for x509.Name: every comparison and hash is one unit of work."""

    value: int
    counter: Counter

    def __eq__(self, other: object) -> bool:
        self.counter.operations += 1
        return isinstance(other, CountingName) and other.value == self.value

    def __hash__(self) -> int:
        self.counter.operations += 1
        return hash(self.value)


@dataclass(eq=False)
class FakeCertificate:
    subject: CountingName
    issuer: CountingName


def _hostile_set(n: int, counter: Counter) -> list[Any]:
    """Half a long chain (each intermediate issued by the next), half leaves all issued by its bottom:
    the shape that made the old ordering walk the long chain once per leaf."""
    names = [CountingName(i, counter) for i in range(n + 1)]
    chain = [FakeCertificate(names[i], names[i + 1]) for i in range(n // 2)]
    chain.append(FakeCertificate(names[n // 2], names[n // 2]))  # the root
    leaves = [FakeCertificate(CountingName(n + 1 + i, counter), names[0]) for i in range(n - len(chain))]
    return [*leaves, *reversed(chain)]


@pytest.mark.parametrize("n", [200, 800])
def test_ordering_a_chain_does_linear_work(n: int) -> None:
    counter = Counter()
    certs = _hostile_set(n, counter)
    ordered = order_chain(cast(list[x509.Certificate], certs))
    chain_length = n // 2 + 2  # a leaf, the intermediates, the root
    assert [c.subject.value for c in ordered[:chain_length]] == [n + 1, *range(n // 2 + 1)]
    assert len(ordered) == n
    # The old ordering compared every pair of names and walked the chain from every leaf: n=800 took
    # about 96 million comparisons. Dict lookups need a few per certificate.
    assert counter.operations <= 12 * n, counter.operations


def test_a_name_cycle_without_a_leaf_is_walked_once() -> None:
    counter = Counter()
    names = [CountingName(i, counter) for i in range(600)]
    cycle = [FakeCertificate(names[i], names[(i + 1) % 600]) for i in range(600)]
    ordered = order_chain(cast(list[x509.Certificate], cycle))
    assert [c.subject.value for c in ordered] == list(range(600))  # the first one starts the loop
    assert counter.operations <= 12 * 600, counter.operations


def test_a_file_with_more_certificates_than_the_limit_is_refused_with_the_limit_named(pki: PKI) -> None:
    one = pki.root.cert.public_bytes(serialization.Encoding.PEM)
    assert load_material(one * MAX_CHAIN_CERTIFICATES).certificates == [pki.root.cert]
    with pytest.raises(CertificateFormatError, match=r"holds 1,001 certificates, more than the limit of 1,000"):
        load_material(one * (MAX_CHAIN_CERTIFICATES + 1))


def _quadratic_order(certs: list[Any]) -> list[Any]:
    """The ordering as it was before it was made linear: the reference for chains without name cycles."""
    unique = list(dict.fromkeys(certs))

    def chain_from(start: Any) -> list[Any]:
        chain = [start]
        while chain[-1].subject != chain[-1].issuer:
            issuer = next((c for c in unique if c not in chain and c.subject == chain[-1].issuer), None)
            if issuer is None:
                break
            chain.append(issuer)
        return chain

    if not unique:
        return []
    leaves = [c for c in unique if not any(o is not c and o.issuer == c.subject for o in unique)]
    chain = max((chain_from(c) for c in leaves or unique), key=lambda ch: (len(ch), ch[0].subject != ch[0].issuer))
    return chain + [c for c in unique if c not in chain]


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=9))
def test_the_order_is_the_old_one_for_every_set_without_a_name_cycle(pairs: list[tuple[int, int]]) -> None:
    # Issuers are numbered below their subjects (or equal: self-issued), so names never form a cycle.
    counter = Counter()
    names = [CountingName(i, counter) for i in range(7)]
    certs = [FakeCertificate(names[max(a, b)], names[min(a, b)]) for a, b in pairs]
    assert order_chain(cast(list[x509.Certificate], certs)) == _quadratic_order(certs)
