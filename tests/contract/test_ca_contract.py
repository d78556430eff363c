"""The contract every CA connector passes, run against each CA's emulator (and Pebble for ACME).

Issue for a CSR with SANs: the chain verifies to the CA's root, the SANs, serial and validity are the
CA's; revoke works where the CA supports it (and says how otherwise); each failure mode maps to the
right kind of error: 401 -> permanent, 429 / 5xx / timeout -> transient (and a retry orders once),
pending -> an order id that `status` later turns into the certificate, denied -> permanent with the
CA's own message.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from certfleet.connectors.base import IssueRequest
from certfleet.connectors.ca.http import RateLimited
from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.keys import KeySpec, generate_private_key
from certfleet.pki.parse import load_material, serial_hex
from tests.contract.harnesses import (
    AcmeHarness,
    ADCSHarness,
    DigiCertHarness,
    EmCAHarness,
    EmSignHarness,
    Harness,
)
from tests.emulators.adcs import ADCSEmulator
from tests.emulators.digicert import DigiCertEmulator
from tests.emulators.emca import EmCAEmulator
from tests.emulators.emsign import EmSignEmulator
from tests.emulators.fixtures import EMCA_PFX_PASSWORD, AcmeStack
from tests.emulators.pki import TlsIdentity

KINDS = ["digicert", "adcs", "emsign", "emca-4.3.1", "emca-5", "acme"]
COMMON_NAME = "www.example.test"
SANS = ["www.example.test", "api.example.test", "static.example.test"]


@pytest.fixture(params=KINDS)
def harness(request: pytest.FixtureRequest, emulator_tls: TlsIdentity, tmp_path: Path) -> Iterator[Harness]:
    kind = request.param
    if kind == "digicert":
        emulator: DigiCertEmulator = DigiCertEmulator(emulator_tls).start()
        yield DigiCertHarness(emulator_tls, emulator)
        emulator.stop()
    elif kind == "adcs":
        adcs = ADCSEmulator(emulator_tls, tmp_path / "adcs").start()
        yield ADCSHarness(emulator_tls, adcs)
        adcs.stop()
    elif kind == "emsign":
        emsign = EmSignEmulator(emulator_tls).start()
        yield EmSignHarness(emulator_tls, emsign)
        emsign.stop()
    elif kind.startswith("emca"):
        client_file, client_cert = request.getfixturevalue("emca_client_file")
        emca = EmCAEmulator(
            emulator_tls, client_cert, version=kind.split("-", 1)[1], password=EMCA_PFX_PASSWORD
        ).start()
        yield EmCAHarness(emulator_tls, emca, client_file)
        emca.stop()
    else:
        stack: AcmeStack = request.getfixturevalue("acme_http_stack")
        yield AcmeHarness(emulator_tls, stack)
        stack.reset()


def _request(validity_days: int | None = 30) -> IssueRequest:
    key = generate_private_key(KeySpec.parse("ec-p256"))
    csr = build_csr(key, COMMON_NAME, SANS)
    return IssueRequest(csr_pem=csr_to_pem(csr), validity_days=validity_days, idempotency_key=f"k-{uuid.uuid4().hex}")


def _sans(cert: x509.Certificate) -> set[str]:
    return set(
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    )


def _verify(chain_pem: str, roots: list[x509.Certificate]) -> x509.Certificate:
    certificates = load_material(chain_pem.encode()).certificates
    leaf, intermediates = certificates[0], [c for c in certificates[1:] if c not in roots]
    verifier = PolicyBuilder().store(Store(roots)).build_server_verifier(x509.DNSName(COMMON_NAME))
    verified = verifier.verify(leaf, intermediates)  # raises if the chain does not lead to the root
    assert verified[-1] in roots
    return leaf


def test_issues_a_certificate_for_the_csr_that_chains_to_the_root(harness: Harness) -> None:
    ca = harness.connector()
    request = _request()
    result = ca.issue(request)
    assert result.issued
    assert result.ca_order_id
    assert result.pem_chain is not None
    leaf = _verify(result.pem_chain, harness.roots())
    assert _sans(leaf) == set(SANS)
    assert harness.knows(leaf.serial_number)
    now = datetime.now(UTC)
    assert leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc
    if harness.honours_validity:
        assert abs(leaf.not_valid_after_utc - (now + timedelta(days=30))) < timedelta(hours=1)
    assert harness.placed() == 1


def test_issuing_again_with_the_same_key_resumes_the_order(harness: Harness) -> None:
    ca = harness.connector()
    request = _request()
    first = ca.issue(request)
    second = ca.issue(request)
    assert second.ca_order_id == first.ca_order_id
    assert second.pem_chain == first.pem_chain
    assert harness.placed() == 1


def test_revoke_where_the_ca_supports_it(harness: Harness) -> None:
    ca = harness.connector()
    result = ca.issue(_request())
    assert result.pem_chain is not None
    leaf = x509.load_pem_x509_certificate(result.pem_chain.encode())
    ca.journal.remember_issued(leaf.serial_number, result.ca_order_id, result.pem_chain)  # type: ignore[attr-defined]
    if harness.revokes:
        ca.revoke(leaf.serial_number, x509.ReasonFlags.superseded)
        assert harness.is_revoked(leaf.serial_number)
    else:
        with pytest.raises(PermanentConnectorError, match="cannot revoke") as caught:
            ca.revoke(leaf.serial_number, x509.ReasonFlags.superseded)
        assert serial_hex(leaf.serial_number) in str(caught.value)  # it tells which serial to revoke by hand


def test_bad_credentials_are_permanent(harness: Harness) -> None:
    ca = harness.connector(bad_credentials=True)
    with pytest.raises(PermanentConnectorError):
        ca.issue(_request())
    assert harness.placed() == 0
    with pytest.raises(PermanentConnectorError):
        ca.check_credentials()


def test_good_credentials_test_without_ordering(harness: Harness) -> None:
    assert "authenticated" in harness.connector().check_credentials()
    assert harness.placed() == 0


@pytest.mark.parametrize("fault", ["429", "503", "timeout"])
def test_overload_and_outages_are_transient_and_a_retry_orders_once(harness: Harness, fault: str) -> None:
    ca = harness.connector()
    if harness.kind == "acme":
        ca.check_credentials()  # account first: the fault must hit the order
    harness.aim_faults_at_orders()
    harness.faults.delay_s = 2.5
    harness.faults.queue.append(fault)
    request = _request()
    with pytest.raises(TransientConnectorError) as caught:
        ca.issue(request)
    if fault == "429":
        assert isinstance(caught.value, RateLimited)
    result = ca.issue(request)
    assert result.issued
    assert harness.placed() == 1


def test_pending_order_is_polled_until_issued(harness: Harness) -> None:
    ca = harness.connector()
    harness.hold_pending()
    request = _request()
    if harness.kind == "acme":
        # ACME runs the order in one call; still processing at the deadline is a transient error that
        # keeps the order, and the retry resumes it.
        AcmeHarness.short_deadline(ca)
        with pytest.raises(TransientConnectorError, match="kept and resumed"):
            ca.issue(request)
        order_id = ca.journal.prior(request.idempotency_key).ca_order_id  # type: ignore[attr-defined]
        assert order_id is not None
        harness.release_pending(order_id)
        result = ca.issue(request)
        assert result.ca_order_id == order_id
    else:
        pending = ca.issue(request)
        assert not pending.issued
        assert pending.ca_order_id
        assert not ca.status(pending.ca_order_id).issued
        harness.release_pending(pending.ca_order_id)
        result = ca.status(pending.ca_order_id)
    assert result.issued
    assert result.pem_chain is not None
    _verify(result.pem_chain, harness.roots())
    assert harness.placed() == 1


def test_denied_request_is_permanent_with_the_cas_message(harness: Harness) -> None:
    ca = harness.connector()
    with pytest.raises(PermanentConnectorError, match=harness.denied_text):
        harness.deny(ca, _request())


@pytest.fixture(params=["digicert", "emca-5"])
def resumable(request: pytest.FixtureRequest, emulator_tls: TlsIdentity) -> Iterator[Harness]:
    """The CAs whose protocol lets certfleet find an order whose answer was lost: DigiCert (the idempotency
    key in the order's comments, searched before ordering again) and emCA (the key as applicationId).
    ACME, AD CS and emSign have no such client reference; see README, "CA connectors"."""
    if request.param == "digicert":
        emulator = DigiCertEmulator(emulator_tls).start()
        yield DigiCertHarness(emulator_tls, emulator)
        emulator.stop()
        return
    client_file, client_cert = request.getfixturevalue("emca_client_file")
    emca = EmCAEmulator(emulator_tls, client_cert, version="5", password=EMCA_PFX_PASSWORD).start()
    yield EmCAHarness(emulator_tls, emca, client_file)
    emca.stop()


def test_an_order_whose_answer_was_lost_is_found_not_placed_again(resumable: Harness) -> None:
    ca = resumable.connector()
    resumable.aim_faults_at_orders()
    resumable.faults.queue.append("lost")  # the CA places the order, the answer never arrives
    request = _request()
    with pytest.raises(TransientConnectorError):
        ca.issue(request)
    assert resumable.placed() == 1
    result = ca.issue(request)
    assert result.issued
    assert resumable.placed() == 1
