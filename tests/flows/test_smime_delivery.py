"""smime-rollout delivering to the S/MIME delivery setting's target: two e-mails through a real SMTP server
(aiosmtpd, STARTTLS + AUTH) and a per-user folder on a real Samba share. A refused delivery leaves the user at
Certificate Issued with the reason; a later run delivers the same PKCS#12 without ordering again."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID
from prefect.states import State
from sqlalchemy import select

from certfleet.flows.smime import smime_rollout
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, SmimeOrder, SmimeStatus, SmimeUser
from certfleet.smime import delivery, service
from tests.integration.smbd import SMB_PASSWORD, SMB_USER, Smbd, running_smbd
from tests.notifications.receivers import SMTP_PASSWORD, SMTP_USER, SmtpServer
from tests.notifications.receivers import smtp_server as smtp_server  # the fixture

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

ADDRESS = "alice@example.com"


@pytest.fixture(scope="module")
def smbd() -> Iterator[Smbd]:
    with running_smbd() as server:
        yield server


def add_user(email: str = ADDRESS) -> int:
    with session_scope() as s:
        return service.import_user(s, name="Alice Example", email=email, designation=None, actor="test").id


def configure(body: dict[str, Any]) -> None:
    with session_scope() as s:
        delivery.save_setting(s, body, "test")


def mail_setting(smtp: SmtpServer) -> dict[str, Any]:
    return {
        "method": "email",
        "host": "127.0.0.1",
        "port": smtp.port,
        "security": "starttls",
        "sender": "pki@example.org",
        "username": SMTP_USER,
        "password": SMTP_PASSWORD,
        "ca_file": smtp.ca_file,
    }


def status(user_id: int) -> SmimeStatus:
    with session_scope() as s:
        return s.get_one(SmimeUser, user_id).status


def the_order() -> SmimeOrder:
    with session_scope() as s:
        (order,) = s.scalars(select(SmimeOrder))
        s.expunge(order)
        return order


def run_failing(user_id: int) -> None:
    state = smime_rollout(user_ids=[user_id], return_state=True)
    assert isinstance(state, State)
    assert state.is_failed()


def check_bundle(data: bytes, password: str, email: str = ADDRESS) -> None:
    """The PKCS#12 opens with the password and holds the key and the user's S/MIME certificate."""
    key, leaf, chain = pkcs12.load_key_and_certificates(data, password.encode())
    assert key is not None
    assert leaf is not None
    assert len(chain) == 2
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [email]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku


def attachment(mail: EmailMessage) -> tuple[str, str, bytes]:
    (part,) = list(mail.iter_attachments())
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return part.get_filename() or "", part.get_content_type(), data


def password_of(mail: EmailMessage) -> str:
    body = mail.get_body(("plain",))
    assert body is not None
    found = re.search(r"is:\s+(\S+)\s", body.get_content())
    assert found, body.get_content()
    return found.group(1)


def audit_details() -> str:
    with session_scope() as s:
        return "\n".join(d or "" for d in s.scalars(select(AuditEvent.detail)))


def prefect_logs() -> str:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        return "\n".join(log.message for log in c.read_logs())


def test_email_delivery_sends_the_pkcs12_and_its_password_in_two_mails(
    boot: Bootstrapped, smtp_server: SmtpServer
) -> None:
    user_id = add_user()
    configure(mail_setting(smtp_server))

    outcome = smime_rollout()

    assert outcome == {str(user_id): f"e-mail to {ADDRESS} via 127.0.0.1:{smtp_server.port}"}
    assert status(user_id) is SmimeStatus.CERTIFICATE_INSTALLED
    (env1, first), (env2, second) = smtp_server.handler.messages
    assert env1.rcpt_tos == env2.rcpt_tos == [ADDRESS]
    assert env1.mail_from == "pki@example.org"
    assert first["Subject"] == f"Your S/MIME certificate for {ADDRESS}"
    assert second["Subject"] == f"Password for your S/MIME certificate ({ADDRESS})"
    name, content_type, bundle = attachment(first)
    assert (name, content_type) == (f"{ADDRESS}.p12", "application/x-pkcs12")
    assert list(second.iter_attachments()) == []
    password = password_of(second)
    assert len(password) >= 24
    assert password not in first.as_string()
    check_bundle(bundle, password)
    order = the_order()
    assert order.state == SmimeStatus.CERTIFICATE_INSTALLED.value
    assert (order.private_key, order.pkcs12, order.pkcs12_password, order.error) == (None, None, None, None)
    assert password not in audit_details()
    assert password not in prefect_logs()
    assert smime_rollout() == {}  # delivered: nothing is sent again
    assert len(smtp_server.handler.messages) == 2


