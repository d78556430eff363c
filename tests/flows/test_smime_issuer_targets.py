"""smime-rollout on SQLite and PostgreSQL: a renewal orders from the CA connector that issued the certificate it
replaces (falling back, and saying so, only when that connector is disabled); each directory profile's users are
delivered to the profile's own target (else the S/MIME delivery setting's), or a run names one target for all; a
Revoked user is left alone by every rollout until re-enrolled on purpose."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select, text

from certfleet.ca_admin import service as ca_admin
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.dashboard.services.smime import OPEN_ORDER_ERROR
from certfleet.fields import InputError
from certfleet.flows.smime import smime_rollout
from certfleet.flows.smime_revocation import revoke_smime_user
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, CAConnector, DirectoryProfile, SmimeOrder, SmimeStatus, SmimeUser
from certfleet.smime import delivery, delivery_targets, rollout, service
from certfleet.smime.directory_sync import DISABLED
from certfleet.smime.selection import UserFilter
from tests.flows.test_smime_delivery import mail_setting, password_of
from tests.notifications.receivers import SMTP_PASSWORD, SmtpServer
from tests.notifications.receivers import smtp_server as smtp_server  # the fixture

GUID = "11111111-2222-3333-4444-555555555555"


def second_ca(name: str) -> int:
    """Another built-in CA connector (its own keys, made on first use)."""
    with session_scope() as s:
        row = CAConnector(kind="local", name=name, default_validity_days=90, settings={})
        s.add(row)
        s.flush()
        return row.id


def profile(name: str, ca_connector_id: int | None = None) -> int:
    with session_scope() as s:
        fields = service.ProfileFields(GUID, "client secret", GUID, name, ca_connector_id)
        return service.save_profile(s, fields, "test").id


def add(name: str, email: str, profile_id: int | None = None) -> int:
    with session_scope() as s:
        user = service.import_user(s, name=name, email=email, designation=None, actor="test")
        if profile_id is not None:
            user.profile_id = profile_id
            user.source = repo.get(s, DirectoryProfile, profile_id).name
        return user.id


def orders(user_id: int) -> list[SmimeOrder]:
    with session_scope() as s:
        rows = list(s.scalars(select(SmimeOrder).where(SmimeOrder.user_id == user_id).order_by(SmimeOrder.id)))
        s.expunge_all()
        return rows


def issuer_cn(order: SmimeOrder) -> str:
    assert order.pem_chain is not None
    leaf = x509.load_pem_x509_certificates(order.pem_chain.encode())[0]
    return str(leaf.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def ca_cn(connector_id: int) -> str:
    with session_scope() as s:
        pem = repo.get(s, CAConnector, connector_id).settings["issuing_cert_pem"]
    cert = x509.load_pem_x509_certificate(pem.encode())
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def test_a_renewal_orders_from_the_connector_that_issued_the_current_certificate(
    boot: Bootstrapped, tmp_path: Path
) -> None:
    ca_a = boot.ca_connector_id
    ca_b = second_ca("Second CA")
    sales = profile("Azure AD – Sales", ca_a)
    alice = add("Alice Sales", "alice@example.com", sales)
    assert set(smime_rollout(delivery_dir=str(tmp_path / "first"))) == {str(alice)}
    (first,) = orders(alice)
    assert first.ca_connector_id == ca_a

    # The profile's connector is now B: a new user is ordered from B, Alice's renewal still from A.
    with session_scope() as s:
        repo.get(s, DirectoryProfile, sales).ca_connector_id = ca_b
    bob = add("Bob Sales", "bob@example.com", sales)
    smime_rollout(user_ids=[bob], delivery_dir=str(tmp_path / "bob"))
    (bobs,) = orders(bob)
    assert bobs.ca_connector_id == ca_b
    assert issuer_cn(bobs) == ca_cn(ca_b)
    assert ca_cn(ca_a) != ca_cn(ca_b)

    renewed = smime_rollout(user_ids=[alice], delivery_dir=str(tmp_path / "renew1"), renewal=True)
    assert set(renewed) == {str(alice)}
    _, second = orders(alice)
    assert second.ca_connector_id == ca_a
    assert issuer_cn(second) == ca_cn(ca_a)
    assert second.connector_note is None
    assert second.serial_number != first.serial_number

    # A is disabled: the renewal falls back to the chosen one (the profile's, B) and says so on the order, in the
    # user's Last Error and in the audit.
    with session_scope() as s:
        ca_admin.disable_connector(s, ca_a, actor="test")
    smime_rollout(user_ids=[alice], delivery_dir=str(tmp_path / "renew2"), renewal=True)
    *_, third = orders(alice)
    assert third.ca_connector_id == ca_b
    assert issuer_cn(third) == ca_cn(ca_b)
    assert third.state == SmimeStatus.CERTIFICATE_INSTALLED.value
    note = f"CA connector {boot_ca_name(ca_a)}, which issued the current certificate, is disabled: renewed from " \
        "Second CA instead"  # fmt: skip
    assert third.connector_note == note
    with session_scope() as s:
        assert s.scalar(select(OPEN_ORDER_ERROR).select_from(SmimeUser).where(SmimeUser.id == alice)) == note
        audit = s.scalars(select(AuditEvent).where(AuditEvent.action == "smime-renewal-connector")).all()
        assert [(a.object_id, a.outcome, a.detail) for a in audit] == [
            (str(alice), "warning", f"alice@example.com: {note}")
        ]
    # The next renewal goes to B (which issued the current certificate) with nothing to say.
    smime_rollout(user_ids=[alice], delivery_dir=str(tmp_path / "renew3"), renewal=True)
    fourth = orders(alice)[-1]
    assert (fourth.ca_connector_id, fourth.connector_note) == (ca_b, None)

    # A first order (no renewal) is refused from a disabled connector, with the reason.
    carl = add("Carl Chosen", "carl@example.com")
    with session_scope() as s, pytest.raises(PermanentConnectorError, match="is disabled: it places no new orders"):
        rollout.open_order(s, carl, ca_a)


def boot_ca_name(connector_id: int) -> str:
    with session_scope() as s:
        return repo.get(s, CAConnector, connector_id).name


def leaf_email(p12: str) -> str:
    password = (Path(p12).parent / "password.txt").read_text().strip()
    _, leaf, _ = pkcs12.load_key_and_certificates(Path(p12).read_bytes(), password.encode())
    assert leaf is not None
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    (address,) = sans.get_values_for_type(x509.RFC822Name)
    return address


def test_each_profiles_users_are_delivered_to_its_own_target(boot: Bootstrapped, tmp_path: Path) -> None:
    sales, ops = profile("Azure AD – Sales"), profile("Azure AD – Ops")
    with session_scope() as s:
        delivery.save_setting(s, {"method": "folder", "path": str(tmp_path / "global")}, "test")
        delivery_targets.save_profile_delivery(s, sales, {"method": "folder", "path": str(tmp_path / "sales")}, "t")
        delivery_targets.save_profile_delivery(s, ops, {"method": "folder", "path": str(tmp_path / "ops")}, "t")
    ann = add("Ann Sales", "ann@example.com", sales)
    oli = add("Oli Ops", "oli@example.com", ops)
    max_ = add("Max Manual", "max@example.com")

    done = smime_rollout()
    assert done == {
        str(ann): str(tmp_path / "sales" / "ann@example.com" / "ann@example.com.p12"),
        str(oli): str(tmp_path / "ops" / "oli@example.com" / "oli@example.com.p12"),
        str(max_): str(tmp_path / "global" / "max@example.com" / "max@example.com.p12"),
    }
    for path in done.values():
        assert leaf_email(path) == Path(path).parent.name  # each user's own certificate
    assert sorted(p.name for p in (tmp_path / "sales").iterdir()) == ["ann@example.com"]
    assert sorted(p.name for p in (tmp_path / "ops").iterdir()) == ["oli@example.com"]

    # Cleared, the profile's users go to the setting's target again.
    with session_scope() as s:
        delivery_targets.clear_profile_delivery(s, ops, "test")
    pia = add("Pia Ops", "pia@example.com", ops)
    assert smime_rollout(user_ids=[pia]) == {
        str(pia): str(tmp_path / "global" / "pia@example.com" / "pia@example.com.p12")
    }

    # A run names one target for all its users: a profile's, the setting's, or a folder.
    sue = add("Sue Ops", "sue@example.com", ops)
    tom = add("Tom Manual", "tom@example.com")
    assert smime_rollout(user_ids=[sue, tom], delivery=f"profile:{sales}") == {
        str(sue): str(tmp_path / "sales" / "sue@example.com" / "sue@example.com.p12"),
        str(tom): str(tmp_path / "sales" / "tom@example.com" / "tom@example.com.p12"),
    }
    uma = add("Uma Sales", "uma@example.com", sales)
    assert smime_rollout(user_ids=[uma], delivery="setting") == {
        str(uma): str(tmp_path / "global" / "uma@example.com" / "uma@example.com.p12")
    }
    vic = add("Vic Sales", "vic@example.com", sales)
    assert smime_rollout(user_ids=[vic], delivery=f"folder:{tmp_path / 'run'}") == {
        str(vic): str(tmp_path / "run" / "vic@example.com" / "vic@example.com.p12")
    }

    with session_scope() as s:
        for choice, message in (
            ("nowhere", "delivery: one of setting, profile:<id> or folder:<absolute path>, not 'nowhere'"),
            ("profile:999", "delivery: there is no directory profile '999'"),
            (f"profile:{ops}", "has no delivery target of its own"),
            ("folder:relative/dir", "delivery: folder:"),
        ):
            with pytest.raises(InputError, match=message) as refused:
                delivery_targets.run_target(s, choice)
            assert refused.value.field == "delivery"
    # A bad choice fails the run before anything is ordered.
    wes = add("Wes Waiting", "wes@example.com")
    state = smime_rollout(user_ids=[wes], delivery="profile:999", return_state=True)
    assert state.is_failed()
    assert orders(wes) == []


def test_a_profile_with_an_e_mail_target_mails_its_users_through_its_own_smtp_login(
    boot: Bootstrapped, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """The SMTP password is sealed on the profile and used at delivery; the other profile's users go to its
    folder."""
    mail, files = profile("Azure AD – Mail"), profile("Azure AD – Files")
    with session_scope() as s:
        body = {**mail_setting(smtp_server), "sender": "pki@sales.example.org"}
        delivery_targets.save_profile_delivery(s, mail, body, "test")
        delivery_targets.save_profile_delivery(s, files, {"method": "folder", "path": str(tmp_path / "files")}, "t")
        raw = s.execute(text("SELECT delivery_secret FROM directory_profiles WHERE id = :i"), {"i": mail}).scalar_one()
    assert SMTP_PASSWORD not in raw
    ann = add("Ann Mail", "ann@example.com", mail)
    fin = add("Fin Files", "fin@example.com", files)

    assert smime_rollout() == {
        str(ann): f"e-mail to ann@example.com via 127.0.0.1:{smtp_server.port}",
        str(fin): str(tmp_path / "files" / "fin@example.com" / "fin@example.com.p12"),
    }
    (env1, first), (env2, second) = smtp_server.handler.messages
    assert env1.rcpt_tos == env2.rcpt_tos == ["ann@example.com"]
    assert env1.mail_from == "pki@sales.example.org"
    (part,) = list(first.iter_attachments())
    bundle = part.get_payload(decode=True)
    assert isinstance(bundle, bytes)
    _, leaf, _ = pkcs12.load_key_and_certificates(bundle, password_of(second).encode())
    assert leaf is not None
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.RFC822Name) == ["ann@example.com"]
    assert leaf_email(str(tmp_path / "files" / "fin@example.com" / "fin@example.com.p12")) == "fin@example.com"


def test_a_revoked_user_is_left_alone_by_rollouts_until_re_enrolled(boot: Bootstrapped, tmp_path: Path) -> None:
    rita = add("Rita Revoked", "rita@example.com")
    smime_rollout(delivery_dir=str(tmp_path))
    (first,) = orders(rita)
    assert revoke_smime_user(rita, "keyCompromise") == [first.serial_number]
    # Neither an "every user awaiting" rollout, nor one naming her, nor a renewal picks her.
    ned = add("Ned New", "ned@example.com")
    assert set(smime_rollout(delivery_dir=str(tmp_path))) == {str(ned)}
    assert smime_rollout(user_ids=[rita], delivery_dir=str(tmp_path)) == {}
    assert smime_rollout(user_ids=[rita], delivery_dir=str(tmp_path), renewal=True) == {}
    assert smime_rollout(user_filter=UserFilter(text="rita"), delivery_dir=str(tmp_path)) == {}
    assert len(orders(rita)) == 1

    with session_scope() as s:
        with pytest.raises(InputError, match="is Certificate Installed, not Revoked"):
            service.reenroll(s, ned, "test")
        repo.get(s, SmimeUser, rita).directory_state = DISABLED
    with session_scope() as s, pytest.raises(InputError, match="disabled in directory: enable the user"):
        service.reenroll(s, rita, "test")
    with session_scope() as s:
        repo.get(s, SmimeUser, rita).directory_state = None
        user = service.reenroll(s, rita, "ops")
        assert (user.status, user.revocation_reason, user.revoked_at, user.expires_on) == (
            SmimeStatus.AWAITING_ORDER,
            None,
            None,
            None,
        )
        (event,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "reenroll-smime-user")).all()
        assert (event.actor, event.object_id) == ("ops", str(rita))
        assert event.detail is not None
        assert event.detail.startswith("rita@example.com: Revoked (keyCompromise, ")
        assert event.detail.endswith(") -> Awaiting Order")

    again = smime_rollout(delivery_dir=str(tmp_path / "again"))
    assert set(again) == {str(rita)}
    old, new = orders(rita)
    assert (old.state, new.state) == ("Revoked", SmimeStatus.CERTIFICATE_INSTALLED.value)
    assert new.serial_number != old.serial_number
    assert leaf_email(again[str(rita)]) == "rita@example.com"
    with session_scope() as s:
        assert repo.get(s, SmimeUser, rita).status is SmimeStatus.CERTIFICATE_INSTALLED
