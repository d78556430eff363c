"""A worker that dies after the CA accepted an order, before certfleet recorded the answer, orders nothing twice:
the connector recorded the CA's order id the moment the CA answered, and the re-run resumes that order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from certfleet.ca_admin import service
from certfleet.ca_admin.forms import AdvancedOptions, DigiCertForm
from certfleet.flows.issuance import issue_certificate
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, CertificateStatus, Order, OrderState
from certfleet.tasks import issuance
from tests.emulators.digicert import DigiCertEmulator
from tests.emulators.pki import TlsIdentity


@pytest.fixture
def digicert(emulator_tls: TlsIdentity) -> Iterator[DigiCertEmulator]:
    emulator = DigiCertEmulator(emulator_tls, mode="pending", auto_approve_after=1).start()
    yield emulator
    emulator.stop()


def test_a_crash_after_the_ca_answered_resumes_that_order(
    boot: Bootstrapped, digicert: DigiCertEmulator, emulator_tls: TlsIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    form = DigiCertForm(
        name="DigiCert",
        api_base_url=digicert.base_url,
        api_key=SecretStr(digicert.api_key),
        organization_id=digicert.organization_id,
        advanced=AdvancedOptions(tls_ca_bundle=emulator_tls.ca_pem, timeout_s=10),
    )
    with session_scope() as s:
        connector_id = service.create_connector(s, form, actor="test")
        cert = Certificate(common_name="resume.example.test", ca_connector_id=connector_id, key_spec="ec-p256")
        s.add(cert)
        s.flush()
        cert_id = cert.id

    def worker_dies(order_id: int, result: object) -> bool:
        raise SystemError("the worker died before recording the CA's answer")

    monkeypatch.setattr(issuance, "_record_result", worker_dies)
    assert issue_certificate(cert_id, return_state=True).is_failed()
    with session_scope() as s:
        (order,) = s.scalars(select(Order).where(Order.certificate_id == cert_id))
        (placed,) = digicert.orders
        assert order.state is OrderState.SUBMITTED  # the flow never got to record the answer...
        assert order.ca_order_id == str(placed)  # ...but the connector recorded the CA's order id at once
        assert repo.get(s, Certificate, cert_id).ca_order_id == str(placed)

    monkeypatch.undo()
    issue_certificate(cert_id)  # the operator re-runs it
    assert digicert.placed == 1
    with session_scope() as s:
        (order,) = s.scalars(select(Order).where(Order.certificate_id == cert_id))
        assert order.state is OrderState.ISSUED
        assert order.ca_order_id == str(placed)
        assert repo.get(s, Certificate, cert_id).status is CertificateStatus.ISSUED
