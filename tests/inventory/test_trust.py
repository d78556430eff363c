"""Public or private: a chain is Public when it verifies to the system's roots (certifi and /etc/ssl/certs),
Private otherwise, with the registered private root named as its anchor."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from certfleet.inventory import trust
from certfleet.inventory.record import forget_trust_store
from certfleet.inventory.schemas import UploadedFile
from certfleet.inventory.service import import_files, reclassify
from certfleet.inventory.trust import TrustStore, load_system_roots, system_roots
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import CAType, Certificate
from tests.discovery.certs import Served
from tests.pki.conftest import PKI


def test_system_roots_come_from_certifi_and_the_os() -> None:
    roots = system_roots()
    assert len(roots) > 100
    names = {r.subject.rfc4514_string() for r in roots}
    assert any("ISRG Root X1" in n for n in names)  # Let's Encrypt's root is in both bundles


def test_a_directory_of_roots_is_read_when_there_is_no_bundle(tmp_path, pki: PKI) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "corp.pem").write_bytes(pki.root.pem)
    (tmp_path / "broken.crt").write_bytes(b"not a certificate")
    assert load_system_roots([tmp_path / "missing.pem"], tmp_path) == [pki.root.cert]


def test_classify(pki: PKI, fleet: dict[str, Served]) -> None:
    good = fleet["good"]
    as_public = TrustStore([pki.root.cert], [])
    as_private = TrustStore(system_roots(), [("Corp Root", pki.root.cert)])
    unknown = TrustStore(system_roots(), [])
    assert as_public.classify(good.chain) == (CAType.PUBLIC, "Test Root CA", True, True)
    assert as_private.classify(good.chain) == (CAType.PRIVATE, "Corp Root", False, False)
    assert unknown.classify(good.chain) == (CAType.PRIVATE, None, False, False)
    # An admin holds the private root to the public rules: still private, but the public rules apply.
    held = TrustStore(system_roots(), [("Corp Root", pki.root.cert)], [pki.root.cert])
    assert held.classify(good.chain) == (CAType.PRIVATE, "Corp Root", False, True)
    # The server left out its intermediate: nothing to build the path with.
    assert as_public.classify(good.chain[:1]) == (CAType.PRIVATE, None, False, False)
    # Expired, but issued by a public CA: still Public (checked at the middle of its validity).
    assert as_public.classify(fleet["expired"].chain).ca_type is CAType.PUBLIC
    # Self-signed: trusted only as itself.
    assert as_public.classify(fleet["self_signed"].chain) == (CAType.PRIVATE, None, False, False)
    pinned = TrustStore([], [("Appliance", fleet["self_signed"].leaf)])
    assert pinned.classify(fleet["self_signed"].chain) == (CAType.PRIVATE, "Appliance", False, False)


def test_the_path_cache_still_checks_each_signature(pki: PKI, fleet: dict[str, Served]) -> None:
    store = TrustStore([pki.root.cert], [])
    assert store.classify(fleet["good"].chain).ca_type is CAType.PUBLIC
    other = PKI()  # same names, other keys: a forged leaf under a look-alike intermediate
    forged = other.leaf("good.example.test")
    assert store.classify([forged.cert, fleet["good"].chain[1]]).ca_type is CAType.PRIVATE


@pytest.fixture
def public_test_root(pki: PKI) -> Iterator[None]:
    """Make the test root one of the 'system' roots, as if a public CA had issued the test chains."""
    saved = trust._system_roots
    trust._system_roots = [*system_roots(), pki.root.cert]
    forget_trust_store()
    yield
    trust._system_roots = saved
    forget_trust_store()


@pytest.mark.usefixtures("public_test_root")
def test_publicly_trusted_certificates_get_the_lifetime_rule(boot: Bootstrapped, pki: PKI) -> None:
    now = datetime.now(UTC)
    short = pki.leaf("short.example.test", not_before=now - timedelta(days=1), days=90, serial=0x2001)
    long = pki.leaf("long.example.test", not_before=now - timedelta(days=1), days=400, serial=0x2002)
    files = [
        UploadedFile(filename=f"{c.cert.serial_number}.pem", content=c.pem + pki.intermediate.pem)
        for c in (short, long)
    ]
    outcomes = import_files(files, actor="alice").outcomes
    with session_scope() as s:
        short_row = repo.get(s, Certificate, outcomes[0].certificate_id or 0)
        long_row = repo.get(s, Certificate, outcomes[1].certificate_id or 0)
        assert (short_row.ca_type, short_row.trust_anchor, short_row.vulnerability_reasons) == (
            CAType.PUBLIC, "Test Root CA", [],
        )  # fmt: skip
        assert long_row.ca_type is CAType.PUBLIC
        assert long_row.vulnerability_reasons == [
            "validity of 400 days exceeds the 398 days allowed for publicly trusted certificates"
        ]


def test_reclassify_follows_the_trust_store(boot: Bootstrapped, pki: PKI, fleet: dict[str, Served]) -> None:
    content = fleet["good"].cert_file.read_bytes()
    (outcome,) = import_files(
        [UploadedFile(filename="g.pem", content=content, password=SecretStr("x"))], actor="a"
    ).outcomes
    saved = trust._system_roots
    try:
        trust._system_roots = [pki.root.cert]
        forget_trust_store()
        with session_scope() as s:
            assert reclassify(s) == 1
            row = repo.get(s, Certificate, outcome.certificate_id or 0)
            assert (row.ca_type, row.trust_anchor) == (CAType.PUBLIC, "Test Root CA")
    finally:
        trust._system_roots = saved
        forget_trust_store()
    assert pki.root.cert.public_bytes(serialization.Encoding.PEM) not in content  # the file held no root
