"""Renewal policy settings: a certificate's fraction and its CA connector's defaults, through the API and the
page forms, under the field rules (a 4xx naming the field; stored as sent)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, CertificateStatus, DeploymentTarget, Server, ServerConnection
from certfleet.renewal.schedule import renews_at
from tests.dashboard.conftest import Accounts, auth, login

API = "/api/v1/certificates"
ACME = {"kind": "acme", "name": "LE short", "directory_url": "https://acme.example/directory",
        "contact_email": "ops@example.com"}  # fmt: skip


def _new(client: TestClient, accounts: Accounts, **fields: Any) -> Any:
    body = {"common_name": "renew.example.com", "ca_connector_id": accounts.boot.ca_connector_id, **fields}
    return client.post(API, json=body, headers=auth(accounts, "operator"))


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.25, "a third", True])
def test_a_fraction_outside_0_and_1_is_refused_naming_the_field(
    client: TestClient, accounts: Accounts, fraction: Any
) -> None:
    refused = _new(client, accounts, renew_before_fraction=fraction)
    assert refused.status_code == 422, refused.text
    assert "renew_before_fraction" in refused.text
    with session_scope() as s:
        assert s.query(Certificate).filter_by(common_name="renew.example.com").count() == 0


def test_a_fraction_is_stored_as_sent_and_moves_the_renewal(client: TestClient, accounts: Accounts) -> None:
    created = _new(client, accounts, renew_before_fraction=0.25, renew_before_days=20)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["renew_before_fraction"], body["renew_before_days"]) == (0.25, 20)
    assert (body["renewal_attempts"], body["renewal_next_attempt_at"]) == (0, None)
    with session_scope() as s:
        cert = s.get(Certificate, body["id"])
        assert cert is not None
        assert renews_at(cert) is None  # not issued: no expiry yet
        assert cert.renew_before_fraction == 0.25


def test_days_out_of_range_are_refused_naming_the_field(client: TestClient, accounts: Accounts) -> None:
    refused = _new(client, accounts, renew_before_days=366)
    assert refused.status_code == 422
    assert refused.json()["field"] == "renew_before_days"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"renew_before_fraction": 1}, "renew_before_fraction"),
        ({"renew_before_fraction": 0}, "renew_before_fraction"),
        ({"renew_before_days": 0}, "renew_before_days"),
        ({"renew_before_days": 400}, "renew_before_days"),
    ],
)
def test_connector_defaults_out_of_range_are_refused_naming_the_field(
    client: TestClient, accounts: Accounts, change: dict[str, Any], field: str
) -> None:
    refused = client.post("/api/v1/ca-connectors", json={**ACME, **change}, headers=auth(accounts, "admin"))
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == field


def test_connector_defaults_are_stored_edited_and_used(client: TestClient, accounts: Accounts) -> None:
    admin = auth(accounts, "admin")
    created = client.post("/api/v1/ca-connectors", json={**ACME, "renew_before_days": 10,
                          "renew_before_fraction": 0.5}, headers=admin)  # fmt: skip
    assert created.status_code == 201, created.text
    connector_id = created.json()["id"]
    detail = client.get(f"/api/v1/ca-connectors/{connector_id}", headers=admin).json()
    assert (detail["values"]["renew_before_days"], detail["values"]["renew_before_fraction"]) == (10, 0.5)
    assert "renew_before_days" not in detail["values"].get("advanced", {})

    # A new certificate of the connector that sends no days gets the connector's; one that does keeps its own.
    default = _new(client, accounts, ca_connector_id=connector_id).json()
    own = _new(client, accounts, ca_connector_id=connector_id, common_name="own.example.com", renew_before_days=7)
    assert default["renew_before_days"] == 10
    assert own.json()["renew_before_days"] == 7
    assert default["renew_before_fraction"] is None  # the connector's fraction applies at renewal time

    edited = client.put(f"/api/v1/ca-connectors/{connector_id}", json={**ACME, "renew_before_fraction": 0.2},
                        headers=admin)  # fmt: skip
    assert edited.status_code == 200, edited.text
    assert (edited.json()["values"]["renew_before_days"], edited.json()["values"]["renew_before_fraction"]) == (
        None,
        0.2,
    )


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_the_configure_form_names_a_bad_fraction_and_saves_a_good_one(client: TestClient, accounts: Accounts) -> None:
    cert_id = _new(client, accounts).json()["id"]
    token = login(client, "operator")
    form = {
        "ca_connector_id": str(accounts.boot.ca_connector_id),
        "provisioning_bot_id": str(accounts.boot.local_bot_id),
        "key_spec": "rsa2048",
        "renew_before_days": "30",
        "renew_before_fraction": "1",
        "csrf_token": token,
    }
    refused = client.post(f"/certificates/{cert_id}", data=form)
    assert refused.status_code == 422
    assert 'data-field-error="renew_before_fraction"' in refused.text
    saved = client.post(f"/certificates/{cert_id}", data={**form, "renew_before_fraction": "0.4"})
    assert saved.status_code in (200, 303), saved.text
    with session_scope() as s:
        cert = s.get(Certificate, cert_id)
        assert cert is not None
        assert cert.renew_before_fraction == 0.4
    page = client.get(f"/certificates/{cert_id}")
    assert 'name="renew_before_fraction" value="0.4"' in page.text


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_the_certificate_shows_when_it_renews_and_a_failed_renewals_next_attempt(
    client: TestClient, accounts: Accounts
) -> None:
    cert_id = _new(client, accounts).json()["id"]
    issued = datetime(2026, 3, 1, tzinfo=UTC)
    with session_scope() as s:
        cert = s.get(Certificate, cert_id)
        assert cert is not None
        cert.status, cert.not_before, cert.expires_on = CertificateStatus.ISSUED, issued, issued + timedelta(days=30)
    login(client, "viewer")
    assert "Renewal due" not in client.get(f"/certificates/{cert_id}").text  # no target: renew-expiring skips it
    with session_scope() as s:
        cert = s.get(Certificate, cert_id)
        assert cert is not None
        server = Server(description="web", host="127.0.0.1", connection=ServerConnection.LOCAL, server_type="generic")
        cert.targets.append(DeploymentTarget(server=server, port=443, cert_path="/x/c.pem", key_path="/x/k.pem"))
        cert.status = CertificateStatus.INITIATED  # a renewal failed after its order was written: still shown
        cert.renewal_attempts, cert.renewal_next_attempt_at = 2, datetime(2026, 3, 22, 9, 30, tzinfo=UTC)
        due = renews_at(cert)
    assert due is not None
    assert issued + timedelta(days=20) <= due <= issued + timedelta(days=21)  # the demo's 30 days, 30-day window
    page = client.get(f"/certificates/{cert_id}").text
    assert f"Renewal due from {due:%Y-%m-%d %H:%M} UTC" in page
    assert "2 renewal attempt(s) have not issued yet, next attempt after 2026-03-22 09:30 UTC" in page
    api = client.get(f"{API}/{cert_id}", headers=auth(accounts, "viewer")).json()
    assert (api["renewal_attempts"], api["renewal_next_attempt_at"][:16]) == (2, "2026-03-22T09:30")


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_the_connector_form_has_the_renewal_defaults(client: TestClient, accounts: Accounts) -> None:
    login(client, "admin")
    page = client.get("/ca-connectors/new", params={"kind": "acme"}).text
    assert 'name="renew_before_days"' in page
    assert 'name="renew_before_fraction"' in page
    assert 'step="any"' in page  # a share such as 0.25 is accepted by the browser's number field
