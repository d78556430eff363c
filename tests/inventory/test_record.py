"""Bulk recording: concurrent batches never create the same certificate twice, and a known certificate is
not parsed again."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from certfleet.inventory import record as record_module
from certfleet.inventory.record import RecordSummary, Sighting, record
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, CertificateLocation
from tests.pki.conftest import PKI


def chains(pki: PKI, count: int) -> list[tuple[bytes, ...]]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    intermediate = pki.intermediate.cert.public_bytes(serialization.Encoding.DER)
    return [
        (
            pki.issue(f"host{n}.example.test", key=key, not_before=now - timedelta(days=1), serial=0x5000 + n).der,
            intermediate,
        )
        for n in range(count)
    ]


def sightings(found: list[tuple[bytes, ...]], port: int) -> list[Sighting]:
    return [
        Sighting(chain, "tls", f"tls:10.0.0.{n}:{port}:", host=f"10.0.0.{n}", port=port)
        for n, chain in enumerate(found)
    ]


def test_concurrent_batches_create_each_certificate_once(boot: Bootstrapped, pki: PKI) -> None:
    # Two batches of the same 40 certificates at different places, recorded at the same moment.
    same = chains(pki, 40)
    batches = [sightings(same, 443), sightings(same, 8443)]
    start = threading.Barrier(2)
    results: list[RecordSummary] = []
    errors: list[BaseException] = []

    def run(batch: list[Sighting]) -> None:
        start.wait()
        try:
            results.append(record(batch, now=datetime.now(UTC), bot_id=boot.local_bot_id))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Certificate)) == 40
        assert s.scalar(select(func.count()).select_from(CertificateLocation)) == 80
        per_certificate = s.execute(
            select(CertificateLocation.certificate_id, func.count()).group_by(CertificateLocation.certificate_id)
        ).all()
        assert {n for _, n in per_certificate} == {2}
    assert sum(r.new_certificates for r in results) == 40


def test_known_certificates_are_not_parsed_again(boot: Bootstrapped, pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    batch = sightings(chains(pki, 5), 443)
    record(batch, now=datetime.now(UTC), bot_id=boot.local_bot_id)
    calls: list[int] = []
    real = record_module.analyze

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(record_module, "analyze", counting)
    again = record(batch, now=datetime.now(UTC), bot_id=boot.local_bot_id)
    assert (again.new_certificates, again.certificates, calls) == (0, 5, [])
