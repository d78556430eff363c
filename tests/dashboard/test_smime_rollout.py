"""Order certificates (page and API) starts an smime-rollout run; the S/MIME page's order tiles count S/MIME orders
only, from their real state."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, CAConnector, Certificate, Order, OrderState, SmimeOrder
from certfleet.smime import service
from tests.dashboard.conftest import Accounts, auth, login
from tests.dashboard.test_smime_sync import parameters_of_runs, scheduled_run

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def tile(html: str, testid: str) -> int:
    match = re.search(rf'data-testid="{testid}">.*?<span class="tile-count">(\d+)</span>', html, re.S)
    assert match, testid
    return int(match.group(1))


def test_rollout_starts_from_the_api_and_the_page(client: TestClient, accounts: Accounts, prefect_api: str) -> None:
    with session_scope() as s:
        user_id = service.import_user(s, name="Ann", email="ann@example.com", designation=None, actor="t").id
    started = client.post(
        "/api/v1/smime-users/rollout", json={"user_ids": [user_id]}, headers=auth(accounts, "operator")
    )
    assert started.status_code == 202, started.text
    assert scheduled_run(started.json()["id"]) == {"user_ids": [user_id]}
    unknown = client.post("/api/v1/smime-users/rollout", json={"user_ids": [999]}, headers=auth(accounts, "operator"))
    assert unknown.status_code == 404
    csrf = login(client, "operator")
    page = client.post("/smime/rollout", data={"csrf_token": csrf}, follow_redirects=False)
    assert page.status_code == 303
    assert "smime-rollout" in client.get("/smime").text


def test_order_tiles_count_smime_orders_only(client: TestClient, accounts: Accounts) -> None:
    ca = accounts.boot.ca_connector_id
    with session_scope() as s:
        ids = [
            service.import_user(s, name=f"U{n}", email=f"u{n}@example.com", designation=None, actor="t").id
            for n in range(3)
        ]
        states = ["CSR Pending", "Certificate Issued", "Certificate Installed"]
        for n, (user_id, state) in enumerate(zip(ids, states, strict=True)):
            s.add(SmimeOrder(user_id=user_id, ca_connector_id=ca, idempotency_key=f"smime-{n}", state=state))
        cert = Certificate(common_name="tls.example.com", sans=["tls.example.com"], ca_connector_id=ca)
        s.add(cert)
        s.flush()
        s.add(Order(certificate_id=cert.id, ca_connector_id=ca, idempotency_key="tls-1", csr_pem="CSR",
                    state=OrderState.CREATED))  # fmt: skip
    login(client, "viewer")
    html = client.get("/smime").text
    assert tile(html, "smime-tile-orders") == 3
    assert tile(html, "smime-tile-csr-pending") == 1
    assert tile(html, "smime-tile-issued") == 2


def test_cli_starts_sync_and_rollout_runs(accounts: Accounts, prefect_api: str) -> None:
    from typer.testing import CliRunner

    from certfleet.cli.main import app as cli

    with session_scope() as s:
        user_id = service.import_user(s, name="Cli User", email="cli@example.com", designation=None, actor="t").id
        profile = service.save_profile(
            s,
            service.ProfileFields(
                "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "secret", "11111111-2222-3333-4444-555555555555", "Tenant"
            ),
            "t",
        )
        profile_id = profile.id
    synced = CliRunner().invoke(cli, ["smime", "sync", str(profile_id), "--no-wait"])
    assert synced.exit_code == 0, synced.output
    assert synced.output.strip().endswith(": Scheduled")
    rolled = CliRunner().invoke(cli, ["smime", "rollout", "--user-id", str(user_id), "--no-wait"])
    assert rolled.exit_code == 0, rolled.output
    assert rolled.output.strip().endswith(": Scheduled")
    sync_run, rollout_run = synced.output.split(":")[0].strip(), rolled.output.split(":")[0].strip()
    started = parameters_of_runs(sync_run, rollout_run)
    assert started[sync_run] == {"profile_id": profile_id}
    assert started[rollout_run] == {"user_ids": [user_id]}
    with session_scope() as s:  # the same checks and audit events as the dashboard's (certfleet.smime.starts)
        audit = {(a.action, a.object_id) for a in s.scalars(select(AuditEvent)) if a.actor.startswith("cli:")}
    assert audit == {("start-sync-directory", str(profile_id)), ("start-smime-rollout", None)}
    missing = CliRunner().invoke(cli, ["smime", "sync", "999", "--no-wait"])
    assert missing.exit_code != 0
    unknown_user = CliRunner().invoke(cli, ["smime", "rollout", "--user-id", "999", "--no-wait"])
    assert unknown_user.exit_code != 0


def test_a_connector_without_smime_is_refused_naming_the_field(client: TestClient, accounts: Accounts) -> None:
    with session_scope() as s:
        acme = CAConnector(kind="acme", name="Let's Encrypt", settings={})
        adcs = CAConnector(kind="adcs", name="Corp AD CS", settings={"template": "WebServer"})
        s.add_all([acme, adcs])
        s.flush()
        acme_id, adcs_id = acme.id, adcs.id
    refused = client.post(
        "/api/v1/smime-users/rollout", json={"ca_connector_id": acme_id}, headers=auth(accounts, "operator")
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "ca_connector_id"
    assert "ca_connector_id" in refused.text
    assert "does not issue S/MIME certificates" in refused.text
    profile = {
        "client_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "client_secret": "secret",
        "tenant_id": "11111111-2222-3333-4444-555555555555",
        "description": "Tenant",
        "ca_connector_id": adcs_id,
    }
    saved = client.post("/api/v1/directory-profiles", json=profile, headers=auth(accounts, "admin"))
    assert saved.status_code == 422, saved.text
    assert saved.json()["field"] == "ca_connector_id"
    assert "ca_connector_id" in saved.text
    assert "no S/MIME template" in saved.text
