"""Revoke from the API, the pages and the CLI: each checks first (reason, issued, not yet revoked), then starts a
revoke-certificate run in Prefect and records who asked (the flow itself: tests/flows/test_revoke_flow.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from certfleet.cli.main import app as cli
from certfleet.fields import InputError
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    AuditEvent,
    Certificate,
    CertificateStatus,
    DeploymentTarget,
    Order,
    OrderState,
    Server,
    ServerConnection,
)
from tests.dashboard.conftest import Accounts, auth, login

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

SERIAL = "5EC0DE"
REASONS = [
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "privilegeWithdrawn",
    "aACompromise",
]


def _pem() -> str:
    """A real certificate with serial SERIAL (the pages decode it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop.example.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(int(SERIAL, 16)).not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _certificate(accounts: Accounts, *, issued: bool = True, deployed: bool = False, order: bool = True) -> int:
    """A certificate as the issue flow leaves it (its chain, serial and the ISSUED order that gave it)."""
    with session_scope() as s:
        cert = Certificate(common_name="shop.example.com", sans=["shop.example.com"],
                           ca_connector_id=accounts.boot.ca_connector_id)  # fmt: skip
        s.add(cert)
        s.flush()
        if issued:
            cert.pem_chain, cert.serial_number, cert.status = _pem(), SERIAL, CertificateStatus.ISSUED
            if order:
                s.add(Order(certificate_id=cert.id, ca_connector_id=accounts.boot.ca_connector_id,
                            idempotency_key=f"cert-{cert.id}-gen-1", csr_pem="CSR", state=OrderState.ISSUED,
                            serial_number=SERIAL))  # fmt: skip
        if deployed:
            server = Server(description="web", host="web1.example.com", ports=[443],
                            connection=ServerConnection.LOCAL, server_type="nginx")  # fmt: skip
            s.add(server)
            s.flush()
            s.add(DeploymentTarget(certificate_id=cert.id, server_id=server.id, port=443,
                                   cert_path="/etc/c.pem", key_path="/etc/k.pem"))  # fmt: skip
            cert.status, cert.last_provisioned_on = CertificateStatus.DEPLOYED, datetime.now(UTC)
        return cert.id


def _run_parameters(run_id: str) -> dict[str, Any]:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        run = c.read_flow_run(run_id)
    assert run.state is not None
    assert run.state.type.value == "SCHEDULED"
    return dict(run.parameters)


def _started_by() -> list[tuple[str, str | None]]:
    with session_scope() as s:
        return [(e.actor, e.detail) for e in s.query(AuditEvent).filter_by(action="start-revoke-certificate")]


def test_api_starts_a_revoke_run_with_the_reason_and_records_who(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    cert_id = _certificate(accounts, deployed=True)  # a deployed one is accepted: the API has no page to warn on
    response = client.post(
        f"/api/v1/certificates/{cert_id}/revoke", json={"reason": "superseded"}, headers=auth(accounts, "operator")
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["flow_run_name"] == f"revoke-certificate-{cert_id}-superseded"
    assert _run_parameters(body["flow_run_id"]) == {"certificate_id": cert_id, "reason": "superseded"}
    ((actor, detail),) = _started_by()
    assert actor == "operator"
    assert detail is not None
    assert detail.startswith(f"serial {SERIAL}; superseded; ")


@pytest.mark.parametrize("reason", ["KeyCompromise", "key_compromise", "superseded ", "4", "", "removeFromCRL"])
def test_a_reason_that_is_not_an_rfc_5280_name_is_422_naming_reason(
    client: TestClient, accounts: Accounts, reason: str
) -> None:
    cert_id = _certificate(accounts)
    response = client.post(
        f"/api/v1/certificates/{cert_id}/revoke", json={"reason": reason}, headers=auth(accounts, "operator")
    )
    assert response.status_code == 422
    assert response.json()["field"] == "reason"
    assert _started_by() == []


def test_a_reason_that_is_not_a_string_or_missing_is_422_naming_reason(client: TestClient, accounts: Accounts) -> None:
    cert_id = _certificate(accounts)
    for body in ({"reason": 1}, {}):
        response = client.post(f"/api/v1/certificates/{cert_id}/revoke", json=body, headers=auth(accounts, "operator"))
        assert response.status_code == 422
        assert response.json()["problems"][0]["field"] == "reason"


def test_every_rfc_5280_reason_is_accepted_by_name(accounts: Accounts) -> None:
    from certfleet.revocation import REASONS as ACCEPTED
    from certfleet.revocation import parse_reason

    assert list(ACCEPTED) == REASONS
    assert [parse_reason(r).value for r in REASONS] == REASONS


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("not-issued", "shop.example.com is not issued (status Initiated): there is nothing to revoke"),
        ("revoked", "shop.example.com is already revoked (keyCompromise) on 2026-01-02 03:04 UTC"),
        ("no-order", f"serial {SERIAL} of shop.example.com was not issued through certfleet"),
        ("expired", "shop.example.com has expired: a CA no longer revokes or lists it"),
    ],
)
def test_what_cannot_be_revoked_is_refused_with_the_reason(
    client: TestClient, accounts: Accounts, state: str, expected: str
) -> None:
    cert_id = _certificate(accounts, issued=state != "not-issued", order=state != "no-order")
    if state == "expired":
        with session_scope() as s:
            cert = s.get(Certificate, cert_id)
            assert cert is not None
            cert.status = CertificateStatus.EXPIRED
    if state == "revoked":
        with session_scope() as s:
            cert = s.get(Certificate, cert_id)
            assert cert is not None
            cert.status, cert.revocation_reason = CertificateStatus.REVOKED, "keyCompromise"
            cert.revoked_at = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    response = client.post(
        f"/api/v1/certificates/{cert_id}/revoke", json={"reason": "superseded"}, headers=auth(accounts, "operator")
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith(expected)
    assert _started_by() == []


def test_a_serial_replaced_by_a_rotation_goes_to_the_run(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    cert_id = _certificate(accounts)
    with session_scope() as s:
        s.add(Order(certificate_id=cert_id, ca_connector_id=accounts.boot.ca_connector_id,
                    idempotency_key=f"cert-{cert_id}-gen-0", csr_pem="CSR", state=OrderState.ISSUED,
                    serial_number="01"))  # fmt: skip
    headers = auth(accounts, "operator")
    response = client.post(
        f"/api/v1/certificates/{cert_id}/revoke", json={"reason": "superseded", "serial_number": "01"}, headers=headers
    )
    assert response.status_code == 202, response.text
    assert _run_parameters(response.json()["flow_run_id"]) == {
        "certificate_id": cert_id,
        "reason": "superseded",
        "serial_number": "01",
    }
    unknown = client.post(
        f"/api/v1/certificates/{cert_id}/revoke", json={"reason": "superseded", "serial_number": "02"}, headers=headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "serial_number"
    for bad in ("0x01", "01 ", "ab", ""):
        body = {"reason": "superseded", "serial_number": bad}
        refused = client.post(f"/api/v1/certificates/{cert_id}/revoke", json=body, headers=headers)
        assert refused.status_code == 422
        assert refused.json()["field"] == "serial_number"


def test_a_viewer_may_not_revoke(client: TestClient, accounts: Accounts) -> None:
    cert_id = _certificate(accounts)
    response = client.post(
        f"/api/v1/certificates/{cert_id}/revoke", json={"reason": "superseded"}, headers=auth(accounts, "viewer")
    )
    assert response.status_code == 403
    assert _started_by() == []


def test_page_warns_about_a_deployed_certificate_and_its_form_starts_the_run(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    cert_id = _certificate(accounts, deployed=True)
    token = login(client, "operator")
    assert f'href="/certificates/{cert_id}#revoke"' in client.get("/certificates").text  # the list's action menu
    page = client.get(f"/certificates/{cert_id}").text
    assert 'data-testid="revoke-deployed-warning"' in page
    assert "It is deployed on web1.example.com:443" in page
    assert f'action="/certificates/{cert_id}/run/provision"' in page  # rotate it first
    assert f'action="/certificates/{cert_id}/revoke"' in page
    assert 'data-confirm="Revoke this certificate at its CA? A revocation cannot be undone."' in page
    assert all(f'<option value="{r}">' in page for r in REASONS)

    refused = client.post(f"/certificates/{cert_id}/revoke", data={"reason": "compromised", "csrf_token": token},
                          follow_redirects=False)  # fmt: skip
    assert refused.status_code == 303
    assert "reason must be one of the RFC 5280 reason names" in client.get(refused.headers["location"]).text

    started = client.post(f"/certificates/{cert_id}/revoke",
                          data={"reason": "keyCompromise", "serial_number": SERIAL, "csrf_token": token},
                          follow_redirects=False)  # fmt: skip
    assert started.status_code == 303
    assert started.headers["location"] == f"/certificates/{cert_id}"
    assert (
        f"started revoke-certificate-{cert_id}-keyCompromise in Prefect" in client.get(f"/certificates/{cert_id}").text
    )
    ((actor, _),) = _started_by()
    assert actor == "operator"


def test_page_of_a_revoked_certificate_says_so(client: TestClient, accounts: Accounts) -> None:
    cert_id = _certificate(accounts)
    with session_scope() as s:
        cert = s.get(Certificate, cert_id)
        assert cert is not None
        cert.status, cert.revocation_reason = CertificateStatus.REVOKED, "superseded"
        cert.revoked_at = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    login(client, "viewer")
    page = client.get(f"/certificates/{cert_id}").text
    assert "Revoked at its CA (superseded) on 2026-01-02 03:04 UTC." in page
    assert 'data-testid="revoke-form"' not in page  # viewers get no form


def test_cli_revoke_starts_the_run_and_warns_about_a_deployed_certificate(accounts: Accounts, prefect_api: str) -> None:
    cert_id = _certificate(accounts, deployed=True)
    result = CliRunner().invoke(cli, ["revoke", str(cert_id), "--reason", "keyCompromise", "--no-wait"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("warning: shop.example.com is deployed on web1.example.com:443")
    assert lines[-1].startswith(f"revoke-certificate-{cert_id}-keyCompromise: Scheduled")
    ((actor, detail),) = _started_by()
    assert actor.startswith("cli:")
    assert detail is not None
    assert "keyCompromise" in detail


def test_cli_refuses_an_unknown_reason_before_starting_anything(accounts: Accounts) -> None:
    cert_id = _certificate(accounts)
    result = CliRunner().invoke(cli, ["revoke", str(cert_id), "--reason", "compromised"])
    assert isinstance(result.exception, InputError)
    assert result.exception.field == "--reason"
    assert _started_by() == []
