"""Add Server for Windows (SMB): the API and the form store Windows servers exactly as sent or refuse them
with a 422 naming the field; the Servers filter "Windows (SMB)" finds them."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from certfleet.models.db import session_scope
from certfleet.models.orm import Server, ServerConnection
from tests.dashboard.conftest import Accounts, auth, csrf_of, login

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

TOMCAT = "C:\\Program Files\\Apache Software Foundation\\Tomcat 9.0"


def _windows(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "connection": "smb",
        "description": "win-1 Tomcat",
        "ip_address": "10.0.0.20",
        "username": "CORP\\deploy",
        "password": "Pa$$w0rd;`x'\"",
        "server_type": "tomcat",
        "tomcat_path": TOMCAT,
        "keystore_folder": "C:\\certs",
        "ports": [8443],
        "service_name": "Tomcat9",
        "smb_share": "C$",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def _problems(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {p["field"]: p["message"] for p in response.json()["problems"]}


def test_a_windows_tomcat_is_stored_exactly_as_sent(client: TestClient, accounts: Accounts) -> None:
    created = client.post("/api/v1/servers", json=_windows(), headers=auth(accounts, "operator"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["connection"] == "smb"
    assert body["app_path"] == TOMCAT
    assert body["keystore_folder"] == "C:\\certs"
    assert body["username"] == "CORP\\deploy"
    assert (body["smb_port"], body["smb_share"], body["smb_share_folder"], body["smb_encrypt"]) == (
        445,
        "C$",
        None,
        False,
    )
    apache = client.post(
        "/api/v1/servers",
        json=_windows(
            server_type="apache", tomcat_path=None, apache_path="D:\\Apache24", username="deploy@corp.example.com",
            smb_share="web", smb_share_folder="D:\\", smb_port=1445, smb_encrypt=True, keystore_folder=None,
        ),
        headers=auth(accounts, "operator"),
    )  # fmt: skip
    assert apache.status_code == 201, apache.text
    assert apache.json()["smb_encrypt"] is True
    assert apache.json()["smb_share_folder"] == "D:\\"
    with session_scope() as s:
        rows = {row.description: row for row in s.query(Server)}
        assert rows["win-1 Tomcat"].connection is ServerConnection.SMB
        assert rows["win-1 Tomcat"].password == "Pa$$w0rd;`x'\""
    # the same Tomcat folder in another letter case is the same server
    again = client.post(
        "/api/v1/servers", json=_windows(tomcat_path=TOMCAT.upper()), headers=auth(accounts, "operator")
    )
    assert again.status_code == 422
    assert "already registers" in again.text
    linux = {
        "description": "linux-web", "ip_address": "10.0.0.10", "username": "deploy", "password": "pw",
        "server_type": "nginx", "nginx_path": "/etc/nginx/", "ports": [443],
    }  # fmt: skip
    assert client.post("/api/v1/servers", json=linux, headers=auth(accounts, "operator")).status_code == 201
    # the Servers list filter "Windows (SMB)" finds exactly the Windows rows
    page = client.get(
        "/servers", params={"fc": "connection", "fo": "eq", "fv": "smb"}, headers=auth(accounts, "viewer")
    )
    assert page.status_code == 200
    assert "win-1 Tomcat" in page.text
    assert "linux-web" not in page.text
    # the Windows (SMB) tile counts them and links to that filter
    listing = client.get("/servers", headers=auth(accounts, "viewer")).text
    tile = re.search(
        r'<a class="tile" href="([^"]+)" data-testid="servers-tile-windows">.*?tile-count">(\d+)<', listing, re.S
    )
    assert tile is not None
    assert tile.group(2) == "2"
    linked = client.get(html.unescape(tile.group(1)), headers=auth(accounts, "viewer")).text
    assert "win-1 Tomcat" in linked
    assert "linux-web" not in linked


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"tomcat_path": "C:\\Tomcat\\..\\Windows"}, "tomcat_path", "`..`"),
        ({"tomcat_path": "/opt/tomcat"}, "tomcat_path", "absolute Windows path"),
        ({"tomcat_path": "C:\\Tomcat\\NUL"}, "tomcat_path", "reserved device"),
        ({"keystore_folder": "C:\\certs\\AUX.pem"}, "keystore_folder", "reserved device"),
        ({"keystore_folder": "C:\\Windows\\certs"}, "keystore_folder", "C:\\Windows"),
        ({"username": "CORP\\"}, "username", "not a Windows user name"),
        ({"username": "TOO-LONG-DOMAIN-NAME\\deploy"}, "username", "not a Windows domain name"),
        ({"username": "deploy@"}, "username", "not a DNS domain"),
        ({"password": None}, "password", "Windows account"),
        ({"service_name": None}, "service_name", "restarted by its service"),
        ({"server_type": "nginx", "tomcat_path": None, "nginx_path": "C:\\nginx"}, "server_type", "Nginx on Windows"),
        ({"smb_share": None}, "smb_share", "C$"),
        ({"smb_share": "bad/share"}, "smb_share", "not a share name"),
        ({"smb_share": "web"}, "smb_share_folder", "the folder the share web exposes"),
        ({"smb_share": "web", "smb_share_folder": "\\\\host\\web"}, "smb_share_folder", "drive folder"),
        ({"smb_share_folder": "D:\\"}, "smb_share_folder", "drive C:"),
        ({"smb_port": 0}, "smb_port", "greater than or equal to 1"),
        ({"ssh_private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"}, "connection", "ssh_private_key"),
        ({"use_sudo": True}, "connection", "use_sudo"),
        ({"connection": "vms"}, "connection", "ssh (Linux) or smb (Windows)"),
    ],
)
def test_bad_windows_input_is_refused_naming_the_field(
    client: TestClient, accounts: Accounts, overrides: dict[str, Any], field: str, words: str
) -> None:
    body = _windows(**overrides)
    if overrides.get("password", "") is None:
        body.pop("password", None)
    response = client.post("/api/v1/servers", json=body, headers=auth(accounts, "operator"))
    problems = _problems(response)
    assert field in problems, problems
    assert words in problems[field], problems
    with session_scope() as s:
        assert s.query(Server).count() == 0


def test_linux_servers_refuse_the_windows_fields(client: TestClient, accounts: Accounts) -> None:
    body = {
        "description": "web-1", "ip_address": "10.0.0.10", "username": "deploy", "password": "pw",
        "server_type": "nginx", "nginx_path": "/etc/nginx/", "ports": [443], "smb_share": "C$",
    }  # fmt: skip
    problems = _problems(client.post("/api/v1/servers", json=body, headers=auth(accounts, "operator")))
    assert "Windows (SMB) servers only" in problems["smb_share"]
    body.pop("smb_share")
    body["nginx_path"] = "C:\\nginx"
    problems = _problems(client.post("/api/v1/servers", json=body, headers=auth(accounts, "operator")))
    assert "absolute path on the server" in problems["nginx_path"]


def test_the_add_server_form_saves_a_windows_apache(client: TestClient, accounts: Accounts) -> None:
    token = login(client, "operator")
    page = client.get("/servers/new")
    assert 'data-testid="connection"' in page.text
    assert 'data-testid="smb-fields"' in page.text
    form = {
        "csrf_token": token, "connection": "smb", "description": "win-apache", "ip_address": "10.0.0.21",
        "username": "CORP\\deploy", "password": "pw", "server_type": "apache", "apache_path": "C:\\Apache24",
        "keystore_folder": "", "ports": "443", "service_name": "Apache2.4", "ssh_port": "22",
        "smb_port": "445", "smb_share": "C$", "smb_share_folder": "",
    }  # fmt: skip
    bad = client.post("/servers", data={**form, "apache_path": "C:\\Apache24\\..\\x"}, follow_redirects=False)
    assert bad.status_code == 422
    assert 'data-testid="error-apache_path"' in bad.text
    saved = client.post("/servers", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    with session_scope() as s:
        server = s.query(Server).one()
        assert (server.connection, server.app_path, server.smb_share) == (
            ServerConnection.SMB,
            "C:\\Apache24",
            "C$",
        )
        server_id = server.id
    edit = client.get(f"/servers/{server_id}")
    assert "Windows (SMB)" in edit.text
    assert 'value="C$"' in edit.text
    token = csrf_of(edit.text)
    edited = {**{k: v for k, v in form.items() if k != "connection"}, "csrf_token": token, "smb_port": "1445"}
    # a new SMB port sends the stored password elsewhere: it must be given again
    refused = client.post(f"/servers/{server_id}", data={**edited, "password": ""}, follow_redirects=False)
    assert refused.status_code == 422
    assert "give the password again: the SMB port changed" in refused.text
    changed = client.post(f"/servers/{server_id}", data=edited, follow_redirects=False)
    assert changed.status_code == 303, changed.text
    with session_scope() as s:
        assert s.get(Server, server_id).smb_port == 1445


def test_an_iis_site_is_stored_exactly_as_sent_with_its_timeouts_or_refused_naming_the_field(
    client: TestClient, accounts: Accounts
) -> None:
    site = 'Shop\'s "$site"; `x`'
    iis = _windows(server_type="iis", tomcat_path=None, iis_site=site, service_name=None, ports=[443],
                   smb_io_timeout=30)  # fmt: skip
    created = client.post("/api/v1/servers", json=iis, headers=auth(accounts, "operator"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["server_type"], body["app_path"], body["keystore_folder"]) == ("iis", site, "C:\\certs")
    assert (body["smb_connect_timeout"], body["smb_io_timeout"], body["smb_rpc_timeout"]) == (15, 30, 60)
    for overrides, field, words in (
        ({"keystore_folder": None, "description": "b"}, "keystore_folder", "give the Key Store Folder Path"),
        ({"connection": "ssh", "smb_share": None, "description": "c"}, "connection", "IIS is reached over SMB"),
        ({"smb_rpc_timeout": 0, "description": "d"}, "smb_rpc_timeout", "greater than or equal to 1"),
    ):
        response = client.post("/api/v1/servers", json={**iis, **overrides}, headers=auth(accounts, "operator"))
        problems = _problems(response)
        assert words in problems.get(field, ""), problems


def test_the_add_server_form_saves_an_iis_site(client: TestClient, accounts: Accounts) -> None:
    token = login(client, "operator")
    page = client.get("/servers/new")
    assert 'name="iis_site"' in page.text
    assert 'name="smb_io_timeout"' in page.text
    form = {
        "csrf_token": token, "connection": "smb", "description": "win-iis", "ip_address": "10.0.0.22",
        "username": "CORP\\deploy", "password": "pw", "server_type": "iis", "iis_site": "Default Web Site",
        "keystore_folder": "C:\\certs", "ports": "443", "service_name": "", "ssh_port": "22",
        "smb_port": "445", "smb_share": "C$", "smb_share_folder": "", "smb_connect_timeout": "10",
        "smb_io_timeout": "60", "smb_rpc_timeout": "120",
    }  # fmt: skip
    saved = client.post("/servers", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    with session_scope() as s:
        server = s.query(Server).one()
        assert (server.server_type, server.app_path, server.smb_connect_timeout, server.smb_rpc_timeout) == (
            "iis",
            "Default Web Site",
            10,
            120,
        )
