"""Through the issue flow and the database journal: the worker dies after emSign or AD CS took the order and
before certfleet recorded it; the re-run reconciles with the CA (one order at the CA) and records the certificate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from certfleet.ca_admin import service
from certfleet.ca_admin.forms import ADCSForm, AdvancedOptions, ConnectorFormBase, EmSignForm
from certfleet.flows.issuance import issue_certificate
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, CertificateStatus, Order, OrderState
from certfleet.tasks import ca_runtime
from tests.emulators.adcs import ADCSEmulator
from tests.emulators.emsign import EmSignEmulator
from tests.emulators.pki import TlsIdentity


@pytest.fixture
def emsign(emulator_tls: TlsIdentity) -> Iterator[EmSignEmulator]:
    emulator = EmSignEmulator(emulator_tls).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def adcs(emulator_tls: TlsIdentity, tmp_path: Path) -> Iterator[ADCSEmulator]:
    emulator = ADCSEmulator(emulator_tls, tmp_path / "adcs").start()
    yield emulator
    emulator.stop()


def _certificate(form: ConnectorFormBase, common_name: str) -> int:
    with session_scope() as s:
        connector_id = service.create_connector(s, form, actor="test")
        cert = Certificate(common_name=common_name, ca_connector_id=connector_id, key_spec="ec-p256")
        s.add(cert)
        s.flush()
        return cert.id


def _die_once_after_the_ca_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ca_runtime.DbOrderJournal.placed

    def placed(self: ca_runtime.DbOrderJournal, idempotency_key: str, ca_order_id: str) -> None:
        monkeypatch.setattr(ca_runtime.DbOrderJournal, "placed", real)
        raise SystemError(f"the worker died after the CA answered {ca_order_id}, before it was recorded")

    monkeypatch.setattr(ca_runtime.DbOrderJournal, "placed", placed)


def _crash_then_rerun(cert_id: int, monkeypatch: pytest.MonkeyPatch, ref_prefix: str) -> Order:
    _die_once_after_the_ca_answered(monkeypatch)
    assert issue_certificate(cert_id, return_state=True).is_failed()
    with session_scope() as s:
        (order,) = s.scalars(select(Order).where(Order.certificate_id == cert_id))
        assert order.state is OrderState.SUBMITTED
        assert order.ca_order_id is None  # nothing recorded...
        assert (order.ca_request_ref or "").startswith(ref_prefix)  # ...but what finds it again was, before the call
    issue_certificate(cert_id)  # the operator re-runs it
    with session_scope() as s:
        (order,) = s.scalars(select(Order).where(Order.certificate_id == cert_id))
        assert order.state is OrderState.ISSUED
        assert repo.get(s, Certificate, cert_id).status is CertificateStatus.ISSUED
        s.expunge(order)
        return order


def test_emsign_order_taken_then_worker_died(
    boot: Bootstrapped, emsign: EmSignEmulator, emulator_tls: TlsIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    form = EmSignForm(
        name="emSign",
        api_base_url=emsign.base_url,
        account_number=emsign.account_number,
        access_key=SecretStr(emsign.access_key),
        full_name="PKI Operations",
        email="pki@example.test",
        advanced=AdvancedOptions(tls_ca_bundle=emulator_tls.ca_pem, timeout_s=10),
    )
    cert_id = _certificate(form, "reconcile.example.test")
    order = _crash_then_rerun(cert_id, monkeypatch, "txn:")
    (placed,) = emsign.orders.values()
    assert emsign.placed == 1
    assert order.ca_order_id == placed.number


def test_adcs_request_issued_then_worker_died(
    boot: Bootstrapped, adcs: ADCSEmulator, emulator_tls: TlsIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    form = ADCSForm(
        name="AD CS",
        base_url=adcs.base_url,
        ca_setup_type="Enterprise CA",
        username=adcs.login,
        password=SecretStr(adcs.password),
        template="WebServer",
        advanced=AdvancedOptions(tls_ca_bundle=emulator_tls.ca_pem, timeout_s=10),
    )
    first = _certificate(form, "first.example.test")
    issue_certificate(first)  # certfleet knows request 1
    with session_scope() as s:
        connector_id = repo.get(s, Certificate, first).ca_connector_id
        second = Certificate(common_name="second.example.test", ca_connector_id=connector_id, key_spec="ec-p256")
        s.add(second)
        s.flush()
        second_id = second.id
    order = _crash_then_rerun(second_id, monkeypatch, "after:1")
    assert adcs.placed == 2
    assert order.ca_order_id == "2"
