"""Starting rotate-batch from the API, the certificate list's Rotate action and the CLI: each checks the request
first (one way of choosing, ids that exist, something rotatable), then starts the run in Prefect with a batch key
(the flow itself: tests/flows/test_rotate_flow.py)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from certfleet.cli.main import app as cli
from certfleet.fields import InputError
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, Bot, Certificate, DeploymentTarget, RotationItem, Server, ServerConnection
from certfleet.rotation.service import IGNORING_WINDOWS, RotationRequest, prepare
from tests.dashboard.conftest import Accounts, auth, login

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def _fleet(accounts: Accounts, n: int = 3, batch: str | None = "spring") -> list[int]:
    with session_scope() as s:
        server = Server(description="web", host="127.0.0.1", ports=[443], connection=ServerConnection.LOCAL,
                        server_type="nginx", bot_id=accounts.boot.local_bot_id)  # fmt: skip
        certs = []
        for i in range(n):
            cert = Certificate(common_name=f"r{i}.example.com", sans=[f"r{i}.example.com"], batch_name=batch,
                               ca_connector_id=accounts.boot.ca_connector_id, tags=["web"])  # fmt: skip
            cert.targets.append(DeploymentTarget(server=server, port=443, cert_path="/c.pem", key_path="/k.pem"))
            certs.append(cert)
        s.add_all(certs)
        s.flush()
        return [c.id for c in certs]


def _run(run_id: str) -> tuple[str, dict[str, Any]]:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        run = c.read_flow_run(run_id)
        flow = c.read_flow(run.flow_id)
    return flow.name, dict(run.parameters)


def _audited() -> list[tuple[str, str | None, str | None]]:
    with session_scope() as s:
        return [(e.actor, e.object_id, e.detail) for e in s.query(AuditEvent).filter_by(action="start-rotate-batch")]


def test_api_starts_a_rotate_batch_run_for_a_batch_name(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    _fleet(accounts)
    response = client.post(
        "/api/v1/rotations", json={"batch_name": "spring", "failure_budget": 0.1}, headers=auth(accounts, "operator")
    )
    assert response.status_code == 202, response.text
    body = response.json()
    key = body["batch_key"]
    assert key.startswith("rot-")
    assert body["certificates"] == 3
    assert body["flow_run_name"] == f"rotate-batch-{key}"
    assert _run(body["flow_run_id"]) == (
        "rotate-batch",
        {"batch_name": "spring", "failure_budget": 0.1, "batch_key": key, "canary_per_server_type": 1,
         "ca_concurrency": 4, "server_concurrency": 1, "bot_start_timeout": 300, "ignore_maintenance_windows": False},
    )  # fmt: skip
    assert _audited() == [("operator", key, f"3 certificate(s), run rotate-batch-{key}")]
    # Nothing is planned until the run starts: the batch is unknown to GET until then.
    assert client.get(f"/api/v1/rotations/{key}", headers=auth(accounts, "viewer")).status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, None, "choose the certificates one way"),
        ({"batch_name": "spring", "tag": "web"}, None, "choose the certificates one way"),
        ({"certificate_ids": [999]}, "certificate_ids", "no certificate 999"),
        ({"batch_name": "autumn"}, None, "no certificate matches the selection"),
        ({"batch_name": " spring"}, "batch_name", "whitespace"),
        ({"tag": "web", "failure_budget": 1.5}, "failure_budget", "less than or equal to 1"),
        ({"tag": "web", "batch_key": "Has Spaces"}, None, "batch_key"),
        ({"tag": "web", "surprise": 1}, "surprise", "Extra inputs"),
    ],
)
def test_a_request_the_flow_would_refuse_is_422_and_starts_nothing(
    client: TestClient, accounts: Accounts, body: dict[str, Any], field: str | None, message: str
) -> None:
    _fleet(accounts)
    response = client.post("/api/v1/rotations", json=body, headers=auth(accounts, "operator"))
    assert response.status_code == 422, response.text
    assert message in response.text
    if field is not None:
        assert field in response.text
    assert _audited() == []


def test_a_viewer_may_read_a_batch_but_not_start_one(client: TestClient, accounts: Accounts) -> None:
    ids = _fleet(accounts)
    refused = client.post("/api/v1/rotations", json={"certificate_ids": ids}, headers=auth(accounts, "viewer"))
    assert refused.status_code == 403
    with session_scope() as s:
        s.add_all(
            RotationItem(
                batch_key="b1",
                certificate_id=c,
                server_label="web (127.0.0.1)",
                state=state,
                position=n,
                deployment_ids=[],
            )
            for n, (c, state) in enumerate(zip(ids, ["Deployed", "Rolled Back", "Not Started"], strict=True))
        )
    shown = client.get("/api/v1/rotations/b1", headers=auth(accounts, "viewer")).json()
    assert shown["states"] == {"Deployed": 1, "Rolled Back": 1, "Not Started": 1}
    assert shown["servers"] == {"web (127.0.0.1)": {"Deployed": 1, "Rolled Back": 1, "Not Started": 1}}


def test_cli_rotate_starts_the_run_for_ids_and_prints_the_batch_key(accounts: Accounts, prefect_api: str) -> None:
    ids = _fleet(accounts)
    result = CliRunner().invoke(cli, ["rotate", *map(str, ids[:2]), "--failure-budget", "0.5", "--no-wait"])
    assert result.exit_code == 0, result.output
    first, last = result.output.splitlines()[0], result.output.splitlines()[-1]
    key = first.split()[1].rstrip(":")
    assert first == f"batch {key}: 2 certificate(s); re-run with --batch-key {key} to continue it if it stops"
    assert last.startswith(f"rotate-batch-{key}: Scheduled")
    ((actor, object_id, _),) = _audited()
    assert (actor.startswith("cli:"), object_id) == (True, key)

    now = CliRunner().invoke(cli, ["rotate", str(ids[2]), "--ignore-maintenance-windows", "--no-wait"])
    assert now.exit_code == 0, now.output
    key = now.output.splitlines()[0].split()[1].rstrip(":")
    assert _runs_named(f"rotate-batch-{key}")[0]["ignore_maintenance_windows"] is True
    with session_scope() as s:
        (event,) = s.query(AuditEvent).filter_by(action=IGNORING_WINDOWS)
        assert (event.actor.startswith("cli:"), event.object_id) == (True, key)


def test_cli_refuses_before_starting_anything(accounts: Accounts) -> None:
    _fleet(accounts)
    result = CliRunner().invoke(cli, ["rotate", "--batch-name", "spring", "--tag", "web"])
    assert isinstance(result.exception, InputError)
    assert "choose the certificates one way" in str(result.exception)
    unknown = CliRunner().invoke(cli, ["rotate", "--batch-key", "rot-nothing"])
    assert isinstance(unknown.exception, InputError)
    assert (unknown.exception.field, str(unknown.exception)) == ("batch_key", "no batch rot-nothing to continue")
    assert _audited() == []


def test_the_list_rotate_action_starts_a_run_for_the_selection(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    ids = _fleet(accounts)
    token = login(client, "operator")
    page = client.get("/certificates").text
    assert 'action="/rotations" id="rotate-form"' in page
    for cert_id in ids:
        assert f'name="certificate_ids" value="{cert_id}" form="rotate-form"' in page
    chosen = [str(ids[0]), str(ids[2])]
    started = client.post(
        "/rotations",
        data={"certificate_ids": chosen, "canary_per_server_type": "1", "failure_budget": "0.25", "csrf_token": token},
        follow_redirects=False,
    )
    assert started.status_code == 303, started.text
    ((_, key, _),) = _audited()
    assert key is not None
    shown = client.get(started.headers["location"]).text
    assert f"started rotate-batch-{key} in Prefect for 2 certificate(s), batch {key}" in shown
    runs = _runs_named(f"rotate-batch-{key}")
    assert runs == [{"certificate_ids": [ids[0], ids[2]], "failure_budget": 0.25, "batch_key": key,
                     "canary_per_server_type": 1, "ca_concurrency": 4, "server_concurrency": 1,
                     "bot_start_timeout": 300, "ignore_maintenance_windows": False}]  # fmt: skip

    nothing = client.post("/rotations", data={"csrf_token": token}, follow_redirects=False)
    assert nothing.status_code == 303
    assert "select the certificates to rotate in the list first" in client.get(nothing.headers["location"]).text
    bad = client.post("/rotations", data={"certificate_ids": chosen, "failure_budget": "5%", "csrf_token": token},
                      follow_redirects=False)  # fmt: skip
    assert "failure_budget" in client.get(bad.headers["location"]).text
    assert len(_audited()) == 1

    # The form's "Deploy now, ignoring maintenance windows" box: the run's parameter, and an audit event.
    assert 'name="ignore_maintenance_windows" data-testid="rotate-ignore-windows"' in page
    now = client.post("/rotations", data={"certificate_ids": chosen, "ignore_maintenance_windows": "on",
                                          "csrf_token": token}, follow_redirects=False)  # fmt: skip
    assert now.status_code == 303, now.text
    key = [k for _, k, _ in _audited()][-1]
    assert _runs_named(f"rotate-batch-{key}")[0]["ignore_maintenance_windows"] is True
    with session_scope() as s:
        (event,) = s.query(AuditEvent).filter_by(action=IGNORING_WINDOWS)
        assert (event.actor, event.object_id) == ("operator", key)
    odd = client.post("/rotations", data={"certificate_ids": chosen, "ignore_maintenance_windows": "maybe",
                                          "csrf_token": token}, follow_redirects=False)  # fmt: skip
    assert "ignore_maintenance_windows" in client.get(odd.headers["location"]).text
    assert len(_audited()) == 2


def test_viewers_get_no_rotate_form(client: TestClient, accounts: Accounts) -> None:
    _fleet(accounts)
    login(client, "viewer")
    page = client.get("/certificates").text
    assert 'id="rotate-form"' not in page
    assert 'form="rotate-form"' not in page


def _runs_named(name: str) -> list[dict[str, Any]]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as c:
        runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    return [dict(r.parameters) for r in runs]


def test_certificates_on_servers_of_no_bot_are_refused_and_another_bots_are_taken(
    client: TestClient, accounts: Accounts
) -> None:
    ids = _fleet(accounts, n=2, batch="far")
    with session_scope() as s:
        for cert_id in ids:
            s.get_one(Certificate, cert_id).targets[0].server.bot_id = None
    response = client.post("/api/v1/rotations", json={"batch_name": "far"}, headers=auth(accounts, "operator"))
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "none of the 2 certificate(s) can be rotated: server web (127.0.0.1) is mapped to no bot: map it to a bot first"
    )
    assert _audited() == []
    # Mapped to another bot: rotate-batch takes them (their deployments run on that bot's queue).
    with session_scope() as s:
        remote = Bot(name="branch-office", work_queue="bot-99")
        s.add(remote)
        s.flush()
        for cert_id in ids:
            s.get_one(Certificate, cert_id).targets[0].server.bot_id = remote.id
        _, count = prepare(s, RotationRequest(batch_name="far"))
    assert count == 2
