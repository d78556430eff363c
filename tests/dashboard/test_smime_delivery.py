"""The S/MIME delivery setting through the API and the page: each refused value is a 422 naming its field, the
password is sealed and never returned or echoed, and a stuck order's reason shows in the users list."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from certfleet.models.db import session_scope
from certfleet.models.orm import SmimeOrder
from certfleet.smime import service
from tests.dashboard.conftest import Accounts, auth, login

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

SECRET = "Sh4re pa$$ word"
SMB = {"method": "smb", "host": "files.example.com", "share": "Certificates", "folder": "S-MIME\\Users",
       "username": "EXAMPLE\\certfleet", "password": SECRET}  # fmt: skip
MAIL = {"method": "email", "host": "smtp.example.com", "port": 587, "security": "starttls",
        "sender": "pki@example.com", "username": "pki@example.com", "password": SECRET}  # fmt: skip


def put(client: TestClient, accounts: Accounts, body: dict[str, Any], role: str = "admin") -> Any:
    return client.put("/api/v1/smime-delivery", json=body, headers=auth(accounts, role))


def test_default_is_the_data_directorys_folder(client: TestClient, accounts: Accounts) -> None:
    shown = client.get("/api/v1/smime-delivery", headers=auth(accounts, "viewer")).json()
    assert shown["method"] == "folder"
    assert shown["settings"]["path"].endswith("/smime-delivery")
    assert (shown["saved"], shown["password_set"]) == (False, False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"method": "ftp"}, "method"),
        ({"method": "folder", "path": "relative/dir"}, "path"),
        ({"method": "folder", "path": "/srv/../etc"}, "path"),
        ({"method": "folder", "path": "/srv/smime", "password": "x"}, "password"),
        ({**SMB, "host": "bad host"}, "host"),
        ({**SMB, "port": 70000}, "port"),
        ({**SMB, "share": "a/b"}, "share"),
        ({**SMB, "share": ""}, "share"),
        ({**SMB, "folder": "..\\Windows"}, "folder"),
        ({**SMB, "folder": "\\S-MIME"}, "folder"),
        ({**SMB, "username": " certfleet"}, "username"),
        ({k: v for k, v in SMB.items() if k != "password"}, "password"),
        ({**SMB, "encrypt": "maybe"}, "encrypt"),
        ({**MAIL, "port": "x"}, "port"),
        ({**MAIL, "security": "ssl"}, "security"),
        ({**MAIL, "sender": "not an address"}, "sender"),
        ({**MAIL, "ca_file": "ca.pem"}, "ca_file"),
        ({k: v for k, v in MAIL.items() if k != "password"}, "password"),
    ],
)
def test_a_refused_value_names_its_field(
    client: TestClient, accounts: Accounts, body: dict[str, Any], field: str
) -> None:
    response = put(client, accounts, body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert SECRET not in response.text


def test_only_an_admin_changes_it_and_the_password_is_sealed_and_never_returned(
    client: TestClient, accounts: Accounts
) -> None:
    assert put(client, accounts, SMB, role="operator").status_code == 403
    saved = put(client, accounts, SMB)
    assert saved.status_code == 200, saved.text
    shown = saved.json()
    assert shown["method"] == "smb"
    assert shown["settings"]["folder"] == "S-MIME\\Users"  # stored exactly as sent
    assert shown["settings"]["port"] == 445
    assert shown["password_set"] is True
    assert shown["summary"] == "SMB share \\\\files.example.com\\Certificates\\S-MIME\\Users as EXAMPLE\\certfleet"
    assert SECRET not in saved.text
    assert SECRET not in client.get("/api/v1/smime-delivery", headers=auth(accounts, "viewer")).text
    with session_scope() as s:
        raw = s.connection().exec_driver_sql("SELECT secret FROM smime_delivery").scalar()
    assert raw is not None
    assert SECRET not in raw
    kept = put(client, accounts, {k: v for k, v in SMB.items() if k != "password"} | {"encrypt": True})
    assert kept.status_code == 200, kept.text
    assert kept.json()["password_set"] is True  # same method, no password sent: the stored one is kept
    assert kept.json()["settings"]["encrypt"] is True
    # Another method never inherits the share's password.
    assert put(client, accounts, {k: v for k, v in MAIL.items() if k != "password"}).json()["field"] == "password"
    no_login = {k: v for k, v in MAIL.items() if k not in ("password", "username")}
    mailed = put(client, accounts, no_login)
    assert mailed.status_code == 200, mailed.text
    assert mailed.json()["password_set"] is False
    assert mailed.json()["summary"] == "e-mail from pki@example.com via smtp.example.com:587 (starttls)"


def test_the_page_shows_and_saves_the_setting(client: TestClient, accounts: Accounts) -> None:
    csrf = login(client, "admin")
    page = client.get("/smime/delivery?method=smb")
    assert page.status_code == 200
    assert 'name="share"' in page.text
    assert 'data-testid="delivery-summary"' in page.text
    refused = client.post("/smime/delivery", data={**SMB, "share": "a/b", "csrf_token": csrf}, follow_redirects=False)
    assert refused.status_code == 422
    assert "share: a share name" in refused.text
    assert SECRET not in refused.text  # never echoed
    saved = client.post("/smime/delivery", data={**SMB, "csrf_token": csrf}, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    shown = client.get("/smime/delivery").text
    assert "SMB share \\\\files.example.com\\Certificates\\S-MIME\\Users" in shown
    assert "stored; leave empty to keep it" in shown
    assert "Delivery settings" in client.get("/smime").text


def test_a_stuck_orders_reason_shows_in_the_users_list(client: TestClient, accounts: Accounts) -> None:
    with session_scope() as s:
        user = service.import_user(s, name="Ann", email="ann@example.com", designation=None, actor="t")
        user.status = user.status.CERTIFICATE_ISSUED
        stuck = "the PKCS#12 mail to ann@example.com: SMTP 550 no"
        s.add(SmimeOrder(user_id=user.id, ca_connector_id=accounts.boot.ca_connector_id, idempotency_key="k1",
                         state="Certificate Issued", error=stuck))  # fmt: skip
    rows = client.get("/api/v1/smime-users", headers=auth(accounts, "viewer")).json()
    assert rows["items"][0]["last_error"] == "the PKCS#12 mail to ann@example.com: SMTP 550 no"
    login(client, "viewer")
    assert "the PKCS#12 mail to ann@example.com: SMTP 550 no" in client.get("/smime").text
