"""Discover and Scan server files start runs in Prefect's test server with the parameters the user chose; bad
input and unsuitable bots are clear errors before any run exists; viewers cannot start scans."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, Bot, BotPurpose, BotStatus, Server, ServerConnection
from tests.dashboard.conftest import Accounts, auth, login

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def _run(flow_run_id: str) -> Any:
    from uuid import UUID

    from prefect import get_client

    with get_client(sync_client=True) as c:
        return c.read_flow_run(UUID(flow_run_id))


def _runs_of(deployment_flow: str) -> int:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as c:
        return len(c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[deployment_flow]))))


def _bot(name: str, purpose: BotPurpose, status: BotStatus = BotStatus.ACTIVE) -> int:
    with session_scope() as s:
        bot = Bot(name=name, purpose=purpose, status=status, work_queue=f"bot-{name}")
        s.add(bot)
        s.flush()
        return bot.id


def test_discover_starts_a_discover_endpoints_run_with_the_chosen_parameters(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    scanner = _bot("scanner", BotPurpose.DISCOVERY)
    body = {
        "targets": ["www.example.test", "192.0.2.10", "198.51.100.0/30"],
        "ports": "443,8443",
        "sni_names": ["shop.example.test"],
        "bot_id": scanner,
        "concurrency": 64,
        "connect_timeout": 1.5,
        "handshake_timeout": 4,
    }
    assert client.post("/api/v1/discovery/endpoints", json=body, headers=auth(accounts, "viewer")).status_code == 403
    response = client.post("/api/v1/discovery/endpoints", json=body, headers=auth(accounts, "operator"))
    assert response.status_code == 202, response.text
    run = _run(response.json()["flow_run_id"])
    assert run.parameters == {
        # a host name sends its own name as SNI; each address target is scanned with each SNI name
        "targets": ["www.example.test", "shop.example.test@192.0.2.10", "shop.example.test@198.51.100.0/30"],
        "ports": "443,8443",
        "bot_id": scanner,
        "concurrency": 64,
        "connect_timeout": 1.5,
        "handshake_timeout": 4.0,
    }
    assert run.work_queue_name == f"bot-{scanner}"  # it runs on the chosen bot, inside its network
    assert run.state is not None
    assert run.state.type.value == "SCHEDULED"
    assert response.json()["prefect_url"].endswith(f"/runs/flow-run/{run.id}")
    with session_scope() as s:
        event = s.query(AuditEvent).filter_by(action="start-discover-endpoints").one()
        assert event.actor == "operator"


def test_bad_discovery_input_is_a_clear_error_and_no_run(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    builder = _bot("builder", BotPurpose.PROVISIONING)
    stopped = _bot("parked", BotPurpose.BOTH, BotStatus.STOPPED)
    operator = auth(accounts, "operator")
    runs_before = _runs_of("discover-endpoints")  # Prefect's test server lives for the whole session
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"targets": ["10.0.0.0/33"]}, "targets", "not a valid CIDR range"),
        ({"targets": ["10.0.0.1"], "ports": "443,70000"}, "ports", "outside 1-65535"),
        ({"targets": ["10.0.0.1"], "bot_id": builder}, "bot_id", "only provisions"),
        ({"targets": ["10.0.0.1"], "bot_id": stopped}, "bot_id", "is Stopped"),
        ({"targets": ["10.0.0.1"], "sni_names": ["10.0.0.2"]}, "sni_names", "must be a host name"),
    ]
    for body, field, words in cases:
        response = client.post("/api/v1/discovery/endpoints", json=body, headers=operator)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["field"] == field, response.json()
        assert words in response.json()["detail"], response.json()
    assert client.post("/api/v1/discovery/endpoints", json={"concurrency": 0}, headers=operator).status_code == 422
    assert _runs_of("discover-endpoints") == runs_before


def test_discover_form_and_scan_server_files(client: TestClient, accounts: Accounts, prefect_api: str) -> None:
    token = login(client, "operator")
    file_runs_before = _runs_of("discover-server-files")
    page = client.get("/discovery")
    assert 'data-testid="discover-form"' in page.text
    bad = client.post("/discovery", data={"targets": "192.0.2.10-1", "ports": "443", "csrf_token": token})
    assert bad.status_code == 422
    assert "the range ends before it starts" in bad.text
    assert "192.0.2.10-1" in bad.text  # the user's input stays in the form
    started = client.post(
        "/discovery",
        data={"targets": "127.0.0.1\n127.0.0.2", "ports": "8443", "concurrency": "10", "csrf_token": token},
        follow_redirects=False,
    )
    assert started.status_code == 303, started.text
    runs = client.get("/discovery-runs")
    assert runs.status_code == 200
    assert "started discover-endpoints" in runs.text

    with session_scope() as s:
        server = Server(description="web-1", host="127.0.0.1", ports=[8443], connection=ServerConnection.LOCAL,
                        server_type="nginx")  # fmt: skip
        s.add(server)
        s.flush()
        server_id = server.id
    assert f'action="/servers/{server_id}/scan-files"' in client.get("/servers").text
    response = client.post(f"/api/v1/servers/{server_id}/scan-files", json={"extra_paths": ["/etc/ssl"]},
                           headers=auth(accounts, "operator"))  # fmt: skip
    assert response.status_code == 202, response.text
    run = _run(response.json()["flow_run_id"])
    assert run.parameters == {"server_ids": [server_id], "bot_id": accounts.boot.local_bot_id,
                              "extra_paths": ["/etc/ssl"]}  # fmt: skip
    assert run.work_queue_name == f"bot-{accounts.boot.local_bot_id}"  # a server mapped to no bot: the local bot
    other = client.post(f"/api/v1/servers/{server_id}/scan-files", json={"bot_id": _bot("far", BotPurpose.DISCOVERY)},
                        headers=auth(accounts, "operator"))  # fmt: skip
    assert other.status_code == 422, other.text
    assert "is mapped to no bot: map it to the bot first" in other.json()["detail"]
    relative = client.post(f"/api/v1/servers/{server_id}/scan-files", json={"extra_paths": ["ssl"]},
                           headers=auth(accounts, "operator"))  # fmt: skip
    assert relative.status_code == 422
    assert relative.json()["field"] == "extra_paths"
    assert client.post("/api/v1/servers/999999/scan-files", headers=auth(accounts, "operator")).status_code == 404
    denied = client.post(f"/api/v1/servers/{server_id}/scan-files", headers=auth(accounts, "viewer"))
    assert denied.status_code == 403
    form = client.post(f"/servers/{server_id}/scan-files", data={"csrf_token": token}, follow_redirects=False)
    assert form.status_code == 303
    assert _runs_of("discover-server-files") == file_runs_before + 2
