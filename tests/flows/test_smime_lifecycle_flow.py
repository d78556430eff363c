"""S/MIME lifecycle with the built-in CA: renewal by the renewal schedule (the TLS window rule and backoff, with a
controlled clock), revocation of a leaver's certificates (the built-in CA's CRL lists them), and the rollout filter
picking exactly the matching users."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from sqlalchemy import select

from certfleet.connectors.errors import PermanentConnectorError
from certfleet.deployments.names import bot_queue
from certfleet.deployments.serve import register, runner_deployments
from certfleet.fields import InputError
from certfleet.flows.renewal import renew_expiring
from certfleet.flows.smime import smime_rollout
from certfleet.flows.smime_revocation import revoke_smime_user
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector, SmimeOrder, SmimeStatus, SmimeUser, utcnow
from certfleet.pki.keys import KeySpec, key_spec_of
from certfleet.smime import revocation, rollout, selection, service
from certfleet.smime.directory_sync import DISABLED, VANISHED
from certfleet.tasks.build import built_in_crl
from certfleet.tasks.smime_renewal import find_due_smime_users

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def add(name: str, email: str, source: str | None = None) -> int:
    with session_scope() as s:
        user = service.import_user(s, name=name, email=email, designation=None, actor="test")
        if source is not None:
            user.source = source
        return user.id


def user(user_id: int) -> SmimeUser:
    with session_scope() as s:
        u = repo.get(s, SmimeUser, user_id)
        s.expunge(u)
        return u


def orders(user_id: int) -> list[SmimeOrder]:
    with session_scope() as s:
        rows = list(s.scalars(select(SmimeOrder).where(SmimeOrder.user_id == user_id).order_by(SmimeOrder.id)))
        s.expunge_all()
        return rows


def crl_serials(connector_id: int) -> dict[int, x509.ReasonFlags | None]:
    with session_scope() as s:
        crl = x509.load_der_x509_crl(built_in_crl(s, repo.get(s, CAConnector, connector_id)))
    found: dict[int, x509.ReasonFlags | None] = {}
    for entry in crl:
        try:
            found[entry.serial_number] = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            found[entry.serial_number] = None
    return found


def leaf_of(p12: str) -> x509.Certificate:
    password = (Path(p12).parent / "password.txt").read_text().strip()
    _, leaf, _ = pkcs12.load_key_and_certificates(Path(p12).read_bytes(), password.encode())
    assert leaf is not None
    return leaf


def test_an_smime_certificate_inside_its_window_is_renewed_and_ignored_or_disabled_users_are_not(
    boot: Bootstrapped, tmp_path: Path
) -> None:
    alice = add("Alice Renew", "alice@example.com")
    ivy = add("Ivy Ignored", "ivy@example.com")
    dan = add("Dan Disabled", "dan@example.com")
    gus = add("Gus Gone", "gus@example.com")
    outcome = smime_rollout(delivery_dir=str(tmp_path), key="ec-p256")
    assert set(outcome) == {str(alice), str(ivy), str(dan), str(gus)}
    with session_scope() as s:
        service.ignore_email(s, ivy, "test")
        repo.get(s, SmimeUser, dan).directory_state = DISABLED
        repo.get(s, SmimeUser, gus).directory_state = VANISHED
    (first,) = orders(alice)
    assert first.not_before is not None
    assert first.expires_on is not None
    expires = first.expires_on
    lifetime = expires - first.not_before
    window = min(timedelta(days=30), lifetime / 3)  # the built-in CA connector has no policy of its own

    # The controlled clock: just issued, and just before the window, nothing is due; inside it, only Alice.
    assert find_due_smime_users.fn(utcnow()) == []
    assert find_due_smime_users.fn(expires - window - timedelta(hours=1)) == []
    inside = expires - window * 0.85  # past the jitter (at most 10 % of the window)
    (due,) = find_due_smime_users.fn(inside)
    assert (due.user_id, due.serial_number, due.attempt) == (alice, first.serial_number, 1)
    # Backoff: the same tick again starts nothing; an hour later (the first retry delay) it is tried again.
    assert find_due_smime_users.fn(inside + timedelta(minutes=30)) == []
    (again,) = find_due_smime_users.fn(inside + timedelta(hours=1, minutes=1))
    assert (again.user_id, again.attempt) == (alice, 2)
    assert user(alice).renewal_attempts == 2

    # The run renew-expiring starts for them: a new key and certificate, delivered again through the rollout.
    renewed = smime_rollout(user_ids=[alice, ivy, dan, gus], delivery_dir=str(tmp_path / "again"), renewal=True)
    assert set(renewed) == {str(alice)}
    after = user(alice)
    assert after.status is SmimeStatus.CERTIFICATE_INSTALLED
    assert (after.renewal_attempts, after.renewal_next_attempt_at) == (0, None)
    old, new = orders(alice)
    assert new.serial_number != old.serial_number
    assert after.expires_on == new.expires_on
    assert new.expires_on is not None
    assert new.expires_on > expires - timedelta(seconds=1)
    leaf = leaf_of(renewed[str(alice)])
    assert format(leaf.serial_number, "X") == (new.serial_number or "").lstrip("0")
    assert leaf.public_key() != leaf_of(outcome[str(alice)]).public_key()  # re-keyed
    assert key_spec_of(leaf.public_key()) == KeySpec(algorithm="ec", size=256)  # the replaced key's type, not RSA
    for untouched in (ivy, dan, gus):
        assert len(orders(untouched)) == 1
    assert user(ivy).status is SmimeStatus.IGNORED
    assert find_due_smime_users.fn(utcnow()) == []  # the new certificate is far from its window

    # Ignored, disabled and gone users are never due, however late it is; Alice's new certificate is, in time.
    late = expires - timedelta(hours=1)
    assert [d.user_id for d in find_due_smime_users.fn(late)] == [alice]


def _smime_runs(earlier: frozenset[UUID]) -> list[dict[str, object]]:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["renewal", "smime"])))
    return [dict(r.parameters) for r in runs if r.id not in earlier]


def test_renew_expiring_starts_one_smime_rollout_run_for_the_due_users(boot: Bootstrapped, tmp_path: Path) -> None:
    with get_client(sync_client=True) as client:
        earlier = frozenset(
            r.id
            for r in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["renewal", "smime"]))
            )
        )
    register(runner_deployments(bot_queue(boot.local_bot_id)))  # registered, not served: the run waits
    due_user = add("Dora Due", "dora@example.com")
    fresh = add("Fred Fresh", "fred@example.com")
    smime_rollout(delivery_dir=str(tmp_path))
    with session_scope() as s:  # Dora's certificate is old: 80 days of 90 gone
        now = utcnow()
        for o in s.scalars(select(SmimeOrder).where(SmimeOrder.user_id == due_user)):
            o.not_before, o.expires_on = now - timedelta(days=80), now + timedelta(days=10)
        repo.get(s, SmimeUser, due_user).expires_on = now + timedelta(days=10)

    assert renew_expiring() == 1
    assert _smime_runs(earlier) == [{"user_ids": [due_user], "renewal": True}]
    assert user(due_user).renewal_attempts == 1
    assert user(fresh).renewal_attempts == 0
    assert renew_expiring() == 0  # the next tick waits for the backoff: no second run
    assert len(_smime_runs(earlier)) == 1


def test_a_leavers_certificates_are_revoked_and_listed_in_the_built_in_cas_crl(
    boot: Bootstrapped, tmp_path: Path
) -> None:
    leaver = add("Lea Leaver", "lea@example.com")
    stays = add("Sam Stays", "sam@example.com")
    smime_rollout(delivery_dir=str(tmp_path))
    # Renewed once before she left: the previous certificate is still valid too.
    smime_rollout(user_ids=[leaver], delivery_dir=str(tmp_path / "renewed"), renewal=True)
    with session_scope() as s:  # then the directory sync flags her
        repo.get(s, SmimeUser, leaver).directory_state = DISABLED
    serials = [o.serial_number for o in orders(leaver)]
    assert len(serials) == 2
    assert all(serials)
    with session_scope() as s:
        flagged = revocation.check_revocable(s, leaver)
        assert flagged.leaver
        assert sorted(flagged.serials) == sorted(serials)  # type: ignore[type-var]
        assert revocation.leavers_to_revoke(s) == 1
        assert service.counts(s)["leavers_to_revoke"] == 1

    revoked = revoke_smime_user(leaver, revocation.LEAVER_REASON)
    assert sorted(revoked) == sorted(serials)
    u = user(leaver)
    assert u.status is SmimeStatus.REVOKED
    assert u.revocation_reason == "cessationOfOperation"
    assert u.revoked_at is not None
    assert abs(u.revoked_at - utcnow()) < timedelta(minutes=5)
    assert u.directory_state == DISABLED  # still listed, never deleted
    assert all(o.state == "Revoked" and o.revoked_at is not None for o in orders(leaver))
    listed = crl_serials(boot.ca_connector_id)
    for serial in serials:
        assert listed[int(serial or "", 16)] is x509.ReasonFlags.cessation_of_operation
    (sam_order,) = orders(stays)
    assert int(sam_order.serial_number or "", 16) not in listed

    # A re-run is done, not failed; the refusal says why; renewal and rollout leave a Revoked user alone.
    assert revoke_smime_user(leaver, revocation.LEAVER_REASON) == []
    with session_scope() as s, pytest.raises(InputError, match="already revoked"):
        revocation.check_revocable(s, leaver)
    with session_scope() as s:
        repo.get(s, SmimeUser, leaver).directory_state = None  # even back in the directory
        counts = service.counts(s)
    assert counts["revoked"] == 1
    assert counts["leavers_to_revoke"] == 0
    assert counts["orders"] == 3
    assert counts["orders_issued"] == 3  # the CA issued each of them; two were since revoked
    assert smime_rollout(user_ids=[leaver], delivery_dir=str(tmp_path), renewal=True) == {}
    assert [d.user_id for d in find_due_smime_users.fn(utcnow() + timedelta(days=3650))] == [stays]


def test_revoke_on_request_of_one_serial_and_refusals(boot: Bootstrapped, tmp_path: Path) -> None:
    kim = add("Kim Key", "kim@example.com")
    nobody = add("Nia Nothing", "nia@example.com")
    smime_rollout(user_ids=[kim], delivery_dir=str(tmp_path))
    (order,) = orders(kim)
    with session_scope() as s:
        with pytest.raises(InputError, match="no valid certificate"):
            revocation.check_revocable(s, nobody)
        with pytest.raises(InputError, match=r"was not issued to kim@example\.com"):
            revocation.check_revocable(s, kim, "ABCDEF")
        with pytest.raises(InputError, match="upper-case hex"):
            revocation.check_revocable(s, kim, "not hex")
        with pytest.raises(InputError, match="RFC 5280"):
            revocation.flow_parameters(s, kim, "key_compromise")
        assert revocation.flow_parameters(s, kim, "keyCompromise", order.serial_number) == {
            "user_id": kim,
            "reason": "keyCompromise",
            "serial_number": order.serial_number,
        }
    with session_scope() as s:  # a renewal under way: its key and CSR are made, the CA has not issued yet
        waiting = rollout.open_order(s, kim, None)
    with session_scope() as s:
        rollout.make_csr(s, waiting)
    assert revoke_smime_user(kim, "keyCompromise", order.serial_number) == [order.serial_number]
    u = user(kim)
    assert (u.status, u.revocation_reason) == (SmimeStatus.REVOKED, "keyCompromise")
    cancelled = orders(kim)[-1]
    assert (cancelled.id, cancelled.state, cancelled.private_key) == (waiting, "Cancelled", None)
    with session_scope() as s, pytest.raises(PermanentConnectorError, match="Cancelled: nothing to issue"):
        rollout.next_ca_call(s, waiting)  # a rollout that was waiting on it asks the CA for nothing
    assert crl_serials(boot.ca_connector_id)[int(order.serial_number or "", 16)] is x509.ReasonFlags.key_compromise


def _users(specs: list[tuple[str, str, str, SmimeStatus]]) -> dict[str, int]:
    ids = {}
    with session_scope() as s:
        for name, email, source, status in specs:
            u = SmimeUser(name=name, email=email, source=source, status=status, created_at=utcnow())
            s.add(u)
            s.flush()
            ids[email] = u.id
    return ids


def test_the_rollout_filter_picks_exactly_the_matching_users(boot: Bootstrapped, tmp_path: Path) -> None:
    ids = _users(
        [
            ("Anna Sales", "anna@sales.example.com", "Azure AD – Sales", SmimeStatus.AWAITING_ORDER),
            ("Ben Sales", "ben@sales.example.com", "Azure AD – Sales", SmimeStatus.CSR_PENDING),
            ("Cara Ops", "cara@ops.example.com", "Manual Import", SmimeStatus.AWAITING_ORDER),
            ("Dirk 100%_Sales", "dirk@ops.example.com", "Manual Import", SmimeStatus.AWAITING_ORDER),
            ("Eve Installed", "eve@sales.example.com", "Azure AD – Sales", SmimeStatus.CERTIFICATE_INSTALLED),
            ("Finn Ignored", "finn@sales.example.com", "Azure AD – Sales", SmimeStatus.IGNORED),
        ]
    )
    F = selection.UserFilter

    def picked(wanted: selection.UserFilter, user_ids: list[int] | None = None) -> set[str]:
        by_id = {v: k for k, v in ids.items()}
        with session_scope() as s:
            return {by_id[i] for i in selection.matching(s, user_ids, selection.check(s, wanted))}

    sales = {"anna@sales.example.com", "ben@sales.example.com"}
    assert picked(F(source="Azure AD – Sales")) == sales
    assert picked(F(source="Azure AD – Sales", status=[SmimeStatus.AWAITING_ORDER])) == {"anna@sales.example.com"}
    # any letter case, in the name or the address; Eve (installed) and Finn (ignored) are never ordered for
    assert picked(F(text="SALES")) == sales | {"dirk@ops.example.com"}
    assert picked(F(text="SALES", source="Azure AD – Sales")) == sales
    assert picked(F(text="100%_")) == {"dirk@ops.example.com"}  # wildcards are literal
    assert picked(F(text="%")) == {"dirk@ops.example.com"}
    assert picked(F(text="ops.example")) == {"cara@ops.example.com", "dirk@ops.example.com"}
    assert picked(F(text="nobody")) == set()
    assert picked(F(source="Manual Import"), [ids["cara@ops.example.com"]]) == {"cara@ops.example.com"}
    assert picked(F()) == sales | {"cara@ops.example.com", "dirk@ops.example.com"}
    with session_scope() as s:
        with pytest.raises(InputError, match="source: no S/MIME user has the source 'Azure AD – sales'"):
            selection.check(s, F(source="Azure AD – sales"))  # exact, as listed
        with pytest.raises(InputError, match="status: a rollout orders only"):
            selection.check(s, F(status=[SmimeStatus.CERTIFICATE_INSTALLED]))
        with pytest.raises(InputError, match="profile_id"):
            selection.check(s, F(profile_id=999))

    # The flow orders for exactly those users.
    done = smime_rollout(user_filter=F(source="Manual Import", text="cara"), delivery_dir=str(tmp_path))
    assert set(done) == {str(ids["cara@ops.example.com"])}
    assert user(ids["dirk@ops.example.com"]).status is SmimeStatus.AWAITING_ORDER
