"""smime-rollout from DigiCert's Secure Email product and emSign's S/MIME product, through their connectors against
the CertCentral and CERTInext emulators: the order row first, the CA's order id recorded, pending orders polled,
the order placed once even when an answer is lost, and the CA's refusals reported on the user's order."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID
from prefect.states import State
from pydantic import SecretStr
from sqlalchemy import select

from certfleet.ca_admin import service as ca_admin
from certfleet.ca_admin.forms import AdvancedOptions, DigiCertForm, EmSignForm
from certfleet.flows.smime import smime_rollout
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import SmimeOrder, SmimeStatus, SmimeUser
from certfleet.smime import service
from tests.emulators.digicert import DigiCertEmulator
from tests.emulators.emsign import EmSignEmulator
from tests.emulators.pki import TlsIdentity

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def add(name: str, email: str) -> int:
    with session_scope() as s:
        return service.import_user(s, name=name, email=email, designation=None, actor="test").id


def status(user_id: int) -> SmimeStatus:
    with session_scope() as s:
        u = s.get(SmimeUser, user_id)
        assert u is not None
        return u.status


def orders() -> list[SmimeOrder]:
    with session_scope() as s:
        rows = list(s.scalars(select(SmimeOrder).order_by(SmimeOrder.id)))
        s.expunge_all()
        return rows


def connector(form: DigiCertForm | EmSignForm) -> int:
    with session_scope() as s:
        return ca_admin.create_connector(s, form, actor="test")


def digicert(dc: DigiCertEmulator, tls: TlsIdentity, **extra: object) -> int:
    return connector(
        DigiCertForm(
            name="DigiCert",
            api_base_url=dc.base_url,
            api_key=SecretStr(dc.api_key),
            organization_id=dc.organization_id,
            advanced=AdvancedOptions(tls_ca_bundle=tls.ca_pem, timeout_s=10),
            **extra,  # type: ignore[arg-type]
        )
    )


def emsign(em: EmSignEmulator, tls: TlsIdentity, **extra: object) -> int:
    return connector(
        EmSignForm(
            name="emSign",
            api_base_url=em.base_url,
            account_number=em.account_number,
            access_key=SecretStr(em.access_key),
            full_name="certfleet Operations",
            email="pki-ops@example.test",
            advanced=AdvancedOptions(tls_ca_bundle=tls.ca_pem, timeout_s=10),
            **extra,  # type: ignore[arg-type]
        )
    )


def check_delivered(p12: str, email: str, issuer: x509.Name) -> None:
    folder = Path(p12).parent
    password = (folder / "password.txt").read_text().strip()
    key, leaf, _ = pkcs12.load_key_and_certificates(Path(p12).read_bytes(), password.encode())
    assert key is not None
    assert leaf is not None
    assert leaf.issuer == issuer
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name
    ) == [email]
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value


def test_digicert_secure_email_issued_at_once(
    boot: Bootstrapped, digicert_emulator: DigiCertEmulator, emulator_tls: TlsIdentity, tmp_path: Path
) -> None:
    users = {add("Ann Mailbox", "ann@example.com"): "ann@example.com", add("Bo", "bo@example.com"): "bo@example.com"}
    ca_id = digicert(digicert_emulator, emulator_tls, smime_product_name_id="secure_email_sponsor")

    outcome = smime_rollout(ca_connector_id=ca_id, delivery_dir=str(tmp_path))

    for user_id, email in users.items():
        assert status(user_id) is SmimeStatus.CERTIFICATE_INSTALLED
        check_delivered(outcome[str(user_id)], email, digicert_emulator.ca.intermediate.subject)
    placed = list(digicert_emulator.orders.values())
    assert sorted(o.product for o in placed) == ["secure_email_sponsor"] * 2
    assert sorted(e for o in placed for e in o.body["certificate"]["emails"]) == sorted(users.values())
    assert {o.ca_order_id for o in orders()} == {str(o.id) for o in placed}
    assert all(o.ca_connector_id == ca_id and o.ca_submits == 1 for o in orders())


def test_digicert_order_awaiting_approval_is_polled_not_placed_again(
    boot: Bootstrapped, emulator_tls: TlsIdentity, tmp_path: Path
) -> None:
    dc = DigiCertEmulator(emulator_tls, mode="needs_approval", auto_approve_after=2).start()
    try:
        user_id = add("Pat Pending", "pat@example.com")
        ca_id = digicert(dc, emulator_tls)
        outcome = smime_rollout(user_ids=[user_id], ca_connector_id=ca_id, delivery_dir=str(tmp_path))
        assert status(user_id) is SmimeStatus.CERTIFICATE_INSTALLED
        check_delivered(outcome[str(user_id)], "pat@example.com", dc.ca.intermediate.subject)
        (order,) = dc.orders.values()
        assert order.polls >= 3  # polled while it waited for approval
        assert dc.placed == 1
        assert dc.duplicates == 0
        assert [o.ca_order_id for o in orders()] == [str(order.id)]
    finally:
        dc.stop()


def test_emsign_smime_pending_approval_polled_and_a_lost_answer_never_orders_twice(
    boot: Bootstrapped, emulator_tls: TlsIdentity, tmp_path: Path
) -> None:
    em = EmSignEmulator(emulator_tls, mode="pending_approval", auto_verify_after=1, lose_answers=1).start()
    try:
        user_id = add("Eve Emsign", "eve@example.com")
        ca_id = emsign(em, emulator_tls)
        outcome = smime_rollout(user_ids=[user_id], ca_connector_id=ca_id, delivery_dir=str(tmp_path))
        assert status(user_id) is SmimeStatus.CERTIFICATE_INSTALLED
        check_delivered(outcome[str(user_id)], "eve@example.com", em.ca.intermediate.subject)
        (placed,) = em.orders.values()  # the first answer was lost; the retry found the order by its remarks
        assert placed.smime
        assert placed.details["productCode"] == "894"
        assert placed.details["certificateInformation"] == {"emailAddress": "eve@example.com"}
        (order,) = orders()
        assert order.ca_order_id == placed.number
        assert order.ca_submits == 2
        assert smime_rollout(user_ids=[user_id], ca_connector_id=ca_id, delivery_dir=str(tmp_path)) == {}
        assert em.placed == 1
    finally:
        em.stop()


def test_a_product_the_ca_refuses_fails_the_users_order_with_the_cas_reason(
    boot: Bootstrapped, emsign_emulator: EmSignEmulator, emulator_tls: TlsIdentity, tmp_path: Path
) -> None:
    user_id = add("Ray Refused", "ray@example.com")
    ca_id = emsign(emsign_emulator, emulator_tls, smime_product_code="838")  # an SSL product

    state = smime_rollout(user_ids=[user_id], ca_connector_id=ca_id, delivery_dir=str(tmp_path), return_state=True)

    assert isinstance(state, State)
    assert state.is_failed()
    (order,) = orders()
    assert order.state == "Failed"
    assert order.error is not None
    assert "EMS-1103" in order.error
    assert "838 is not an S/MIME product" in order.error
    assert emsign_emulator.placed == 0
    assert status(user_id) is SmimeStatus.CSR_PENDING  # a later rollout opens a new order for the user


def test_digicert_rejected_order_fails_and_the_next_rollout_orders_anew(
    boot: Bootstrapped, digicert_emulator: DigiCertEmulator, emulator_tls: TlsIdentity, tmp_path: Path
) -> None:
    user_id = add("Rita Rejected", "rita@example.com")
    ca_id = digicert(digicert_emulator, emulator_tls)
    digicert_emulator.mode = "reject"
    state = smime_rollout(user_ids=[user_id], ca_connector_id=ca_id, delivery_dir=str(tmp_path), return_state=True)
    assert isinstance(state, State)
    assert state.is_failed()
    (failed,) = orders()
    assert failed.state == "Failed"
    assert "rejected" in (failed.error or "")
    digicert_emulator.mode = "issue"
    smime_rollout(user_ids=[user_id], ca_connector_id=ca_id, delivery_dir=str(tmp_path))
    assert status(user_id) is SmimeStatus.CERTIFICATE_INSTALLED
    assert [o.state for o in orders()] == ["Failed", "Certificate Installed"]
    assert digicert_emulator.placed == 2
