"""The Tags filter finds the tags that were stored (issue 11 #6), on SQLite and PostgreSQL.

Tags are JSON lists; the old filter ran a LIKE over the JSON text, where `Ü` is `\\u00dc` and `"` is `\\"`, so
these real tags were never found. Equality is of one whole tag, compared in Unicode NFC; stored values are
never changed.
"""

from __future__ import annotations

import unicodedata

from fastapi.testclient import TestClient

from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, Server, ServerConnection
from tests.dashboard.conftest import Accounts, auth

UNICODE_TAG = "Ünïcødé Café 北京 ☕"
MARKUP_TAG = 'R&D <team> "prod"'
DECOMPOSED = "Cafe\u0301 cre\u0300me"  # e + combining acute, e + combining grave
PRECOMPOSED = "Café crème"


def _names(client: TestClient, accounts: Accounts, path: str, flt: str, key: str) -> list[str]:
    h = auth(accounts, "viewer")
    response = client.get(f"/api/v1/{path}", params={"filter": [flt], "per_page": 500}, headers=h)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["items"])
    return sorted(item[key] for item in body["items"])


def _seed(client: TestClient, accounts: Accounts) -> None:
    for name, tags in [("unicode-bot", [UNICODE_TAG, "env=prod"]), ("plain-bot", ["env=prod", "Café"]),
                       ("markup-bot", [MARKUP_TAG])]:  # fmt: skip
        created = client.post("/api/v1/bots", json={"name": name, "tags": tags}, headers=auth(accounts, "operator"))
        assert created.status_code == 201, created.text
        assert created.json()["tags"] == tags
    with session_scope() as s:
        s.add(Certificate(common_name="markup.example.test", tags=[MARKUP_TAG]))
        s.add(Certificate(common_name="decomposed.example.test", tags=[DECOMPOSED]))
        s.add(Certificate(common_name="precomposed.example.test", tags=[PRECOMPOSED]))
        s.add(Certificate(common_name="other.example.test", tags=["R&D", "team", "prod"]))
        s.add(Server(description="web", host="web.example.test", ports=[443, 8443], connection=ServerConnection.SSH,
                     server_type="nginx"))  # fmt: skip
        s.add(Server(description="alt", host="alt.example.test", ports=[4443], connection=ServerConnection.SSH,
                     server_type="nginx"))  # fmt: skip


def test_tag_equals_finds_unicode_and_markup_tags(client: TestClient, accounts: Accounts) -> None:
    _seed(client, accounts)
    assert _names(client, accounts, "bots", f"tags:eq:{UNICODE_TAG}", "name") == ["unicode-bot"]
    assert _names(client, accounts, "bots", f"tags:eq:{MARKUP_TAG}", "name") == ["markup-bot"]
    assert _names(client, accounts, "certificates", f"tags:eq:{MARKUP_TAG}", "common_name") == ["markup.example.test"]
    # One whole tag: part of a tag, or the tag with other words, is not equal.
    assert _names(client, accounts, "bots", "tags:eq:Café", "name") == ["plain-bot"]
    assert _names(client, accounts, "bots", "tags:eq:Ünïcødé Café", "name") == []
    assert _names(client, accounts, "certificates", "tags:eq:R&D", "common_name") == ["other.example.test"]


def test_tag_equals_compares_in_nfc_and_keeps_what_was_stored(client: TestClient, accounts: Accounts) -> None:
    _seed(client, accounts)
    assert unicodedata.normalize("NFC", DECOMPOSED) == PRECOMPOSED != DECOMPOSED
    both = ["decomposed.example.test", "precomposed.example.test"]
    assert _names(client, accounts, "certificates", f"tags:eq:{PRECOMPOSED}", "common_name") == both
    assert _names(client, accounts, "certificates", f"tags:eq:{DECOMPOSED}", "common_name") == both
    items = client.get(
        "/api/v1/certificates", params={"filter": ["tags:eq:Café crème"]}, headers=auth(accounts, "viewer")
    ).json()["items"]
    stored = {i["common_name"]: i["tags"] for i in items}
    assert stored == {"decomposed.example.test": [DECOMPOSED], "precomposed.example.test": [PRECOMPOSED]}


def test_tag_contains_looks_inside_each_tag_ignoring_case(client: TestClient, accounts: Accounts) -> None:
    _seed(client, accounts)
    assert _names(client, accounts, "bots", "tags:contains:CAFÉ 北京", "name") == ["unicode-bot"]
    assert _names(client, accounts, "bots", "tags:contains:ünïcødé", "name") == ["unicode-bot"]
    assert _names(client, accounts, "bots", 'tags:contains:<team> "PROD', "name") == ["markup-bot"]
    assert _names(client, accounts, "certificates", "tags:contains:e\u0301 cr", "common_name") == [
        "decomposed.example.test",
        "precomposed.example.test",
    ]
    # The JSON around the tags is not searched, and LIKE wildcards are plain characters.
    assert _names(client, accounts, "bots", 'tags:contains:", "', "name") == []
    assert _names(client, accounts, "bots", "tags:contains:[", "name") == []
    assert _names(client, accounts, "bots", "tags:contains:%", "name") == []
    assert _names(client, accounts, "bots", "tags:contains:env_prod", "name") == []


def test_port_list_filters_by_number(client: TestClient, accounts: Accounts) -> None:
    _seed(client, accounts)
    assert _names(client, accounts, "servers", "ports:eq:443", "description") == ["web"]
    assert _names(client, accounts, "servers", "ports:eq:8443", "description") == ["web"]
    assert _names(client, accounts, "servers", "ports:contains:443", "description") == ["alt", "web"]
    assert _names(client, accounts, "servers", "ports:eq:44", "description") == []
