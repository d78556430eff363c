"""issue-certificate: the order is written first, the CA is called once, and everything is recorded."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from certfleet.connectors.base import IssueRequest, IssueResult
from certfleet.connectors.ca.local import LocalCA
from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError
from certfleet.flows.issuance import issue_certificate
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    AuditEvent,
    CAConnector,
    CAType,
    Certificate,
    CertificateStatus,
    ConnectorStatus,
    Order,
    OrderState,
)
from certfleet.pki.bundle import key_matches_certificate
from certfleet.pki.keys import load_private_key
from certfleet.pki.parse import load_material, serial_hex
from certfleet.tasks import issuance
from tests.flows.conftest import Site


def _orders(certificate_id: int) -> list[Order]:
    with session_scope() as s:
        return list(s.scalars(select(Order).where(Order.certificate_id == certificate_id).order_by(Order.id)))


def test_issue_records_the_certificate_and_its_order(site: Site) -> None:
    serial = issue_certificate(site.certificate_id)
    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        assert cert.pem_chain is not None
        assert cert.private_key is not None
        leaf = load_material(cert.pem_chain.encode()).certificates[0]
        der = leaf.public_bytes(serialization.Encoding.DER)
        assert serial == cert.serial_number == serial_hex(leaf.serial_number)
        assert cert.status is CertificateStatus.ISSUED
        assert cert.issuer_ca == "Built-in CA Issuing CA"
        assert cert.ca_type is CAType.PRIVATE
        assert cert.signature_algorithm == "SHA384ECDSA"
        assert (cert.key_type, cert.key_size) == ("EC", 256)
        assert cert.sha256_thumbprint == hashlib.sha256(der).hexdigest().upper()
        assert cert.sha1_thumbprint == hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - a thumbprint
        assert cert.expires_on == leaf.not_valid_after_utc
        assert abs(cert.expires_on - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
        assert cert.sans == [site.host.fqdn]
        assert cert.vulnerable is False
        assert cert.order_generation == 1
        assert key_matches_certificate(load_private_key(cert.private_key), leaf)
        assert cert.ca_order_id == f"local-{leaf.serial_number:x}"
        assert (cert.validation_status, cert.dcv_status) == (None, None)  # the built-in CA validates nothing
        actions = set(s.scalars(select(AuditEvent.action)))
        assert {"create-order", "issue"} <= actions
    (order,) = _orders(site.certificate_id)
    assert order.state is OrderState.ISSUED
    assert [h["state"] for h in order.history] == ["Created", "Submitted", "Issued"]
    assert order.idempotency_key == f"cert-{site.certificate_id}-gen-1"
    assert order.private_key is None  # the certificate holds the one encrypted copy
    assert order.serial_number == serial


def test_renewal_is_a_new_order_with_a_new_key(site: Site) -> None:
    first = issue_certificate(site.certificate_id)
    with session_scope() as s:
        first_key = repo.get(s, Certificate, site.certificate_id).private_key
    second = issue_certificate(site.certificate_id)
    orders = _orders(site.certificate_id)
    assert first != second
    assert [o.idempotency_key for o in orders] == [
        f"cert-{site.certificate_id}-gen-1",
        f"cert-{site.certificate_id}-gen-2",
    ]
    with session_scope() as s:
        assert repo.get(s, Certificate, site.certificate_id).private_key != first_key


def test_rerun_after_a_crash_reuses_the_order_under_way(site: Site) -> None:
    order_id = issuance.create_order.fn(site.certificate_id)
    with session_scope() as s:  # the worker died right after marking the order submitted
        repo.note_order(repo.get(s, Order, order_id), OrderState.SUBMITTED, "sent to the CA")
    issue_certificate(site.certificate_id)
    (order,) = _orders(site.certificate_id)
    assert order.id == order_id
    assert order.state is OrderState.ISSUED


def test_disabled_connector_orders_nothing_and_says_why(site: Site, boot: Bootstrapped) -> None:
    with session_scope() as s:
        repo.get(s, CAConnector, boot.ca_connector_id).status = ConnectorStatus.DISABLED
    state = issue_certificate(site.certificate_id, return_state=True)
    assert state.is_failed()
    with pytest.raises(repo.NotFound, match="CA connector 'Built-in CA' is disabled"):
        state.result()
    assert _orders(site.certificate_id) == []


class ScriptedCA:
    """A CA whose answers are scripted, with a real LocalCA underneath to sign what it finally issues."""

    kind: ClassVar[str] = "scripted"

    def __init__(self, real: LocalCA, issue_answers: list[str], status_answers: list[str]) -> None:
        self.real = real
        self.issue_answers = issue_answers
        self.status_answers = status_answers
        self.requests: list[IssueRequest] = []
        self.polls = 0
        self.pending: IssueRequest | None = None

    def _answer(self, answer: str, request: IssueRequest) -> IssueResult:
        if answer == "transient":
            raise TransientConnectorError("CA answered 503")
        if answer == "denied":
            raise PermanentConnectorError("request denied by CA policy")
        if answer == "pending":
            self.pending = request
            return IssueResult(ca_order_id="ORDER-77", dcv_status="Pending", validation_status="Needs approval")
        issued = self.real.issue(request)
        return IssueResult(ca_order_id="ORDER-77", pem_chain=issued.pem_chain, dcv_status="Valid",
                           validation_status="Issued")  # fmt: skip

    def issue(self, request: IssueRequest) -> IssueResult:
        self.requests.append(request)
        return self._answer(self.issue_answers.pop(0), request)

    def status(self, ca_order_id: str) -> IssueResult:
        assert ca_order_id == "ORDER-77"
        assert self.pending is not None
        self.polls += 1
        return self._answer(self.status_answers.pop(0), self.pending)

    def revoke(self, serial_number: int, reason: x509.ReasonFlags) -> None:
        raise AssertionError("not used")


def _script(monkeypatch: pytest.MonkeyPatch, issue: list[str], status: list[str]) -> list[ScriptedCA]:
    made: list[ScriptedCA] = []
    real_build = issuance.build_ca

    def build(session, connector):  # type: ignore[no-untyped-def]
        if not made:
            real = real_build(session, connector)
            assert isinstance(real, LocalCA)
            made.append(ScriptedCA(real, issue, status))
        made[0].real = real_build(session, connector)  # type: ignore[assignment]  # fresh session each task
        return made[0]

    monkeypatch.setattr(issuance, "build_ca", build)
    return made


def test_pending_order_is_polled_until_issued(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    made = _script(monkeypatch, issue=["pending"], status=["pending", "pending", "issued"])
    serial = issue_certificate(site.certificate_id)
    (order,) = _orders(site.certificate_id)
    assert made[0].polls == 3
    assert [h["state"] for h in order.history] == [
        "Created",
        "Submitted",
        "Pending",
        "Pending",
        "Pending",
        "Issued",
    ]
    with session_scope() as s:
        cert = repo.get(s, Certificate, site.certificate_id)
        assert (cert.status, cert.serial_number, cert.ca_order_id) == (
            CertificateStatus.ISSUED,
            serial,
            "ORDER-77",
        )
        assert (cert.dcv_status, cert.validation_status) == ("Valid", "Issued")


def test_transient_errors_are_retried_without_a_second_order(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    made = _script(monkeypatch, issue=["transient", "transient", "issued"], status=[])
    issue_certificate(site.certificate_id)
    assert len(made[0].requests) == 3
    assert {r.idempotency_key for r in made[0].requests} == {f"cert-{site.certificate_id}-gen-1"}
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 1


def test_denied_request_fails_the_order_with_the_cas_reason(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    made = _script(monkeypatch, issue=["denied"], status=[])
    state = issue_certificate(site.certificate_id, return_state=True)
    assert state.is_failed()
    assert len(made[0].requests) == 1  # a permanent error is not retried
    (order,) = _orders(site.certificate_id)
    assert order.state is OrderState.FAILED
    assert order.error == "request denied by CA policy"
    with session_scope() as s:
        assert (
            repo.get(s, Certificate, site.certificate_id).status_reason == "order failed: request denied by CA policy"
        )
