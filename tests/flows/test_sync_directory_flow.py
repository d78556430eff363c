"""sync-directory against the Entra ID + Graph emulator: users upserted with Name, Email, Designation and Source,
users without a usable mail reported, disabled and vanished users flagged (never deleted), throttling and token
expiry mid-sync waited out, and the profile showing when it synced, the counts and the error."""

from __future__ import annotations

import pytest
from prefect.states import State
from sqlalchemy import select

from certfleet.flows.smime import sync_directory
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, DirectoryProfile, SmimeStatus, SmimeUser
from certfleet.smime import service
from certfleet.smime.directory_sync import DISABLED, VANISHED
from tests.emulators.azure_ad import AzureADEmulator, make_user
from tests.emulators.fixtures import *  # noqa: F403 - the emulator fixtures

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@pytest.fixture
def profile_id(boot: Bootstrapped, azure_ad_emulator: AzureADEmulator) -> int:
    with session_scope() as s:
        profile = service.save_profile(
            s,
            service.ProfileFields(
                client_id=azure_ad_emulator.client_id,
                client_secret=azure_ad_emulator.client_secret,
                tenant_id=azure_ad_emulator.tenant_id,
                description="Azure AD – Production",
                authority_host=azure_ad_emulator.authority_host,
                graph_base=azure_ad_emulator.graph_base,
                ca_bundle_pem=azure_ad_emulator.tls.ca_pem,
            ),
            "test",
        )
        return profile.id


def users() -> dict[str, SmimeUser]:
    with session_scope() as s:
        rows = list(s.scalars(select(SmimeUser)))
        s.expunge_all()
    return {u.email: u for u in rows}


def profile(pid: int) -> DirectoryProfile:
    with session_scope() as s:
        p = s.get(DirectoryProfile, pid)
        assert p is not None
        s.expunge(p)
        return p


def test_sync_upserts_reports_and_flags(profile_id: int, azure_ad_emulator: AzureADEmulator) -> None:
    with session_scope() as s:
        service.import_user(s, name="Manual Mary", email="USER5@contoso.example", designation=None, actor="test")
    azure_ad_emulator.users = [make_user(n) for n in range(1200)] + [
        make_user(2000, mail=None, upn="nomail@contoso.example", job="Auditor"),
        make_user(2001, mail=None, upn="svc-backup#EXT#"),  # neither mail nor a mail-like UPN: reported
        make_user(2002, enabled=False),
        make_user(2003, name=" padded"),  # breaks the name rule: reported, not trimmed
    ]
    azure_ad_emulator.graph_faults = [(429, "0.25"), (503, "0.1")]
    azure_ad_emulator.expire_token_after_pages = 1

    result = sync_directory(profile_id)

    report = result[str(profile_id)]
    assert report["seen"] == 1204
    assert report["added"] == 1201  # 1200 + nomail + disabled, less the manually imported one taken over
    assert report["updated"] == 1
    assert report["reported"] == 2
    listed = users()
    assert len(listed) == 1202
    u7 = listed["user7@contoso.example"]
    assert (u7.name, u7.designation, u7.source, u7.status) == (
        "User 7", "Engineer", "Azure AD – Production", SmimeStatus.AWAITING_ORDER
    )  # fmt: skip
    assert listed["nomail@contoso.example"].designation == "Auditor"
    assert listed["user2002@contoso.example"].directory_state == DISABLED
    taken_over = listed["user5@contoso.example"]  # Graph's spelling of the address now
    assert taken_over.profile_id == profile_id
    assert taken_over.name == "User 5"
    p = profile(profile_id)
    assert p.last_sync_status == "Succeeded"
    assert p.last_sync_at is not None
    assert p.last_sync_error is None
    assert p.last_sync_report is not None
    assert any("svc-backup#EXT#" in problem for problem in p.last_sync_report["problems"])
    assert any("' padded'" in problem for problem in p.last_sync_report["problems"])
    assert azure_ad_emulator.expired_rejections >= 1  # the token expired mid-sync and was replaced

    # Second sync: one user left the tenant, one was disabled, one renamed; nothing is deleted.
    azure_ad_emulator.users = [u for u in azure_ad_emulator.users if u["userPrincipalName"] != "user3@contoso.example"]
    azure_ad_emulator.users[10]["accountEnabled"] = False
    azure_ad_emulator.users[11]["displayName"] = "Renamed Person"
    azure_ad_emulator.expire_token_after_pages = None
    report = sync_directory(profile_id)[str(profile_id)]
    assert report["vanished"] == 1
    assert report["updated"] == 2
    listed = users()
    assert len(listed) == 1202
    assert listed["user3@contoso.example"].directory_state == VANISHED
    assert listed[azure_ad_emulator.users[10]["mail"]].directory_state == DISABLED
    assert listed[azure_ad_emulator.users[11]["mail"]].name == "Renamed Person"


def test_bad_secret_fails_the_run_and_shows_on_the_profile(profile_id: int, azure_ad_emulator: AzureADEmulator) -> None:
    azure_ad_emulator.client_secret = "the-secret-was-rotated"
    azure_ad_emulator.users = [make_user(1)]
    state = sync_directory(profile_id, return_state=True)
    assert isinstance(state, State)
    assert state.is_failed()
    p = profile(profile_id)
    assert p.last_sync_status == "Failed"
    assert p.last_sync_error is not None
    assert "AADSTS7000215" in p.last_sync_error
    assert users() == {}
    assert azure_ad_emulator.bad_secret_attempts == 1  # a permanent error is not retried
    with session_scope() as s:
        audit = s.scalars(select(AuditEvent).where(AuditEvent.action == "sync-directory")).one()
        assert audit.outcome == "failure"
        assert "s3cr3t" not in (audit.detail or "")
