"""CA Connectors API and pages, backed by certfleet.ca_admin.service: forms, secrets, disable, delete, test."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from fastapi.testclient import TestClient

from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector, Certificate, ConnectorStatus
from tests.dashboard.conftest import Accounts, auth, login

DIGICERT_KEY = "dc-secret-api-key-9f8e7d"
GOOD: dict[str, dict[str, Any]] = {
    "digicert": {"kind": "digicert", "name": "DigiCert prod", "api_key": DIGICERT_KEY, "organization_id": 112233,
                 "certificate_validity": 200, "payment_type": "Profile"},
    "emsign": {"kind": "emsign", "name": "emSign", "api_base_url": "https://emsign.example/api",
               "account_number": "12345", "access_key": "em-secret-access-key", "full_name": "Ops Team",
               "email": "ops@example.com"},
    "adcs": {"kind": "adcs", "name": "Corp CA", "base_url": "https://ca.corp.example/certsrv",
             "ca_setup_type": "Enterprise CA", "username": "CORP\\svc", "password": "adcs-secret-pw",
             "template": "WebServer"},
    "acme": {"kind": "acme", "name": "LE", "directory_url": "https://acme.example/directory",
             "contact_email": "ops@example.com", "eab_key_id": "kid-1", "eab_hmac_key": "acme-secret-hmac"},
    "emca": {"kind": "emca", "name": "emCA", "version": "5.0", "base_url": "https://emca.example/rest",
             "username": "api", "issuing_ca": "Issuing CA 1", "subscriber_id": "S-1", "password": "emca-secret"},
}  # fmt: skip
SECRETS = ("dc-secret-api-key-9f8e7d", "em-secret-access-key", "adcs-secret-pw", "acme-secret-hmac", "emca-secret")

# One bad field per kind and the exact message the service gives for it.
BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("digicert", {"api_base_url": "http://www.digicert.com/services/v2"}, "api_base_url",
     "the DigiCert API Base URL must be an https:// URL (for example https://ca.example.com/...), "
     "not 'http://www.digicert.com/services/v2'"),
    ("emsign", {"account_number": "12ab"}, "account_number",
     "the emSign Account Number is the digits shown in the emSign portal"),
    ("adcs", {"template": ""}, "template", "an Enterprise CA issues from a certificate template: set the Template"),
    ("acme", {"contact_email": "not-an-email"}, "contact_email", "'not-an-email' is not an email address"),
    ("emca", {"version": "4.2.0"}, "version", ""),
]  # fmt: skip


def _post(client: TestClient, accounts: Accounts, body: dict[str, Any]) -> Any:
    return client.post("/api/v1/ca-connectors", json=body, headers=auth(accounts, "admin"))


@pytest.mark.parametrize(("kind", "change", "field", "message"), BAD, ids=[b[0] for b in BAD])
def test_create_with_a_bad_field_names_it_with_the_services_message(
    client: TestClient, accounts: Accounts, kind: str, change: dict[str, Any], field: str, message: str
) -> None:
    response = _post(client, accounts, {**GOOD[kind], **change})
    assert response.status_code == 422, response.text
    body = response.json()
    if kind == "adcs":  # a model-level rule: the service names no single field
        assert body["detail"] == message
    elif kind == "emca":  # the message comes from the emCA dialect table; it must name the version
        assert body["field"] == "version"
        assert "4.2.0" in body["detail"]
    else:
        assert (body["field"], body["detail"]) == (field, message)
    with session_scope() as s:
        assert s.query(CAConnector).filter_by(name=GOOD[kind]["name"]).count() == 0


# Whitespace around a value was trimmed away by the form (pydantic's str_strip_whitespace): now refused, naming it.
EDGES: list[tuple[str, str, str]] = [
    ("digicert", "name", " DigiCert prod"),
    ("digicert", "api_key", DIGICERT_KEY + "\n"),
    ("emsign", "api_base_url", "https://emsign.example/api\n"),
    ("emsign", "email", "ops@example.com "),
    ("adcs", "username", "CORP\\svc "),
    ("acme", "directory_url", " https://acme.example/directory"),
    ("acme", "contact_email", "ops@example.com\n"),
    ("emca", "issuing_ca", "Issuing CA 1\t"),
]


@pytest.mark.parametrize(("kind", "field", "value"), EDGES, ids=[f"{k}-{f}" for k, f, _ in EDGES])
def test_whitespace_around_a_value_is_refused_naming_the_field_not_trimmed(
    client: TestClient, accounts: Accounts, kind: str, field: str, value: str
) -> None:
    response = _post(client, accounts, {**GOOD[kind], field: value})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert "whitespace" in response.json()["detail"]
    with session_scope() as s:
        assert s.query(CAConnector).filter_by(kind=kind).count() == 0


def test_a_url_with_a_tab_or_line_break_inside_is_refused(client: TestClient, accounts: Accounts) -> None:
    # urlsplit drops them without a word: the stored URL would not be the one called
    response = _post(client, accounts, {**GOOD["acme"], "directory_url": "https://acme.example/dir\tectory"})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "directory_url"
    assert "control character (U+0009)" in response.json()["detail"]


def test_create_digicert_stores_values_and_never_returns_secrets(client: TestClient, accounts: Accounts) -> None:
    response = _post(client, accounts, GOOD["digicert"])
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["kind"] == "digicert"
    assert created["status"] == "Active"
    assert created["values"]["organization_id"] == 112233
    assert created["values"]["payment_type"] == "Profile"
    assert created["secrets_set"] == {"api_key": True}
    with session_scope() as s:
        row = s.get(CAConnector, created["id"])
        assert row is not None
        assert row.default_validity_days == 200
        assert row.base_url == "https://www.digicert.com/services/v2"
    listing = client.get("/api/v1/ca-connectors?filter=kind:eq:digicert", headers=auth(accounts, "viewer")).json()
    assert [r["name"] for r in listing["items"]] == ["DigiCert prod"]


def test_secrets_are_in_no_response(client: TestClient, accounts: Accounts) -> None:
    admin = auth(accounts, "admin")
    ids = []
    for kind in ("digicert", "emsign", "adcs", "acme"):
        response = _post(client, accounts, GOOD[kind])
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    responses = [
        client.get("/api/v1/ca-connectors", headers=admin),
        client.get("/api/v1/ca-connector-kinds", headers=admin),
        client.get("/api/v1/ca-connectors/export?format=xlsx", headers=admin),
    ]
    for connector_id in ids:
        responses.append(client.get(f"/api/v1/ca-connectors/{connector_id}", headers=admin))
        responses.append(client.put(f"/api/v1/ca-connectors/{connector_id}", json={"name": f"renamed {connector_id}"},
                                    headers=admin))  # fmt: skip
        responses.append(client.post(f"/api/v1/ca-connectors/{connector_id}/disable", headers=admin))
    login(client, "admin")
    responses.append(client.get("/ca-connectors"))
    responses += [client.get(f"/ca-connectors/{i}") for i in ids]
    for response in responses:
        assert response.status_code < 500, response.text
        for secret in SECRETS:
            assert secret.encode() not in response.content, (response.url, secret)


def test_edit_keeps_a_secret_left_out_and_bad_edit_names_the_field(client: TestClient, accounts: Accounts) -> None:
    admin = auth(accounts, "admin")
    connector_id = _post(client, accounts, GOOD["digicert"]).json()["id"]
    edit = {**GOOD["digicert"], "name": "DigiCert main"}
    del edit["api_key"]
    response = client.put(f"/api/v1/ca-connectors/{connector_id}", json=edit, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "DigiCert main"
    assert response.json()["secrets_set"] == {"api_key": True}
    response = client.put(f"/api/v1/ca-connectors/{connector_id}", json={**edit, "certificate_validity": 500},
                          headers=admin)  # fmt: skip
    assert response.status_code == 422
    assert response.json()["field"] == "certificate_validity"


def test_disable_and_enable(client: TestClient, accounts: Accounts) -> None:
    admin = auth(accounts, "admin")
    connector_id = _post(client, accounts, GOOD["digicert"]).json()["id"]
    assert (
        client.post(f"/api/v1/ca-connectors/{connector_id}/disable", headers=auth(accounts, "operator")).status_code
        == 403
    )
    response = client.post(f"/api/v1/ca-connectors/{connector_id}/disable", headers=admin)
    assert response.status_code == 200
    assert response.json()["status"] == "Disabled"
    with session_scope() as s:
        assert s.get(CAConnector, connector_id).status is ConnectorStatus.DISABLED  # type: ignore[union-attr]
    assert client.post(f"/api/v1/ca-connectors/{connector_id}/enable", headers=admin).json()["status"] == "Active"


def test_delete_is_refused_while_a_certificate_uses_the_connector(client: TestClient, accounts: Accounts) -> None:
    admin = auth(accounts, "admin")
    connector_id = _post(client, accounts, GOOD["digicert"]).json()["id"]
    with session_scope() as s:
        cert = Certificate(common_name="shop.example.com", ca_connector_id=connector_id,
                           provisioning_bot_id=accounts.boot.local_bot_id)  # fmt: skip
        s.add(cert)
        s.flush()
        cert_id = cert.id
    response = client.delete(f"/api/v1/ca-connectors/{connector_id}", headers=admin)
    assert response.status_code == 422, response.text
    body = response.json()
    assert f"shop.example.com (#{cert_id})" in body["detail"]
    assert [p["field"] for p in body["problems"]] == ["certificates"]
    assert body["problems"][0]["message"].startswith(f"shop.example.com (#{cert_id}")
    with session_scope() as s:
        assert s.get(CAConnector, connector_id) is not None
        s.delete(s.get(Certificate, cert_id))
    assert client.delete(f"/api/v1/ca-connectors/{connector_id}", headers=admin).status_code == 200
    with session_scope() as s:
        assert s.get(CAConnector, connector_id) is None


def test_test_connection_of_the_built_in_ca_is_ok(client: TestClient, accounts: Accounts) -> None:
    response = client.post(
        f"/api/v1/ca-connectors/{accounts.boot.ca_connector_id}/test", headers=auth(accounts, "admin")
    )
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the with block ends: nothing listens there


def test_test_connection_to_a_closed_port_fails_clearly(client: TestClient, accounts: Accounts) -> None:
    port = _closed_port()
    body = {**GOOD["digicert"], "api_base_url": f"https://127.0.0.1:{port}/services/v2"}
    connector_id = _post(client, accounts, body).json()["id"]
    response = client.post(f"/api/v1/ca-connectors/{connector_id}/test", headers=auth(accounts, "admin"))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["ok"] is False
    assert result["message"].startswith("DigiCert could not be reached"), result
    assert "Connection refused" in result["message"], result
    assert DIGICERT_KEY not in response.text


def test_pages_create_with_bad_field_then_test_connection_button(client: TestClient, accounts: Accounts) -> None:
    token = login(client, "admin")
    form = {**{k: str(v) for k, v in GOOD["digicert"].items()}, "csrf_token": token, "organization_id": "abc"}
    response = client.post("/ca-connectors", data=form, follow_redirects=False)
    assert response.status_code == 422
    assert 'data-testid="form-error"' in response.text
    assert DIGICERT_KEY not in response.text
    form["organization_id"] = "112233"
    assert client.post("/ca-connectors", data=form, follow_redirects=False).status_code == 303
    listing = client.get("/ca-connectors?kind=digicert").text
    assert "DigiCert prod" in listing
    assert "Test connection" in listing
    response = client.post(f"/ca-connectors/{accounts.boot.ca_connector_id}/test",
                           data={"csrf_token": token}, follow_redirects=False)  # fmt: skip
    assert response.status_code == 303
    assert "connection OK" in client.get(response.headers["location"]).text


@pytest.mark.parametrize(
    ("kind", "moved", "secret", "message"),
    [
        ("digicert", {"api_base_url": "https://attacker.example/services/v2"}, "api_key",
         "give the DigiCert API Key again: the DigiCert API Base URL changed"),
        ("emsign", {"api_base_url": "https://attacker.example/api"}, "access_key",
         "give the emSign AccessKey again: the emSign API Base URL changed"),
        ("adcs", {"base_url": "https://attacker.example/certsrv"}, "password",
         "give the Password again: the Base URL changed"),
        ("acme", {"directory_url": "https://attacker.example/directory"}, "eab_hmac_key",
         "give the EAB HMAC Key again: the Directory URL changed"),
    ],
)  # fmt: skip
def test_a_new_url_needs_the_secrets_again(
    client: TestClient, accounts: Accounts, kind: str, moved: dict[str, Any], secret: str, message: str
) -> None:
    """A stored API key is never sent to a URL other than the one it was given for (nor tested against it)."""
    admin = auth(accounts, "admin")
    connector_id = _post(client, accounts, GOOD[kind]).json()["id"]
    edit = {k: v for k, v in {**GOOD[kind], **moved}.items() if k != secret}
    refused = client.put(f"/api/v1/ca-connectors/{connector_id}", json=edit, headers=admin)
    assert refused.status_code == 422, refused.text
    assert (refused.json()["field"], refused.json()["detail"]) == (secret, message)
    shown = client.get(f"/api/v1/ca-connectors/{connector_id}", headers=admin).json()
    assert "attacker.example" not in str(shown)  # nothing was saved
    given = client.put(f"/api/v1/ca-connectors/{connector_id}", json={**edit, secret: "a-new-secret-for-the-new-url"},
                       headers=admin)  # fmt: skip
    assert given.status_code == 200, given.text
    unchanged = {k: v for k, v in {**GOOD[kind], **moved}.items() if k != secret}
    assert client.put(f"/api/v1/ca-connectors/{connector_id}", json=unchanged, headers=admin).status_code == 200
