"""Actions that belong to flows start runs in Prefect (never flow functions in the web process)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, Certificate, DeploymentTarget, Server, ServerConnection
from tests.dashboard.conftest import Accounts, auth, login

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def _configured_certificate(accounts: Accounts, with_target: bool, *, mapped: bool = True) -> int:
    with session_scope() as s:
        server = Server(description="local", host="127.0.0.1", ports=[8443], connection=ServerConnection.LOCAL,
                        server_type="nginx", bot_id=accounts.boot.local_bot_id if mapped else None)  # fmt: skip
        cert = Certificate(common_name="shop.example.com", ca_connector_id=accounts.boot.ca_connector_id,
                           provisioning_bot_id=accounts.boot.local_bot_id)  # fmt: skip
        s.add_all([server, cert])
        s.flush()
        if with_target:
            s.add(DeploymentTarget(certificate_id=cert.id, server_id=server.id, port=8443,
                                   cert_path="/tmp/c.pem", key_path="/tmp/k.pem"))  # fmt: skip
        return cert.id


def test_provision_starts_a_prefect_run_for_the_certificate(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    cert_id = _configured_certificate(accounts, with_target=True)
    response = client.post(f"/api/v1/certificates/{cert_id}/provision", headers=auth(accounts, "operator"))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["flow_run_name"] == f"provision-certificate-{cert_id}"
    assert body["prefect_url"].endswith(f"/runs/flow-run/{body['flow_run_id']}")

    from prefect import get_client

    with get_client(sync_client=True) as c:
        run = c.read_flow_run(body["flow_run_id"])
    assert run.parameters == {"certificate_id": cert_id}
    assert run.state is not None
    assert run.state.type.value == "SCHEDULED"
    with session_scope() as s:
        event = s.query(AuditEvent).filter_by(action="start-provision-certificate").one()
        assert event.actor == "operator"


def test_unconfigured_certificate_is_a_clear_error_not_a_red_run(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    cert_id = _configured_certificate(accounts, with_target=False)
    response = client.post(f"/api/v1/certificates/{cert_id}/provision", headers=auth(accounts, "operator"))
    assert response.status_code == 422
    assert response.json()["detail"] == "configure shop.example.com first: it needs at least one deployment target"


def test_no_prefect_is_a_clear_error(client: TestClient, accounts: Accounts, monkeypatch: pytest.MonkeyPatch) -> None:
    from certfleet.demo.listener import free_port

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    cert_id = _configured_certificate(accounts, with_target=True)
    response = client.post(f"/api/v1/certificates/{cert_id}/issue", headers=auth(accounts, "operator"))
    assert response.status_code == 422
    assert "Prefect does not answer" in response.json()["detail"]


def _issued(cert_id: int) -> None:
    with session_scope() as s:
        cert = s.get(Certificate, cert_id)
        assert cert is not None
        cert.pem_chain, cert.private_key, cert.serial_number = "PEM", b"KEY", "01"


def test_deploy_starts_a_run_on_the_queue_of_the_servers_bot(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    cert_id = _configured_certificate(accounts, with_target=True)
    _issued(cert_id)
    response = client.post(f"/api/v1/certificates/{cert_id}/deploy", headers=auth(accounts, "operator"))
    assert response.status_code == 202, response.text
    (only,) = response.json()["runs"]
    from prefect import get_client

    with get_client(sync_client=True) as c:
        run = c.read_flow_run(only["flow_run_id"])
    assert run.work_queue_name == f"bot-{accounts.boot.local_bot_id}"
    assert run.parameters["certificate_id"] == cert_id


def test_deploy_to_a_server_without_a_bot_is_refused_with_the_reason(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    cert_id = _configured_certificate(accounts, with_target=True, mapped=False)
    _issued(cert_id)
    response = client.post(f"/api/v1/certificates/{cert_id}/deploy", headers=auth(accounts, "operator"))
    assert response.status_code == 422
    assert response.json()["detail"].startswith("no bot is assigned to server local (127.0.0.1)")


def test_deploy_waits_for_the_servers_maintenance_window_unless_told_to_ignore_it(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    from datetime import timedelta

    from prefect import get_client

    from certfleet.models.orm import utcnow

    cert_id = _configured_certificate(accounts, with_target=True)
    _issued(cert_id)
    opening = (utcnow() + timedelta(hours=12)).replace(minute=0, second=0, microsecond=0)
    with session_scope() as s:
        server = s.query(Server).one()
        server.maintenance_cron, server.maintenance_duration_minutes = f"0 {opening.hour} * * *", 60
    operator = auth(accounts, "operator")

    response = client.post(f"/api/v1/certificates/{cert_id}/deploy", headers=operator)
    assert response.status_code == 202, response.text
    (waiting,) = response.json()["runs"]
    with get_client(sync_client=True) as c:
        run = c.read_flow_run(waiting["flow_run_id"])
    assert run.state is not None
    assert run.state.state_details.scheduled_time == opening
    shown = client.get(f"/api/v1/certificates/{cert_id}", headers=operator).json()
    assert shown["targets"][0]["deploy_waits_until"] == opening.isoformat()
    assert f"waiting for maintenance window at {opening:%Y-%m-%d %H:%M} UTC" in shown["status_reason"]

    with session_scope() as s:  # the page reads the chain: none rather than this test's stand-in
        s.get(Certificate, cert_id).pem_chain = None  # type: ignore[union-attr]
    login(client, "operator")
    page = client.get(f"/certificates/{cert_id}").text
    assert f"waiting for maintenance window at {opening:%Y-%m-%d %H:%M} UTC" in page
    assert 'data-testid="deploy-ignore-window"' in page
    _issued(cert_id)

    refused = client.post(f"/api/v1/certificates/{cert_id}/provision", json={"ignore_window": True}, headers=operator)
    assert refused.status_code == 422
    assert refused.json()["field"] == "ignore_window"

    now = client.post(f"/api/v1/certificates/{cert_id}/deploy", json={"ignore_window": True}, headers=operator)
    assert now.status_code == 202, now.text
    with get_client(sync_client=True) as c:
        run = c.read_flow_run(now.json()["runs"][0]["flow_run_id"])
    assert run.state is not None
    assert run.state.state_details.scheduled_time is not None
    assert run.state.state_details.scheduled_time < utcnow() + timedelta(minutes=1)
    with get_client(sync_client=True) as c:  # the run that waited for the window must not deploy again later
        cancelled = c.read_flow_run(waiting["flow_run_id"])
    assert cancelled.state is not None
    assert cancelled.state.is_cancelled()
    assert cancelled.state.message == "deployed now by operator, ignoring the maintenance window"
    with session_scope() as s:
        event = s.query(AuditEvent).filter_by(action="deploy-ignoring-maintenance-window").one()
        assert event.actor == "operator"
        assert f"cancelled the waiting run(s) {waiting['flow_run_name']}" in (event.detail or "")
        assert s.query(DeploymentTarget).one().deploy_waits_until is None
