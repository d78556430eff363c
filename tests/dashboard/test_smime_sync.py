"""Directory profiles from the API and the pages: saving one starts a sync-directory run in Prefect, Sync now starts
another, the secret is never shown again, and the profile page shows when it synced, the counts and the error."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from certfleet.demo.listener import free_port
from certfleet.flows.smime import sync_directory
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, DirectoryProfile
from tests.dashboard.conftest import Accounts, auth, login
from tests.emulators.azure_ad import AzureADEmulator, make_user
from tests.emulators.fixtures import *  # noqa: F403 - the emulator fixtures

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def body(emulator: AzureADEmulator, description: str = "Azure AD – Production") -> dict[str, Any]:
    return {
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
        "tenant_id": emulator.tenant_id,
        "description": description,
        "authority_host": emulator.authority_host,
        "graph_base": emulator.graph_base,
        "ca_bundle_pem": emulator.tls.ca_pem,
    }


def scheduled_run(run_id: str) -> dict[str, Any]:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        run = c.read_flow_run(run_id)
    assert run.state is not None
    assert run.state.type.value == "SCHEDULED"
    return dict(run.parameters)


def parameters_of_runs(*names: str) -> dict[str, dict[str, Any]]:
    """The parameters of the named flow runs (filtered on the server: an unfiltered read returns only Prefect's
    default page of 200 runs, and the session's Prefect server holds every test's runs)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as c:
        runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=list(names))))
    return {r.name: dict(r.parameters) for r in runs}


def test_api_create_starts_a_sync_and_sync_now_starts_another(
    client: TestClient, accounts: Accounts, prefect_api: str, azure_ad_emulator: AzureADEmulator
) -> None:
    created = client.post("/api/v1/directory-profiles", json=body(azure_ad_emulator), headers=auth(accounts, "admin"))
    assert created.status_code == 201, created.text
    profile = created.json()
    assert azure_ad_emulator.client_secret not in created.text
    assert profile["has_client_secret"] is True
    assert profile["graph_base"] == azure_ad_emulator.graph_base
    assert profile["sync_error"] is None
    assert profile["sync_run"]["name"] == f"sync-directory-{profile['id']}"
    assert scheduled_run(profile["sync_run"]["id"]) == {"profile_id": profile["id"]}

    again = client.post(f"/api/v1/directory-profiles/{profile['id']}/sync", headers=auth(accounts, "operator"))
    assert again.status_code == 200, again.text
    assert scheduled_run(again.json()["id"]) == {"profile_id": profile["id"]}
    assert client.post("/api/v1/directory-profiles/999/sync", headers=auth(accounts, "operator")).status_code == 404
    with session_scope() as s:
        starts = s.query(AuditEvent).filter_by(action="start-sync-directory").count()
    assert starts == 2
    listed = client.get("/api/v1/directory-profiles", headers=auth(accounts, "viewer"))
    assert azure_ad_emulator.client_secret not in listed.text


def test_profile_is_kept_when_prefect_does_not_answer(
    client: TestClient, accounts: Accounts, azure_ad_emulator: AzureADEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    created = client.post("/api/v1/directory-profiles", json=body(azure_ad_emulator), headers=auth(accounts, "admin"))
    assert created.status_code == 201, created.text
    assert created.json()["sync_run"] is None
    assert "Prefect does not answer" in created.json()["sync_error"]
    with session_scope() as s:
        assert s.query(DirectoryProfile).count() == 1
    refused = client.post(f"/api/v1/directory-profiles/{created.json()['id']}/sync", headers=auth(accounts, "operator"))
    assert refused.status_code == 422
    assert "Prefect does not answer" in refused.text


def test_bad_endpoints_are_refused_naming_the_field(
    client: TestClient, accounts: Accounts, azure_ad_emulator: AzureADEmulator
) -> None:
    admin = auth(accounts, "admin")
    for field, value in (("authority_host", "http://login.example"), ("graph_base", " https://graph.example"),
                         ("ca_bundle_pem", "not a certificate")):  # fmt: skip
        refused = client.post(
            "/api/v1/directory-profiles", json={**body(azure_ad_emulator), field: value}, headers=admin
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == field


def test_profile_page_saves_starts_and_shows_counts_and_errors(
    client: TestClient, accounts: Accounts, prefect_api: str, azure_ad_emulator: AzureADEmulator
) -> None:
    csrf = login(client, "admin")
    form = {**body(azure_ad_emulator), "ca_connector_id": "", "csrf_token": csrf}
    saved = client.post("/smime/profiles", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    page = client.get("/smime/profiles").text
    assert "sync-directory-" in page  # the flash names the run
    assert azure_ad_emulator.client_secret not in page
    with session_scope() as s:
        (profile_id,) = [p.id for p in s.query(DirectoryProfile)]

    azure_ad_emulator.users = [make_user(1), make_user(2, enabled=False), make_user(3, mail=None, upn="svc#EXT#")]
    sync_directory(profile_id)  # what the worker runs
    page = client.get("/smime/profiles").text
    assert "(Succeeded)" in page
    assert "read 3, added 2" in page
    assert "disabled 1" in page
    assert "svc#EXT#: no mail" in page
    listing = client.get("/smime").text
    assert "user1@contoso.example" in listing
    assert "Azure AD – Production" in listing
    assert "Disabled in directory" in listing  # the Directory column is shown by default
    rows = client.get("/api/v1/smime-users?columns=email,directory_state", headers=auth(accounts, "viewer")).json()
    states = {r["email"]: r["directory_state"] for r in rows["items"]}
    assert states == {"user1@contoso.example": None, "user2@contoso.example": "Disabled in directory"}

    azure_ad_emulator.client_secret = "rotated-in-azure"
    sync_directory(profile_id, return_state=True)
    page = client.get("/smime/profiles").text
    assert "(Failed)" in page
    assert "AADSTS7000215" in page

    sync_now = client.post(f"/smime/profiles/{profile_id}/sync", data={"csrf_token": csrf}, follow_redirects=False)
    assert sync_now.status_code == 303
