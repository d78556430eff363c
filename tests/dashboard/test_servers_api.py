"""Add/Edit Server through the dashboard goes through certfleet.servers.service; Check connectivity starts a run."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, Server, ServerConnection, ServerStatus
from tests.dashboard.conftest import Accounts, auth, login
from tests.integration.sshd import PASSWORD, PASSWORD_USER, running_sshd, scratch_dir

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

SECRET_PASSWORD = "s3cret-Pass-9!"


def _good(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "description": "web-1 production",
        "ip_address": "10.0.0.10",
        "username": "deploy",
        "password": SECRET_PASSWORD,
        "server_type": "nginx",
        "nginx_path": "/etc/nginx/",
        "keystore_folder": "/etc/nginx/ssl",
        "version": "Nginx 1.22",
        "ports": [443, 8443],
        "service_name": "nginx",
    }
    body.update(overrides)
    return body


def test_bad_fields_answer_422_with_each_message_beside_its_field(client: TestClient, accounts: Accounts) -> None:
    response = client.post(
        "/api/v1/servers",
        json=_good(description="", ip_address="10.0.0.300", ports="443, 70000"),
        headers=auth(accounts, "operator"),
    )
    assert response.status_code == 422, response.text
    problems = {p["field"]: p["message"] for p in response.json()["problems"]}
    assert problems == {
        "description": "Description is required",
        "ip_address": "'10.0.0.300' is not a valid IP address (e.g. 192.0.2.10 or 2001:db8::10)",
        "ports": "Input should be less than or equal to 65535",
    }
    # model-level messages of the service land on the field they are about
    no_path = client.post("/api/v1/servers", json=_good(nginx_path=None), headers=auth(accounts, "operator"))
    assert no_path.status_code == 422
    assert no_path.json()["problems"] == [
        {"field": "nginx_path", "message": "give the Nginx Path (for example /etc/nginx/)"}
    ]
    no_login = client.post("/api/v1/servers", json=_good(password=None), headers=auth(accounts, "operator"))
    assert no_login.json()["problems"] == [
        {"field": "password", "message": "give a password or an SSH private key to log in with"}
    ]
    iis = client.post("/api/v1/servers", json=_good(server_type="iis"), headers=auth(accounts, "operator"))
    assert "IIS is reached over SMB: choose the connection Windows (SMB)" in iis.text
    with session_scope() as s:
        assert s.query(Server).count() == 0


def test_create_edit_and_secrets_never_come_back(client: TestClient, accounts: Accounts) -> None:
    created = client.post("/api/v1/servers", json=_good(), headers=auth(accounts, "operator"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert SECRET_PASSWORD not in created.text
    assert "password" not in body
    assert (body["has_password"], body["status"], body["app_path"], body["ports"]) == (
        True,
        "Pending",
        "/etc/nginx/",
        [443, 8443],
    )  # fmt: skip (stored exactly as given)
    server_id = body["id"]
    duplicate = client.post("/api/v1/servers", json=_good(), headers=auth(accounts, "operator"))
    assert duplicate.status_code == 422
    assert "already registers this nginx at 10.0.0.10:/etc/nginx" in duplicate.json()["detail"]
    same_folder = client.post(
        "/api/v1/servers", json=_good(nginx_path="/etc/nginx"), headers=auth(accounts, "operator")
    )
    assert same_folder.status_code == 422  # "/etc/nginx" and "/etc/nginx/" are one folder

    for url in (f"/api/v1/servers/{server_id}", "/api/v1/servers", "/api/v1/servers/export?format=xlsx"):
        shown = client.get(url, headers=auth(accounts, "viewer"))
        assert shown.status_code == 200, url
        assert SECRET_PASSWORD.encode() not in shown.content, url
    with session_scope() as s:
        server = s.get(Server, server_id)
        assert server is not None
        assert server.created_by == "operator"
        assert server.password == SECRET_PASSWORD  # stored (encrypted at rest), only never shown

    edited = client.put(f"/api/v1/servers/{server_id}", json={"description": "web-1", "ports": "443"},
                        headers=auth(accounts, "operator"))  # fmt: skip
    assert edited.status_code == 200, edited.text
    changed = edited.json()
    assert (changed["description"], changed["ports"], changed["has_password"]) == ("web-1", [443], True)
    bad = client.put(f"/api/v1/servers/{server_id}", json={"ssh_port": 0}, headers=auth(accounts, "operator"))
    assert bad.status_code == 422
    assert bad.json()["problems"] == [{"field": "ssh_port", "message": "Input should be greater than or equal to 1"}]
    moved = client.put(f"/api/v1/servers/{server_id}", json={"ip_address": "10.0.0.11", "password": SECRET_PASSWORD},
                       headers=auth(accounts, "operator"))  # fmt: skip
    assert moved.json()["status"] == "Pending"
    assert moved.json()["status_reason"] == "changed: run the connectivity check"
    assert client.put("/api/v1/servers/999999", json={}, headers=auth(accounts, "operator")).status_code == 404


def test_viewer_may_not_add_edit_or_check(client: TestClient, accounts: Accounts) -> None:
    server_id = client.post("/api/v1/servers", json=_good(), headers=auth(accounts, "operator")).json()["id"]
    viewer = auth(accounts, "viewer")
    assert client.post("/api/v1/servers", json=_good(ip_address="10.0.0.12"), headers=viewer).status_code == 403
    assert client.put(f"/api/v1/servers/{server_id}", json={"description": "x"}, headers=viewer).status_code == 403
    assert client.post(f"/api/v1/servers/{server_id}/check", headers=viewer).status_code == 403


def _run(flow_run_id: str) -> Any:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        return c.read_flow_run(UUID(flow_run_id))


def test_check_starts_a_check_server_run(client: TestClient, accounts: Accounts, prefect_api: str) -> None:
    unmapped = client.post("/api/v1/servers", json=_good(ip_address="10.0.0.13"), headers=auth(accounts, "operator"))
    refused = client.post(f"/api/v1/servers/{unmapped.json()['id']}/check", headers=auth(accounts, "operator"))
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("no bot is assigned to server web-1 production (10.0.0.13)")
    body = _good(description="web-1 mapped", bot_id=accounts.boot.local_bot_id)
    server_id = client.post("/api/v1/servers", json=body, headers=auth(accounts, "operator")).json()["id"]
    response = client.post(f"/api/v1/servers/{server_id}/check", headers=auth(accounts, "operator"))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["prefect_url"].endswith(f"/runs/flow-run/{body['flow_run_id']}")
    run = _run(body["flow_run_id"])
    assert run.parameters == {"server_id": server_id, "actor": "operator"}
    assert run.work_queue_name == f"bot-{accounts.boot.local_bot_id}"  # the server's bot runs the check
    assert run.state is not None
    assert run.state.type.value == "SCHEDULED"
    from prefect import get_client

    with get_client(sync_client=True) as c:
        assert c.read_flow(run.flow_id).name == "check-server"
    with session_scope() as s:
        assert s.query(AuditEvent).filter_by(action="start-check-server").one().actor == "operator"
    assert client.post("/api/v1/servers/999999/check", headers=auth(accounts, "operator")).status_code == 404

    # the page button starts the same flow
    token = login(client, "operator")
    page = client.get(f"/servers/{server_id}").text
    assert f'action="/servers/{server_id}/check"' in page
    assert f'action="/servers/{server_id}/check"' in client.get("/servers").text
    started = client.post(f"/servers/{server_id}/check", data={"csrf_token": token}, follow_redirects=False)
    assert started.status_code == 303


def test_status_reason_and_last_checked_are_shown(client: TestClient, accounts: Accounts) -> None:
    server_id = client.post("/api/v1/servers", json=_good(), headers=auth(accounts, "operator")).json()["id"]
    with session_scope() as s:  # what check_connectivity records for a refused login
        server = s.get(Server, server_id)
        assert server is not None
        server.status = ServerStatus.UNREACHABLE
        server.status_reason = "authentication failed for deploy@10.0.0.10"
    shown = client.get(f"/api/v1/servers/{server_id}", headers=auth(accounts, "viewer")).json()
    assert (shown["status"], shown["status_reason"]) == ("Unreachable", "authentication failed for deploy@10.0.0.10")
    listing = client.get("/api/v1/servers", headers=auth(accounts, "viewer")).text
    assert "authentication failed for deploy@10.0.0.10" in listing
    login(client, "viewer")
    page = client.get(f"/servers/{server_id}").text
    assert "authentication failed for deploy@10.0.0.10" in page
    assert "Last Checked" in client.get("/servers").text


def test_form_shows_each_message_beside_its_field_and_keeps_input(client: TestClient, accounts: Accounts) -> None:
    token = login(client, "operator")
    bad = client.post("/servers", data={"description": "tc", "ip_address": "10.0.0.300", "server_type": "tomcat",
                                        "username": "deploy", "password": SECRET_PASSWORD, "ports": "8443",
                                        "tomcat_path": "/opt/tomcat", "csrf_token": token})  # fmt: skip
    assert bad.status_code == 422
    assert 'data-testid="error-ip_address"' in bad.text
    assert "is not a valid IP address" in bad.text
    assert 'value="/opt/tomcat"' in bad.text  # the user's input stays
    assert SECRET_PASSWORD not in bad.text
    no_path = client.post("/servers", data={"description": "tc", "ip_address": "10.0.0.9", "server_type": "tomcat",
                                            "username": "deploy", "password": "p", "ports": "8443",
                                            "csrf_token": token})  # fmt: skip
    assert no_path.status_code == 422
    assert 'data-testid="error-tomcat_path"' in no_path.text
    ok = client.post("/servers", data={"description": "tc", "ip_address": "10.0.0.9", "server_type": "tomcat",
                                       "username": "deploy", "password": "p", "ports": "8443, 443",
                                       "tomcat_path": "/opt/tomcat", "csrf_token": token},
                     follow_redirects=False)  # fmt: skip
    assert ok.status_code == 303, ok.text
    with session_scope() as s:
        server = s.query(Server).filter_by(description="tc").one()
        assert (server.server_type, server.app_path, server.ports) == ("tomcat", "/opt/tomcat", [8443, 443])
    edit = client.get(f"/servers/{server.id}").text
    assert 'name="tomcat_path" value="/opt/tomcat"' in edit
    saved = client.post(f"/servers/{server.id}", data={"description": "tc-2", "ip_address": "10.0.0.9",
                                                      "server_type": "tomcat", "username": "deploy",
                                                      "ports": "8443", "tomcat_path": "/opt/tomcat",
                                                      "csrf_token": token}, follow_redirects=False)  # fmt: skip
    assert saved.status_code == 303, saved.text
    with session_scope() as s:
        again = s.get(Server, server.id)
        assert again is not None
        assert (again.description, again.password) == ("tc-2", "p")


def test_check_run_against_a_real_sshd_sets_the_status_the_dashboard_shows(
    client: TestClient, accounts: Accounts, prefect_api: str
) -> None:
    from certfleet.flows.servers import check_server

    with running_sshd() as sshd:
        nginx = scratch_dir(PASSWORD_USER, "certfleet-dash-check-")
        (nginx / "nginx.conf").write_text("events {}\n")
        operator = auth(accounts, "operator")
        good = _good(ip_address="127.0.0.1", username=PASSWORD_USER, password=PASSWORD, nginx_path=str(nginx),
                     keystore_folder=None, ssh_port=sshd.port, bot_id=accounts.boot.local_bot_id)  # fmt: skip
        ok_id = client.post("/api/v1/servers", json=good, headers=operator).json()["id"]
        bad_id = client.post("/api/v1/servers", json=_good(**{**good, "description": "wrong password",
                                                                "password": "not-the-password",
                                                                "ssh_port": sshd.port, "nginx_path": "/srv/elsewhere"}),
                             headers=operator).json()["id"]  # fmt: skip
        for server_id in (ok_id, bad_id):
            started = client.post(f"/api/v1/servers/{server_id}/check", headers=operator)
            assert started.status_code == 202, started.text
            check_server(**_run(started.json()["flow_run_id"]).parameters)  # what the served deployment runs

    ok = client.get(f"/api/v1/servers/{ok_id}", headers=auth(accounts, "viewer")).json()
    assert (ok["status"], ok["status_reason"]) == ("Active", None)
    assert ok["last_checked_at"] is not None
    assert ok["host_key_fingerprint"]
    bad = client.get(f"/api/v1/servers/{bad_id}", headers=auth(accounts, "viewer")).json()
    assert bad["status"] == "Unreachable"
    assert f"authentication failed: the server refused the password for user '{PASSWORD_USER}'" in bad["status_reason"]
    assert "not-the-password" not in str(bad)
    login(client, "viewer")
    page = client.get(f"/servers/{bad_id}").text
    assert "authentication failed: the server refused the password" in page
    assert "not-the-password" not in page


def test_free_form_commands_only_for_admins_with_the_setting_on(
    client: TestClient, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    pwned = "touch /tmp/pwned"
    monkeypatch.delenv("CERTFLEET_ALLOW_CUSTOM_COMMANDS", raising=False)
    operator = client.post("/api/v1/servers", json=_good(reload_command=pwned), headers=auth(accounts, "operator"))
    assert operator.status_code == 403, operator.text
    assert "free-form commands may be set by an Admin only" in operator.text
    admin_off = client.post("/api/v1/servers", json=_good(reload_command=pwned), headers=auth(accounts, "admin"))
    assert admin_off.status_code == 422
    assert admin_off.json()["field"] == "reload_command"
    assert "free-form commands are turned off (CERTFLEET_ALLOW_CUSTOM_COMMANDS)" in admin_off.json()["detail"]
    chosen = _good(config_test_command="nginx -t", reload_command="systemctl reload")
    known = client.post("/api/v1/servers", json=chosen, headers=auth(accounts, "operator"))
    assert known.status_code == 201, known.text
    server_id = known.json()["id"]
    assert client.put(f"/api/v1/servers/{server_id}", json={"config_test_command": "nginx -t && id"},
                      headers=auth(accounts, "operator")).status_code == 403  # fmt: skip

    monkeypatch.setenv("CERTFLEET_ALLOW_CUSTOM_COMMANDS", "true")
    set_by_admin = client.put(f"/api/v1/servers/{server_id}", json={"reload_command": "nginx -s reload -g 'pid x;'"},
                              headers=auth(accounts, "admin"))  # fmt: skip
    assert set_by_admin.status_code == 200, set_by_admin.text
    with session_scope() as s:
        details = [e.detail for e in s.query(AuditEvent).filter_by(action="update-server")]
    assert "reload_command: 'systemctl reload' -> \"nginx -s reload -g 'pid x;'\"" in details
    cleared = client.put(
        f"/api/v1/servers/{server_id}", json={"reload_command": None}, headers=auth(accounts, "operator")
    )
    assert cleared.json()["reload_command"] is None  # back to the type's own


def test_server_types_list_the_known_commands(
    client: TestClient, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CERTFLEET_ALLOW_CUSTOM_COMMANDS", raising=False)
    types = {t["key"]: t for t in client.get("/api/v1/server-types", headers=auth(accounts, "viewer")).json()}
    assert types["nginx"]["config_test_commands"] == ["nginx -t"]
    assert types["nginx"]["reload_commands"] == ["nginx -s reload", "systemctl reload", "systemctl restart"]
    assert "apachectl configtest" in types["apache"]["config_test_commands"]
    assert types["jetty"]["reload_commands"] == ["systemctl restart"]
    login(client, "operator")
    page = client.get("/servers/new").text
    assert "Known for Nginx: nginx -s reload, systemctl reload, systemctl restart" in page
    assert "Free-form commands are turned off (CERTFLEET_ALLOW_CUSTOM_COMMANDS)" in page
    monkeypatch.setenv("CERTFLEET_ALLOW_CUSTOM_COMMANDS", "true")
    assert "Free-form commands: Admins only." in client.get("/servers/new").text


def test_a_new_address_with_a_cleared_pin_needs_the_password_again(client: TestClient, accounts: Accounts) -> None:
    operator = auth(accounts, "operator")
    pinned = _good(ssh_host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG5vdC1yZWFs")
    server_id = client.post("/api/v1/servers", json=pinned, headers=operator).json()["id"]
    moved = client.put(f"/api/v1/servers/{server_id}", json={"ip_address": "attacker.example", "clear_host_key": True},
                       headers=operator)  # fmt: skip
    assert moved.status_code == 422, moved.text
    assert moved.json()["field"] == "password"
    detail = "give the password again: the address changed and the pinned host key was cleared"
    assert moved.json()["detail"] == detail
    shown = client.get(f"/api/v1/servers/{server_id}", headers=operator).json()
    assert (shown["ip_address"], shown["host_key_fingerprint"] is not None) == ("10.0.0.10", True)


def test_server_paths_are_refused_naming_the_field_and_the_rule(client: TestClient, accounts: Accounts) -> None:
    operator = auth(accounts, "operator")
    dots = client.post("/api/v1/servers", json=_good(nginx_path="/etc/nginx/../../etc"), headers=operator)
    assert dots.status_code == 422
    assert dots.json()["field"] == "nginx_path"
    assert "(rule: dot-segment)" in dots.json()["detail"]
    proc = client.post("/api/v1/servers", json=_good(keystore_folder="/proc/self"), headers=operator)
    assert (proc.json()["field"], "(rule: system-location)" in proc.json()["detail"]) == ("keystore_folder", True)


def test_targets_and_file_scans_follow_the_path_and_name_rules(client: TestClient, accounts: Accounts) -> None:
    operator = auth(accounts, "operator")
    server_id = client.post("/api/v1/servers", json=_good(allowed_paths=["/srv/tls"]), headers=operator).json()["id"]
    cert = client.post("/api/v1/certificates", json={"common_name": "www.example.test"}, headers=operator)
    assert cert.status_code == 201, cert.text
    url = f"/api/v1/certificates/{cert.json()['id']}/targets"
    good = {"server_id": server_id, "port": 443, "cert_path": "/etc/nginx/ssl/www.pem", "key_path": "/srv/tls/www.key"}
    refused = [
        ({"cert_path": "/etc/shadow"}, "cert_path", "(rule: system-location)"),
        ({"cert_path": "/proc/self/environ"}, "cert_path", "is inside /proc"),
        ({"key_path": "/dev/zero"}, "key_path", "is inside /dev"),
        ({"cert_path": "/etc/nginx/../../etc/passwd"}, "cert_path", "(rule: dot-segment)"),
        ({"key_path": "/var/lib/www.key"}, "key_path", "outside the folders this server allows"),
        ({"server_name": "$(touch /tmp/pwned)"}, "server_name", "is not a DNS name"),
        ({"server_name": "www.example.test\r\nX: 1"}, "server_name", "control character"),
        ({"server_name": "-oProxyCommand=id"}, "server_name", "is not a DNS name"),
        (
            {"server_name": "www.\u0435xample.test"},
            "server_name",
            "give the name's A-label form, here www.xn--xample-2of.test",
        ),
    ]
    for change, field, message in refused:
        response = client.post(url, json={**good, **change}, headers=operator)
        assert response.status_code == 422, (change, response.text)
        assert (response.json()["field"], message in response.json()["detail"]) == (field, True), response.text
    added = client.post(url, json={**good, "server_name": "www.example.test"}, headers=operator)
    assert added.status_code == 201, added.text
    assert added.json()["targets"][0]["cert_path"] == "/etc/nginx/ssl/www.pem"
    # nginx finds the files in its configuration: the paths may be left out (and are then not stored)
    found = client.post(url, json={"server_id": server_id, "port": 8443}, headers=operator)
    assert found.status_code == 201, found.text
    assert [(t["port"], t["cert_path"], t["key_path"]) for t in found.json()["targets"]][1] == (8443, None, None)
    with session_scope() as s:  # a plain PEM-files server (the demo fleet's kind) reads no configuration
        plain = Server(description="pem files", host="10.0.0.11", server_type="generic", ports=[443],
                       connection=ServerConnection.LOCAL)  # fmt: skip
        s.add(plain)
        s.flush()
        plain_id = plain.id
    unnamed = client.post(url, json={"server_id": plain_id, "port": 443}, headers=operator)
    assert unnamed.status_code == 422
    assert unnamed.json()["field"] == "cert_path"
    assert unnamed.json()["detail"].startswith("give the cert path: a generic server has no configuration")

    scan = client.post(f"/api/v1/servers/{server_id}/scan-files", json={"extra_paths": ["/proc"]}, headers=operator)
    assert scan.status_code == 422
    assert (scan.json()["field"], "is /proc, a system location" in scan.json()["detail"]) == ("extra_paths", True)


def test_the_edit_form_sets_allowed_paths_and_clears_a_command(client: TestClient, accounts: Accounts) -> None:
    operator = auth(accounts, "operator")
    created = client.post("/api/v1/servers", json=_good(reload_command="systemctl restart"), headers=operator)
    server_id = created.json()["id"]
    token = login(client, "operator")
    form = {"description": "web-1", "ip_address": "10.0.0.10", "server_type": "nginx", "username": "deploy",
            "ports": "443", "nginx_path": "/etc/nginx/", "service_name": "nginx", "csrf_token": token,
            "config_test_command": "nginx -t", "reload_command": "",
            "allowed_paths": "/srv/tls\n/etc/ssl/certfleet"}  # fmt: skip
    saved = client.post(f"/servers/{server_id}", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    view = client.get(f"/api/v1/servers/{server_id}", headers=operator).json()
    assert (view["config_test_command"], view["reload_command"]) == ("nginx -t", None)
    assert view["allowed_paths"] == ["/srv/tls", "/etc/ssl/certfleet"]
    page = client.get(f"/servers/{server_id}").text
    assert "/srv/tls\n/etc/ssl/certfleet</textarea>" in page
    bad = client.post(f"/servers/{server_id}", data={**form, "allowed_paths": "/srv/tls\n/proc"})
    assert bad.status_code == 422
    assert 'data-testid="error-allowed_paths"' in bad.text


def test_a_maintenance_window_is_stored_as_sent_and_bad_parts_are_refused_naming_the_field(
    client: TestClient, accounts: Accounts
) -> None:
    operator = auth(accounts, "operator")
    for window, field in (
        ({"maintenance_cron": "0 2 * * FOO", "maintenance_duration_minutes": 240}, "maintenance_cron"),
        ({"maintenance_cron": "0 2 * * SAT", "maintenance_duration_minutes": 0}, "maintenance_duration_minutes"),
        ({"maintenance_cron": "0 2 * * SAT", "maintenance_duration_minutes": "4h"}, "maintenance_duration_minutes"),
        ({"maintenance_cron": "0 2 * * SAT"}, "maintenance_duration_minutes"),
        ({"maintenance_duration_minutes": 240}, "maintenance_cron"),
        (
            {"maintenance_cron": "0 2 * * SAT", "maintenance_duration_minutes": 240, "maintenance_timezone": "CET+1"},
            "maintenance_timezone",
        ),
    ):
        refused = client.post("/api/v1/servers", json=_good(**window), headers=operator)
        assert refused.status_code == 422, (window, refused.text)
        assert [p["field"] for p in refused.json()["problems"]] == [field], refused.text

    window = {
        "maintenance_cron": "0 2 * * SAT",
        "maintenance_duration_minutes": 240,
        "maintenance_timezone": "Europe/Berlin",
    }
    created = client.post("/api/v1/servers", json=_good(**window), headers=operator)
    assert created.status_code == 201, created.text
    assert {k: created.json()[k] for k in window} == window
    server_id = created.json()["id"]
    bad = client.put(f"/api/v1/servers/{server_id}", json={"maintenance_cron": "61 * * * *"}, headers=operator)
    assert bad.status_code == 422
    assert bad.json()["problems"][0]["field"] == "maintenance_cron"
    # clearing the cron alone leaves a duration without a window: refused; clearing both removes the window
    half = client.put(f"/api/v1/servers/{server_id}", json={"maintenance_cron": ""}, headers=operator)
    assert half.status_code == 422
    assert half.json()["problems"][0]["field"] == "maintenance_cron"
    cleared = client.put(
        f"/api/v1/servers/{server_id}",
        json={"maintenance_cron": "", "maintenance_duration_minutes": None},
        headers=operator,
    )
    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["maintenance_cron"], cleared.json()["maintenance_duration_minutes"]) == (None, None)
    with session_scope() as s:
        events = [e.detail for e in s.query(AuditEvent).filter(AuditEvent.action == "update-server")]
    assert any("maintenance_cron: '0 2 * * SAT' -> None" in (d or "") for d in events), events


def test_whitespace_is_refused_naming_the_field_never_trimmed_or_taken_for_no_value(
    client: TestClient, accounts: Accounts
) -> None:
    """Values are stored exactly as sent or refused (issue 15): "  " is not "no value", " host" is not "host"."""
    operator = auth(accounts, "operator")
    window = {"maintenance_cron": "0 2 * * SAT", "maintenance_duration_minutes": 240}
    for overrides, field in (
        ({"maintenance_cron": "  ", "maintenance_duration_minutes": 240}, "maintenance_cron"),
        ({**window, "maintenance_cron": " 0 2 * * SAT"}, "maintenance_cron"),
        ({**window, "maintenance_duration_minutes": " "}, "maintenance_duration_minutes"),
        ({"ip_address": " 10.0.0.10"}, "ip_address"),
        ({"ip_address": "web1.example.com "}, "ip_address"),
        ({"ip_address": "   "}, "ip_address"),
        ({"username": "deploy "}, "username"),
        ({"version": "  "}, "version"),
        ({"service_name": " "}, "service_name"),
        ({"keystore_folder": "/etc/nginx/ssl "}, "keystore_folder"),
        ({"reload_command": "  "}, "reload_command"),
        ({"password": "   "}, "password"),
    ):
        refused = client.post("/api/v1/servers", json=_good(**overrides), headers=operator)
        assert refused.status_code == 422, (overrides, refused.text)
        assert [p["field"] for p in refused.json()["problems"]] == [field], (overrides, refused.text)
        assert "whitespace" in refused.json()["problems"][0]["message"], refused.text
    with session_scope() as s:
        assert s.query(Server).count() == 0

    created = client.post(
        "/api/v1/servers", json=_good(ip_address="Web1.Example.com", **window), headers=operator
    )  # stored as written: not lowered
    assert created.status_code == 201, created.text
    server_id = created.json()["id"]
    assert created.json()["ip_address"] == "Web1.Example.com"
    blank = client.put(f"/api/v1/servers/{server_id}", json={"maintenance_cron": "   "}, headers=operator)
    assert blank.status_code == 422, blank.text
    assert blank.json()["problems"][0]["field"] == "maintenance_cron"
    host = client.put(f"/api/v1/servers/{server_id}", json={"ip_address": " 10.0.0.11"}, headers=operator)
    assert host.status_code == 422, host.text
    assert host.json()["problems"][0]["field"] == "ip_address"
    with session_scope() as s:
        server = s.get(Server, server_id)
        assert server is not None
        assert (server.host, server.maintenance_cron) == ("Web1.Example.com", "0 2 * * SAT")

    # The form sends "" for an empty field: that still means no value; whitespace is refused beside its field.
    token = login(client, "operator")
    form = {"description": "tc", "ip_address": "10.0.0.9", "server_type": "tomcat", "username": "deploy",
            "password": "p", "ports": "8443", "tomcat_path": "/opt/tomcat", "csrf_token": token,
            "version": "", "maintenance_cron": "  ", "maintenance_duration_minutes": ""}  # fmt: skip
    bad = client.post("/servers", data=form)
    assert bad.status_code == 422
    assert 'data-testid="error-maintenance_cron"' in bad.text
    bad_host = client.post("/servers", data={**form, "maintenance_cron": "", "ip_address": "10.0.0.9 "})
    assert bad_host.status_code == 422
    assert 'data-testid="error-ip_address"' in bad_host.text
    ok = client.post("/servers", data={**form, "maintenance_cron": ""}, follow_redirects=False)
    assert ok.status_code == 303, ok.text
    with session_scope() as s:
        server = s.query(Server).filter_by(description="tc").one()
        assert (server.host, server.version, server.maintenance_cron) == ("10.0.0.9", None, None)
