"""smime-rollout with the built-in CA: order row, key + CSR, issue with the S/MIME profile, PKCS#12 with a generated
password in the user's folder; statuses and Expiry Date follow; ignored and flagged users are left alone; a re-run
never orders twice."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID
from prefect.states import State
from sqlalchemy import select

from certfleet.flows.smime import smime_rollout
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector, SmimeOrder, SmimeStatus, SmimeUser
from certfleet.smime import service
from certfleet.smime.directory_sync import VANISHED

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def add(name: str, email: str) -> int:
    with session_scope() as s:
        return service.import_user(s, name=name, email=email, designation=None, actor="test").id


def user(user_id: int) -> SmimeUser:
    with session_scope() as s:
        u = s.get(SmimeUser, user_id)
        assert u is not None
        s.expunge(u)
        return u


def orders() -> list[SmimeOrder]:
    with session_scope() as s:
        rows = list(s.scalars(select(SmimeOrder).order_by(SmimeOrder.id)))
        s.expunge_all()
        return rows


def test_rollout_issues_and_delivers_pkcs12_per_user(boot: Bootstrapped, tmp_path: Path) -> None:
    alice = add("Alice Example", "alice@example.com")
    bob = add("Bob Example", "Bob.Example@example.com")
    ignored = add("Ivy Ignored", "ivy@example.com")
    gone = add("Gus Gone", "gus@example.com")
    with session_scope() as s:
        service.ignore_email(s, ignored, "test")
        u = s.get(SmimeUser, gone)
        assert u is not None
        u.directory_state = VANISHED
    delivery = tmp_path / "share"

    outcome = smime_rollout(delivery_dir=str(delivery))

    assert set(outcome) == {str(alice), str(bob)}
    for user_id, email in ((alice, "alice@example.com"), (bob, "Bob.Example@example.com")):
        u = user(user_id)
        assert u.status is SmimeStatus.CERTIFICATE_INSTALLED
        folder = delivery / email
        p12 = folder / f"{email}.p12"
        assert outcome[str(user_id)] == str(p12)
        assert stat.S_IMODE(p12.stat().st_mode) == 0o600
        password = (folder / "password.txt").read_text().strip()
        key, leaf, chain = pkcs12.load_key_and_certificates(p12.read_bytes(), password.encode())
        assert key is not None
        assert leaf is not None
        assert len(chain) == 2  # issuing CA and root
        assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.RFC822Name) == [email]
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.digital_signature
        assert ku.key_encipherment
        assert u.expires_on is not None
        assert u.expires_on == leaf.not_valid_after_utc.replace(tzinfo=u.expires_on.tzinfo)
    assert user(ignored).status is SmimeStatus.IGNORED
    assert user(gone).status is SmimeStatus.AWAITING_ORDER
    made = orders()
    assert sorted(o.user_id for o in made) == [alice, bob]
    assert all(o.state == "Certificate Installed" and o.private_key is None for o in made)
    assert all(o.ca_connector_id == boot.ca_connector_id for o in made)

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as c:
        (progress,) = c.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["smime-rollout"]))
        )
    assert progress.type == "progress"
    assert float(progress.data) == 100.0  # type: ignore[arg-type]
    assert smime_rollout(delivery_dir=str(delivery)) == {}  # nothing awaits an order: no second order
    assert len(orders()) == 2


def test_a_user_whose_step_fails_is_reported_and_the_others_go_on(boot: Bootstrapped, tmp_path: Path) -> None:
    ok = add("Olga Ok", "olga@example.com")
    bad = add("Ben Bad", "ben@example.com")
    with session_scope() as s:
        remote = CAConnector(kind="acme", name="ACME", settings={})
        s.add(remote)
        s.flush()
        remote_id = remote.id
    state = smime_rollout(user_ids=[bad], ca_connector_id=remote_id, delivery_dir=str(tmp_path), return_state=True)
    assert isinstance(state, State)
    assert state.is_failed()
    assert user(bad).status is SmimeStatus.AWAITING_ORDER  # refused before any order was written
    assert orders() == []
    assert set(smime_rollout(user_ids=[ok, bad], delivery_dir=str(tmp_path))) == {str(ok), str(bad)}
    assert user(ok).status is SmimeStatus.CERTIFICATE_INSTALLED
    assert user(bad).status is SmimeStatus.CERTIFICATE_INSTALLED


def test_a_user_failing_inside_a_chunk_fails_alone_and_a_rerun_delivers_without_ordering_again(
    boot: Bootstrapped, tmp_path: Path
) -> None:
    from certfleet.flows.smime import chunk_size

    ids = [add(f"User {n}", f"user{n}@example.com") for n in range(10)]
    assert chunk_size(len(ids)) == 2  # users 0 and 1 share a chunk (every step of it is one task run)
    assert chunk_size(1_000) == chunk_size(10_000) == 100  # at most 100 users a chunk
    delivery = tmp_path / "share"
    delivery.mkdir()
    (delivery / "user1@example.com").write_text("a file where the user's folder goes")

    state = smime_rollout(user_ids=ids, delivery_dir=str(delivery), key="p256", return_state=True)

    assert isinstance(state, State)
    assert state.is_failed()
    assert [user(i).status for i in ids] == [
        SmimeStatus.CERTIFICATE_ISSUED if i == ids[1] else SmimeStatus.CERTIFICATE_INSTALLED for i in ids
    ]
    assert (delivery / "user0@example.com" / "user0@example.com.p12").is_file()  # its chunk mate was delivered
    blocked = next(o for o in orders() if o.user_id == ids[1])
    assert blocked.error is not None
    assert "cannot create the folder" in blocked.error
    assert len(orders()) == 10

    (delivery / "user1@example.com").unlink()
    outcome = smime_rollout(user_ids=ids, delivery_dir=str(delivery), key="p256")

    assert outcome == {str(ids[1]): str(delivery / "user1@example.com" / "user1@example.com.p12")}
    assert user(ids[1]).status is SmimeStatus.CERTIFICATE_INSTALLED
    assert len(orders()) == 10  # delivered from the sealed PKCS#12: never ordered again