def test_a_refusing_smtp_server_leaves_the_user_issued_and_a_later_run_delivers_the_same_file(
    boot: Bootstrapped, smtp_server: SmtpServer
) -> None:
    user_id = add_user()
    configure(mail_setting(smtp_server))
    handler = smtp_server.handler
    handler.refuse = "550 5.7.1 mailbox unavailable"

    run_failing(user_id)

    assert status(user_id) is SmimeStatus.CERTIFICATE_ISSUED
    order = the_order()
    assert order.error is not None
    assert f"the PKCS#12 mail to {ADDRESS}" in order.error
    assert "550 5.7.1 mailbox unavailable" in order.error
    assert order.pkcs12_mailed_at is None
    assert handler.refused == 1  # a 5xx is final: no retry hammers the server

    handler.refuse_subject = "Password"  # the PKCS#12 mail goes, the password mail is refused
    run_failing(user_id)

    assert status(user_id) is SmimeStatus.CERTIFICATE_ISSUED
    order = the_order()
    assert order.error is not None
    assert f"the password mail to {ADDRESS}" in order.error
    assert order.pkcs12_mailed_at is not None
    assert order.pkcs12_password is not None
    with session_scope() as s:  # sealed at rest: the raw column never holds the password or the PKCS#12
        raw_password, raw_bundle = (
            s.connection().exec_driver_sql("SELECT pkcs12_password, pkcs12 FROM smime_orders").one()
        )
    assert order.pkcs12_password not in raw_password
    assert order.pkcs12 is not None
    assert order.private_key is None  # the sealed PKCS#12 replaced the key
    assert len(handler.messages) == 1

    handler.refuse = None
    assert smime_rollout(user_ids=[user_id]) == {str(user_id): f"e-mail to {ADDRESS} via 127.0.0.1:{smtp_server.port}"}

    assert status(user_id) is SmimeStatus.CERTIFICATE_INSTALLED
    (_, first), (_, second) = handler.messages  # the PKCS#12 was not mailed twice
    password = password_of(second)
    assert password == order.pkcs12_password
    check_bundle(attachment(first)[2], password)
    with session_scope() as s:
        assert len(list(s.scalars(select(SmimeOrder)))) == 1  # never ordered again
    assert the_order().error is None
    assert raw_bundle is not None


def test_smb_delivery_to_a_per_user_folder_and_a_wrong_password_is_retried_later(
    boot: Bootstrapped, smbd: Smbd
) -> None:
    user_id = add_user()
    share = {"method": "smb", "host": "127.0.0.1", "port": smbd.port, "share": "C$", "folder": "S-MIME\\Users",
             "username": SMB_USER}  # fmt: skip
    configure({**share, "password": "not the password"})

    run_failing(user_id)

    assert status(user_id) is SmimeStatus.CERTIFICATE_ISSUED
    error = the_order().error
    assert error is not None
    assert "wrong user name or password" in error
    assert not (smbd.share / "S-MIME").exists()

    configure({**share, "password": SMB_PASSWORD})
    outcome = smime_rollout(user_ids=[user_id])

    unc = f"\\\\127.0.0.1\\C$\\S-MIME\\Users\\{ADDRESS}\\{ADDRESS}.p12"
    assert outcome == {str(user_id): unc}
    assert status(user_id) is SmimeStatus.CERTIFICATE_INSTALLED
    folder = smbd.share / "S-MIME" / "Users" / ADDRESS
    assert sorted(p.name for p in folder.iterdir()) == [f"{ADDRESS}.p12", "password.txt"]  # no temporary file
    password = (folder / "password.txt").read_bytes()
    assert password.endswith(b"\r\n")
    check_bundle((folder / f"{ADDRESS}.p12").read_bytes(), password.decode().strip())
    order = the_order()
    assert (order.delivered_to, order.pkcs12, order.pkcs12_password, order.error) == (unc, None, None, None)
    with session_scope() as s:
        assert len(list(s.scalars(select(SmimeOrder)))) == 1


def test_an_unreachable_mail_server_is_worth_a_retry(database: str) -> None:
    """(A refusal is not: the refusing-server test sees one attempt.)"""
    from certfleet.connectors.errors import TransientConnectorError
    from certfleet.demo.listener import free_port
    from certfleet.smime.delivery import Target
    from certfleet.smime.senders import Parcel, by_email

    parcel = Parcel(ADDRESS, "Alice", b"p12", "pw")
    closed = Target("email", {"host": "127.0.0.1", "port": free_port(), "security": "none", "sender": "pki@x.org"})
    with pytest.raises(TransientConnectorError, match=f"the PKCS#12 mail to {ADDRESS}: SMTP 127.0.0.1"):
        by_email(closed, parcel, lambda: None)


def test_folder_delivery_follows_the_saved_setting(boot: Bootstrapped, tmp_path: Path) -> None:
    user_id = add_user()
    root = tmp_path / "nfs" / "smime"
    configure({"method": "folder", "path": str(root)})

    assert smime_rollout() == {str(user_id): str(root / ADDRESS / f"{ADDRESS}.p12")}

    folder = root / ADDRESS
    assert sorted(p.name for p in folder.iterdir()) == [f"{ADDRESS}.p12", "password.txt"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}
    check_bundle((folder / f"{ADDRESS}.p12").read_bytes(), (folder / "password.txt").read_text().strip())
    assert status(user_id) is SmimeStatus.CERTIFICATE_INSTALLED
