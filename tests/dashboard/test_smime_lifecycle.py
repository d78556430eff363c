"""S/MIME lifecycle in the dashboard, the API and the CLI: a rollout for a filter, Revoke for a leaver (or anyone on
request), the Revoked and leaver tiles, and the user detail with its orders."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import SmimeOrder, SmimeStatus, SmimeUser, utcnow
from certfleet.smime import service
from certfleet.smime.directory_sync import VANISHED
from tests.dashboard.conftest import Accounts, auth, login
from tests.dashboard.test_smime_rollout import tile
from tests.dashboard.test_smime_sync import parameters_of_runs, scheduled_run

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def add(name: str, email: str) -> int:
    with session_scope() as s:
        return service.import_user(s, name=name, email=email, designation=None, actor="t").id


def installed(user_id: int, ca_connector_id: int, serial: str, *, expired: bool = False) -> None:
    """An order the CA issued and that was delivered (the flow tests make real ones)."""
    with session_scope() as s:
        now = utcnow()
        expires = now - timedelta(days=1) if expired else now + timedelta(days=60)
        s.add(SmimeOrder(user_id=user_id, ca_connector_id=ca_connector_id, idempotency_key=f"k-{serial}",
                         state="Certificate Installed", serial_number=serial, not_before=now - timedelta(days=30),
                         expires_on=expires))  # fmt: skip
        user = repo.get(s, SmimeUser, user_id)
        user.status, user.expires_on = SmimeStatus.CERTIFICATE_INSTALLED, expires


def test_rollout_for_a_filter_from_the_api_and_the_page(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    add("Ann Awaiting", "ann@example.com")
    add("Bob Awaiting", "bob@example.com")
    operator = auth(accounts, "operator")
    started = client.post(
        "/api/v1/smime-users/rollout",
        json={"filter": {"source": "Manual Import", "status": ["Awaiting Order"], "text": "ANN"}},
        headers=operator,
    )
    assert started.status_code == 202, started.text
    assert started.json()["users"] == 1
    assert scheduled_run(started.json()["id"]) == {
        "user_filter": {"source": "Manual Import", "status": ["Awaiting Order"], "text": "ANN"}
    }
    for body, field in (
        ({"filter": {"source": "Azure AD – Nowhere"}}, "source"),
        ({"filter": {"status": ["Certificate Installed"]}}, "status"),
        ({"filter": {"profile_id": 999}}, "profile_id"),
    ):
        refused = client.post("/api/v1/smime-users/rollout", json=body, headers=operator)
        assert refused.status_code == 422, body
        assert refused.json()["field"] == field
    for body in ({"filter": {"status": ["Awaiting"]}}, {"filter": {"sauce": "x"}}):
        assert client.post("/api/v1/smime-users/rollout", json=body, headers=operator).status_code == 422

    csrf = login(client, "operator")
    page = client.post(
        "/smime/rollout", data={"csrf_token": csrf, "source": "Manual Import", "text": "bob"}, follow_redirects=False
    )
    assert page.status_code == 303
    listed = client.get("/smime").text
    assert "for 1 user(s) matching source &#39;Manual Import&#39;, name or e-mail contains &#39;bob&#39;" in listed
    assert 'data-testid="rollout-filter"' in listed


def test_revoke_a_leaver_from_the_api_and_the_page_and_the_tiles(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    ca = accounts.boot.ca_connector_id
    lea = add("Lea Leaver", "lea@example.com")
    sam = add("Sam Stays", "sam@example.com")
    old = add("Olga Old", "olga@example.com")
    installed(lea, ca, "0A1B")
    installed(sam, ca, "0C2D")
    installed(old, ca, "0E3F", expired=True)
    with session_scope() as s:
        for user_id in (lea, old):
            repo.get(s, SmimeUser, user_id).directory_state = VANISHED
    operator = auth(accounts, "operator")

    login(client, "viewer")
    html = client.get("/smime").text
    assert tile(html, "smime-tile-leavers") == 1  # Olga's certificate has expired: nothing to revoke
    assert tile(html, "smime-tile-revoked") == 0
    flagged = "directory_state:eq:Disabled in directory|Not in directory"  # the tile's link
    leavers = client.get("/api/v1/smime-users", params={"filter": flagged}, headers=auth(accounts, "viewer"))
    assert leavers.status_code == 200, leavers.text
    assert sorted(row["email"] for row in leavers.json()["items"]) == ["lea@example.com", "olga@example.com"]
    detail = client.get(f"/smime/{lea}").text
    assert 'data-testid="smime-leaver"' not in detail  # a viewer sees no Revoke panel
    csrf = login(client, "operator")
    detail = client.get(f"/smime/{lea}").text
    assert 'data-testid="smime-leaver"' in detail
    assert '<option value="cessationOfOperation" selected>' in detail
    assert "0A1B" in detail
    refused = client.get(f"/smime/{old}").text
    assert 'data-testid="smime-revoke-refused"' in refused
    assert "has no valid certificate" in refused

    bad = client.post(f"/api/v1/smime-users/{lea}/revoke", json={"reason": "cessation_of_operation"}, headers=operator)
    assert bad.status_code == 422
    assert bad.json()["field"] == "reason"
    nothing = client.post(f"/api/v1/smime-users/{old}/revoke", json={"reason": "unspecified"}, headers=operator)
    assert nothing.status_code == 422
    assert "has no valid certificate" in nothing.text
    other = client.post(
        f"/api/v1/smime-users/{lea}/revoke", json={"reason": "keyCompromise", "serial_number": "0C2D"}, headers=operator
    )
    assert other.status_code == 422
    assert other.json()["field"] == "serial_number"
    viewer = auth(accounts, "viewer")
    assert (
        client.post(f"/api/v1/smime-users/{lea}/revoke", json={"reason": "keyCompromise"}, headers=viewer).status_code
        == 403
    )
    started = client.post(
        f"/api/v1/smime-users/{lea}/revoke", json={"reason": "cessationOfOperation"}, headers=operator
    )
    assert started.status_code == 202, started.text
    assert scheduled_run(started.json()["id"]) == {"user_id": lea, "reason": "cessationOfOperation"}
    page = client.post(
        f"/smime/{sam}/revoke", data={"csrf_token": csrf, "reason": "superseded"}, follow_redirects=False
    )
    assert page.status_code == 303
    assert page.headers["location"] == f"/smime/{sam}"

    one = client.get(f"/api/v1/smime-users/{lea}", headers=operator).json()
    assert one["status"] == "Certificate Installed"  # the run records Revoked when the CA has revoked
    assert [(o["serial_number"], o["state"]) for o in one["orders"]] == [("0A1B", "Certificate Installed")]
    with session_scope() as s:  # what the run records (tests/flows/test_smime_lifecycle_flow.py runs it for real)
        user = repo.get(s, SmimeUser, lea)
        user.status, user.revocation_reason, user.revoked_at = SmimeStatus.REVOKED, "cessationOfOperation", utcnow()
        for order in s.query(SmimeOrder).filter(SmimeOrder.user_id == lea):
            order.state, order.revoked_at, order.revocation_reason = "Revoked", utcnow(), "cessationOfOperation"
    one = client.get(f"/api/v1/smime-users/{lea}", headers=operator).json()
    assert (one["status"], one["revocation_reason"]) == ("Revoked", "cessationOfOperation")
    assert one["revoked_at"] is not None
    html = client.get("/smime").text
    assert tile(html, "smime-tile-revoked") == 1
    assert tile(html, "smime-tile-leavers") == 0
    assert tile(html, "smime-tile-issued") == 3  # orders the CA issued, revoked or not
    assert tile(html, "smime-tile-provisioned") == 2
    assert re.search(
        r'data-testid="smime-revoked">Revoked at its CA \(cessationOfOperation\) on ', client.get(f"/smime/{lea}").text
    )


def test_cli_rollout_filter_and_revoke(accounts: Accounts, prefect_api: str) -> None:
    from typer.testing import CliRunner

    from certfleet.cli.main import app as cli

    ann = add("Ann Cli", "ann.cli@example.com")
    installed(ann, accounts.boot.ca_connector_id, "0ABC")
    add("Ben Cli", "ben.cli@example.com")
    rolled = CliRunner().invoke(
        cli,
        ["smime", "rollout", "--source", "Manual Import", "--status", "Awaiting Order", "--match", "ben", "--no-wait"],
    )
    assert rolled.exit_code == 0, rolled.output
    assert "1 user(s) match now" in rolled.output
    revoked = CliRunner().invoke(cli, ["smime", "revoke", str(ann), "--reason", "affiliationChanged", "--no-wait"])
    assert revoked.exit_code == 0, revoked.output
    rollout_run = rolled.output.strip().splitlines()[-1].split(":")[0].strip()
    revoke_run = revoked.output.strip().splitlines()[-1].split(":")[0].strip()
    started = parameters_of_runs(rollout_run, revoke_run)
    assert started[rollout_run] == {
        "user_filter": {"source": "Manual Import", "status": ["Awaiting Order"], "text": "ben"}
    }
    assert started[revoke_run] == {
        "user_id": ann,
        "reason": "affiliationChanged",
    }
    refused = CliRunner().invoke(cli, ["smime", "rollout", "--status", "Revoked", "--no-wait"])
    assert refused.exit_code != 0
    nothing = CliRunner().invoke(cli, ["smime", "revoke", "999", "--reason", "unspecified", "--no-wait"])
    assert nothing.exit_code != 0
