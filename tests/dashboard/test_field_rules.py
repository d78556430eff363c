"""Issue 11 items 9 and 12 through the API and the forms: invalid Unicode and every inconsistent rule get 422 naming
the field and the rule; what is accepted is stored exactly as sent, on create and on update alike."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi.testclient import TestClient

from certfleet.models.db import session_scope
from certfleet.models.orm import ApiToken, Bot, Server, ServerConnection
from tests.dashboard.conftest import Accounts, auth, login

SURROGATE = "abc\ud800def"
GUID = "00000000-0000-0000-0000-000000000001"  # a lone surrogate: valid JSON (\ud800), not Unicode; it used to give 500


def send(client: TestClient, method: str, url: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    """JSON as a client library writes it: non-ASCII escaped, so a lone surrogate travels as \\ud800."""
    data = json.dumps(body)  # ensure_ascii: what httpx cannot encode itself
    return client.request(method, url, content=data, headers={**headers, "Content-Type": "application/json"})


def refused(response: httpx.Response, field: str, words: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field, body
    assert body["detail"].startswith(f"{field}: "), body
    assert words in body["detail"], body


def _certificate(client: TestClient, accounts: Accounts, **extra: Any) -> int:
    made = client.post(
        "/api/v1/certificates", json={"common_name": "rules.example.test", **extra}, headers=auth(accounts, "operator")
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def _configure(accounts: Accounts, **labels: Any) -> dict[str, Any]:
    return {
        "ca_connector_id": accounts.boot.ca_connector_id,
        "provisioning_bot_id": accounts.boot.local_bot_id,
        "validity_days": 90,
        "renew_before_days": 30,
        **labels,
    }


def test_a_lone_surrogate_gets_422_naming_the_field_everywhere(client: TestClient, accounts: Accounts) -> None:
    operator, admin = auth(accounts, "operator"), auth(accounts, "admin")
    words = "invalid Unicode: lone surrogate U+D800 at position 3"
    refused(send(client, "POST", "/api/v1/bots", {"name": SURROGATE}, operator), "name", words)
    refused(
        send(client, "POST", "/api/v1/bots", {"name": "b", "description": SURROGATE}, operator), "description", words
    )
    bot = client.post("/api/v1/bots", json={"name": "surrogate-bot"}, headers=operator).json()["id"]
    refused(send(client, "PUT", f"/api/v1/bots/{bot}", {"name": SURROGATE}, operator), "name", words)
    refused(
        send(client, "POST", "/api/v1/smime-users", {"name": SURROGATE, "email": "a@x.test"}, operator), "name", words
    )
    refused(send(client, "POST", "/api/v1/tokens", {"name": SURROGATE}, operator), "name", words)
    profile = {"client_id": GUID, "tenant_id": GUID, "client_secret": "s3cret", "description": SURROGATE}
    refused(send(client, "POST", "/api/v1/directory-profiles", profile, admin), "description", words)
    refused(
        send(
            client, "POST", "/api/v1/certificates", {"common_name": "x.example.test", "batch_name": SURROGATE}, operator
        ),
        "batch_name",
        words,
    )
    cert = _certificate(client, accounts)
    refused(
        send(client, "PUT", f"/api/v1/certificates/{cert}", _configure(accounts, batch_name=SURROGATE), operator),
        "batch_name",
        words,
    )
    refused(
        send(client, "POST", f"/api/v1/certificates/{cert}/ignore", {"reason": SURROGATE}, operator), "reason", words
    )
    with session_scope() as s:
        assert s.query(Bot).filter(Bot.name == "surrogate-bot").count() == 1  # the refused update changed nothing


def test_the_422_handler_survives_a_lone_surrogate_in_the_input_it_refuses(
    client: TestClient, accounts: Accounts
) -> None:
    # A wrong type: pydantic's own error used to echo the input (with its surrogate) and the handler crashed.
    response = send(
        client, "POST", "/api/v1/bots", {"name": [SURROGATE], "purpose": SURROGATE}, auth(accounts, "operator")
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "name"
    assert "\ud800" not in response.text
    # A message that quotes the value (an unknown purpose) is encodable too.
    quoted = send(client, "POST", "/api/v1/bots", {"name": "p", "purpose": SURROGATE}, auth(accounts, "operator"))
    assert quoted.status_code == 422, quoted.text
    assert quoted.json()["field"] == "purpose"


def test_leading_tabs_and_cr_are_refused_on_create_and_update_alike(client: TestClient, accounts: Accounts) -> None:
    operator = auth(accounts, "operator")
    refused(client.post("/api/v1/bots", json={"name": "\tedge"}, headers=operator), "name", "control character U+0009")
    refused(client.post("/api/v1/bots", json={"name": "\redge"}, headers=operator), "name", "control character U+000D")
    bot = client.post("/api/v1/bots", json={"name": "edge"}, headers=operator).json()["id"]
    refused(
        client.put(f"/api/v1/bots/{bot}", json={"name": "\tedge"}, headers=operator), "name", "U+0009 at position 0"
    )
    # A description may hold tabs and line breaks: kept exactly on create and on update.
    made = client.post("/api/v1/bots", json={"name": "multi", "description": "\tone\r\ntwo"}, headers=operator)
    assert made.json()["description"] == "\tone\r\ntwo"
    put = client.put(
        f"/api/v1/bots/{made.json()['id']}", json={"name": "multi", "description": "\rthree"}, headers=operator
    )
    assert put.json()["description"] == "\rthree"


def test_whitespace_only_is_refused_on_create_and_update(client: TestClient, accounts: Accounts) -> None:
    operator = auth(accounts, "operator")
    refused(
        client.post("/api/v1/bots", json={"name": "w", "description": "   "}, headers=operator),
        "description",
        "only whitespace",
    )
    bot = client.post("/api/v1/bots", json={"name": "w", "group": "g"}, headers=operator).json()["id"]
    refused(
        client.put(f"/api/v1/bots/{bot}", json={"name": "w", "description": " \t "}, headers=operator),
        "description",
        "only whitespace",
    )
    refused(
        client.put(f"/api/v1/bots/{bot}", json={"name": "w", "group": "  "}, headers=operator),
        "group",
        "only whitespace",
    )
    assert client.get(f"/api/v1/bots/{bot}", headers=operator).json()["group"] == "g"


def test_an_empty_description_on_update_is_stored_not_ignored(client: TestClient, accounts: Accounts) -> None:
    operator = auth(accounts, "operator")
    bot = client.post("/api/v1/bots", json={"name": "d", "description": "old"}, headers=operator).json()["id"]
    updated = client.put(f"/api/v1/bots/{bot}", json={"name": "d", "description": ""}, headers=operator)
    assert updated.status_code == 200, updated.text
    assert client.get(f"/api/v1/bots/{bot}", headers=operator).json()["description"] == ""
    cleared = client.put(f"/api/v1/bots/{bot}", json={"name": "d"}, headers=operator)
    assert cleared.json()["description"] is None


def test_a_long_token_name_is_refused_not_truncated(client: TestClient, accounts: Accounts) -> None:
    response = client.post("/api/v1/tokens", json={"name": "t" * 10_000}, headers=auth(accounts, "viewer"))
    refused(response, "name", "name: 10000 characters, at most 120")
    with session_scope() as s:
        assert s.query(ApiToken).filter(ApiToken.name.like("ttt%")).count() == 0
    kept = client.post("/api/v1/tokens", json={"name": " leading"}, headers=auth(accounts, "viewer"))
    refused(kept, "name", "starts with whitespace")
    exact = client.post("/api/v1/tokens", json={"name": "t" * 120}, headers=auth(accounts, "viewer"))
    assert exact.status_code == 201
    assert exact.json()["name"] == "t" * 120


def test_a_long_tag_is_refused_on_create_and_on_update(client: TestClient, accounts: Accounts) -> None:
    operator = auth(accounts, "operator")
    long_tag = "x" * 10_000
    new = {"common_name": "t.example.test", "tags": [long_tag]}
    too_long = "tag 0: 10000 characters, at most 100"
    refused(client.post("/api/v1/certificates", json=new, headers=operator), "tags", too_long)
    cert = _certificate(client, accounts, tags=["keep"])
    refused(client.put(f"/api/v1/certificates/{cert}", json=_configure(accounts, tags=[long_tag]), headers=operator),
            "tags", "tag 0: 10000 characters, at most 100")  # fmt: skip
    assert client.get(f"/api/v1/certificates/{cert}", headers=operator).json()["tags"] == ["keep"]
    refused(client.post("/api/v1/bots", json={"name": "tagged", "tags": [long_tag]}, headers=operator), "tags", "10000")
    bot = client.post("/api/v1/bots", json={"name": "tagged"}, headers=operator).json()["id"]
    refused(
        client.put(f"/api/v1/bots/{bot}", json={"name": "tagged", "tags": ["a", "a"]}, headers=operator),
        "tags",
        "the same tag",
    )


def test_hosts_that_are_ipv4_in_disguise_are_refused(client: TestClient, accounts: Accounts) -> None:
    operator = auth(accounts, "operator")
    refused(client.post("/api/v1/bots", json={"name": "h", "ip_address": "0x7f.1"}, headers=operator),
            "ip_address", "looks like an IPv4 address")  # fmt: skip
    bot = client.post("/api/v1/bots", json={"name": "h", "ip_address": "2001:DB8::1"}, headers=operator).json()
    assert bot["ip_address"] == "2001:DB8::1"  # stored as written
    refused(client.put(f"/api/v1/bots/{bot['id']}", json={"name": "h", "ip_address": "127.1"}, headers=operator),
            "ip_address", "looks like an IPv4 address")  # fmt: skip
    scan = client.post("/api/v1/discovery/endpoints", json={"targets": ["0x7f.1"]}, headers=operator)
    assert scan.status_code == 422, scan.text
    assert scan.json()["field"] == "targets"
    assert "looks like an IPv4 address" in scan.json()["detail"]


def test_an_email_address_is_checked_and_kept_as_written(client: TestClient, accounts: Accounts) -> None:
    operator = auth(accounts, "operator")
    for address, words in (("alice@x.test<script>", "the domain after '@'"), ("a" * 10_000 + "@x.test", "at most 254")):
        refused(client.post("/api/v1/smime-users", json={"name": "Alice", "email": address}, headers=operator),
                "email", words)  # fmt: skip
    made = client.post("/api/v1/smime-users", json={"name": "Alice", "email": "Alice@X.test"}, headers=operator)
    assert made.status_code == 201, made.text
    assert made.json()["email"] == "Alice@X.test"
    refused(client.post("/api/v1/smime-users", json={"name": "A", "email": "alice@x.TEST"}, headers=operator),
            "email", "already in the S/MIME list")  # fmt: skip


def test_a_nul_is_refused_with_its_position(client: TestClient, accounts: Accounts) -> None:
    operator = auth(accounts, "operator")
    refused(client.post("/api/v1/bots", json={"name": "abc\x00def"}, headers=operator),
            "name", "name: control character U+0000 at position 3")  # fmt: skip
    refused(client.post("/api/v1/bots", json={"name": "n", "description": "abc\x00"}, headers=operator),
            "description", "description: control character U+0000 at position 3")  # fmt: skip
    with session_scope() as s:
        assert s.query(Bot).filter(Bot.name.like("abc%")).count() == 0


def test_forms_follow_the_same_rules(client: TestClient, accounts: Accounts) -> None:
    token = login(client, "operator")
    bad = client.post("/bots", data={"name": "\tform-bot", "csrf_token": token})
    assert bad.status_code == 422
    assert "name: control character U+0009 at position 0" in bad.text
    good = client.post(
        "/bots",
        data={
            "name": "form-bot",
            "description": "",
            "ip_address": "",
            "tags": "env=prod, R&D <team>",
            "csrf_token": token,
        },
    )
    assert good.status_code == 200, good.text
    with session_scope() as s:
        bot = s.query(Bot).filter(Bot.name == "form-bot").one()
        assert (bot.description, bot.ip_address, bot.tags) == (None, None, ["env=prod", "R&D <team>"])
    smime = client.post("/smime/import", data={"name": "Bob", "email": "bob@x.test<script>", "csrf_token": token})
    assert smime.status_code == 422
    assert "email: the domain after" in smime.text


def test_a_form_field_that_is_not_utf8_is_refused_not_replaced(client: TestClient, accounts: Accounts) -> None:
    token = login(client, "operator")
    for raw in (b"abc%FFdef", b"abc%ED%A0%80def"):  # a stray byte; a surrogate written as UTF-8
        body = b"csrf_token=" + token.encode() + b"&name=" + raw
        bad = client.post(
            "/bots",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Referer": "http://127.0.0.1/bots/new"},
            follow_redirects=True,
        )
        assert "name: invalid Unicode: byte 0x" in bad.text
        assert "at byte 3 is not UTF-8" in bad.text
    with session_scope() as s:
        assert s.query(Bot).filter(Bot.name.like("abc%")).count() == 0  # never stored with U+FFFD
    api = client.post(
        "/api/v1/bots",
        content=b"name=abc%FF",
        headers={**auth(accounts, "operator"), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert api.status_code == 422
    assert api.json()["field"] == "name"


def test_usernames_and_guids_are_checked_whole_not_up_to_a_final_newline(
    client: TestClient, accounts: Accounts
) -> None:
    admin = auth(accounts, "admin")
    user = client.post("/api/v1/users", json={"username": "carol\n", "password": "long enough pw"}, headers=admin)
    refused(user, "username", "letters, digits")
    spaced = client.post("/api/v1/users", json={"username": " carol", "password": "long enough pw"}, headers=admin)
    refused(spaced, "username", "letters, digits")
    profile = {"client_id": GUID + "\n", "tenant_id": GUID, "client_secret": "s3cret", "description": "nl"}
    refused(client.post("/api/v1/directory-profiles", json=profile, headers=admin), "client_id", "must be a GUID")
    upper = {**profile, "client_id": GUID.upper().replace("1", "A")}
    made = client.post("/api/v1/directory-profiles", json=upper, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["client_id"] == upper["client_id"]  # stored as written, not lower-cased


def test_certificate_names_take_wildcards_only_as_the_whole_leftmost_label(
    client: TestClient, accounts: Accounts
) -> None:
    operator = auth(accounts, "operator")
    new = {"common_name": "*.Example.test", "sans": ["*.Example.test", "Example.test", "10.0.0.7"]}
    created = client.post("/api/v1/certificates", json=new, headers=operator)
    assert created.status_code == 201, created.text
    shown = client.get(f"/api/v1/certificates/{created.json()['id']}", headers=operator).json()
    assert (shown["common_name"], shown["sans"]) == ("*.Example.test", ["*.Example.test", "Example.test", "10.0.0.7"])
    for name, words in [
        ("w*.example.test", "a wildcard must be the whole leftmost label"),
        ("*.*.example.test", "only the leftmost label may be a wildcard"),
        ("www.*.example.test", "a wildcard must be the whole leftmost label"),
        ("*.test", "a wildcard needs a domain of at least two labels"),
        ("*.10.0.0.7", "not IP addresses"),
        ("**.example.test", "a wildcard must be the whole leftmost label"),
        ("*..example.test", "label '' is not 1-63"),
    ]:
        refused(client.post("/api/v1/certificates", json={"common_name": name}, headers=operator), "common_name", words)
        bad_san = {"common_name": "ok.example.test", "sans": ["ok.example.test", name]}
        refused(client.post("/api/v1/certificates", json=bad_san, headers=operator), "sans", words)
    twice = {"common_name": "a.example.test", "sans": ["a.example.test", "A.example.test"]}
    refused(client.post("/api/v1/certificates", json=twice, headers=operator), "sans", "A.example.test is given twice")


def test_edge_whitespace_in_a_common_name_path_or_sni_name_is_refused_not_trimmed(
    client: TestClient, accounts: Accounts
) -> None:
    operator = auth(accounts, "operator")
    padded = client.post("/api/v1/certificates", json={"common_name": " padded.example.test"}, headers=operator)
    refused(padded, "common_name", "starts with whitespace (U+0020)")
    cert_id = _certificate(client, accounts)
    with session_scope() as s:
        server = Server(description="edge-1", host="127.0.0.1", ports=[443], connection=ServerConnection.LOCAL,
                        server_type="nginx", bot_id=accounts.boot.local_bot_id)  # fmt: skip
        s.add(server)
        s.flush()
        server_id = server.id
    target = {"server_id": server_id, "port": 443, "cert_path": "/srv/tls/a.pem", "key_path": "/srv/tls/a.key"}
    url = f"/api/v1/certificates/{cert_id}/targets"
    refused(client.post(url, json={**target, "cert_path": "/srv/tls/a.pem "}, headers=operator), "cert_path",
            "ends with whitespace (U+0020)")  # fmt: skip
    refused(client.post(url, json={**target, "server_name": " www.example.test"}, headers=operator), "server_name",
            "starts with whitespace")  # fmt: skip
    made = client.post(url, json=target, headers=operator)
    assert made.status_code == 201, made.text
    assert made.json()["targets"][0]["cert_path"] == "/srv/tls/a.pem", made.json()


def test_true_or_false_for_a_number_is_refused_not_taken_as_one_or_zero(client: TestClient, accounts: Accounts) -> None:
    # pydantic took JSON true as 1: validity_days true was stored as 1 day, ca_connector_id true chose connector 1
    operator = auth(accounts, "operator")
    made = client.post(
        "/api/v1/certificates", json={"common_name": "b.example.test", "validity_days": True}, headers=operator
    )
    refused(made, "validity_days", "a number is expected, not true or false")
    cert_id = _certificate(client, accounts)
    configured = client.put(
        f"/api/v1/certificates/{cert_id}",
        json=_configure(accounts, ca_connector_id=True),
        headers=operator,
    )
    refused(configured, "ca_connector_id", "not true or false")
    server = {"description": "b", "ip_address": "10.0.0.9", "username": "u", "password": "p", "server_type": "nginx",
              "nginx_path": "/etc/nginx/", "ports": [True]}  # fmt: skip
    on_server = client.post("/api/v1/servers", json=server, headers=operator)  # its messages stand beside the field
    assert on_server.status_code == 422, on_server.text
    assert (on_server.json()["field"], on_server.json()["detail"]) == (
        "ports",
        "a number is expected, not true or false",
    )
    rotation = client.post(
        "/api/v1/rotations", json={"certificate_ids": [cert_id], "failure_budget": True}, headers=operator
    )
    refused(rotation, "failure_budget", "not true or false")
    connector = {"kind": "digicert", "name": "DC", "api_key": "k", "organization_id": True}
    response = client.post("/api/v1/ca-connectors", json=connector, headers=auth(accounts, "admin"))
    assert response.status_code == 422, response.text
    assert "organization_id: a number is expected, not true or false" in response.json()["detail"]


def test_a_key_the_request_does_not_have_is_refused_naming_it(client: TestClient, accounts: Accounts) -> None:
    # a misspelt key was ignored: the certificate got the default validity and the caller never knew
    body = {"common_name": "typo.example.test", "validty_days": 90}
    response = client.post("/api/v1/certificates", json=body, headers=auth(accounts, "operator"))
    refused(response, "validty_days", "Extra inputs are not permitted")
    token = client.post("/api/v1/tokens", json={"name": "t", "expires_days": 5}, headers=auth(accounts, "viewer"))
    refused(token, "expires_days", "Extra inputs are not permitted")
    with session_scope() as s:
        assert s.query(ApiToken).filter_by(name="t").count() == 0
