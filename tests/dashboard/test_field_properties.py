"""Property (issue 11, "Done means"): for every field type, through create and update via the API, random Unicode
(lone surrogates, controls, combining marks, very long strings) is either stored exactly (read back equal) or
refused with 422 naming the field. Never a 500, never a changed value.

Examples are bounded and derandomized so the whole file stays within about a minute per database on CI.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import httpx
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from certfleet.models.db import session_scope
from certfleet.models.orm import DirectoryProfile, SmimeUser
from tests.dashboard.conftest import Accounts, auth

EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples on every run: a CI failure can be replayed
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # one app and database serve every example
)

# Characters that broke or were silently changed before: controls, NUL, DEL, C1, Unicode spaces, combining marks,
# zero-width and bidi controls, BOM, U+FFFD, noncharacters, lone surrogates, separators and plain letters.
TRICKY = (
    "\x00\x07\t\n\r\x1b\x7f\x85 \u00a0\u3000\u0301\u0308\u200b\u200d\u202e\ufeff\ufffd\ufffe\ud800\udfffa.Z-_@,é北☕"
)
ANY_CHAR = st.characters(exclude_categories=())  # every code point, surrogates included
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=40),
    st.text(st.sampled_from(TRICKY), max_size=12),
    st.builds(lambda c, n: c * n, ANY_CHAR, st.integers(min_value=100, max_value=10_000)),
    st.from_regex(r"\A[A-Za-z][A-Za-z0-9 ._-]{0,30}[A-Za-z0-9]\Z"),  # plain names, so that some are stored
)
HOSTS = st.one_of(
    TEXT,
    st.ip_addresses().map(str),
    st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,8}(\.[a-z0-9x]{1,5}){0,3}\.?\Z"),  # names, and 0x7f.1-like disguises
)
EMAILS = st.one_of(TEXT, st.emails(), st.emails().map(lambda e: e + "<script>"))
TAGS = st.lists(st.one_of(TEXT, st.sampled_from(["env=prod", "env=prod", "R&D <team>", "北京 ☕"])), max_size=4)

_serial = itertools.count()


def send(client: TestClient, method: str, url: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    """JSON with non-ASCII escaped, as client libraries send it: a lone surrogate travels as \\ud800."""
    return client.request(
        method, url, content=json.dumps(body), headers={**headers, "Content-Type": "application/json"}
    )


def stored_or_refused(response: httpx.Response, field: str, value: Any, read_back: Callable[[], Any]) -> None:
    assert response.status_code in (200, 201, 422), (field, response.status_code, response.text[:300])
    event(f"{field}: {'refused' if response.status_code == 422 else 'stored'}")  # --hypothesis-show-statistics
    if response.status_code == 422:
        assert response.json()["field"] == field, (field, response.json())
        assert response.json()["detail"].startswith(f"{field}: "), response.json()
    else:
        assert read_back() == value, (field, value)


@EXAMPLES
@given(data=st.data())
def test_bot_fields_are_stored_exactly_or_refused(client: TestClient, accounts: Accounts, data: st.DataObject) -> None:
    operator = auth(accounts, "operator")
    field, strategy = data.draw(
        st.sampled_from(
            [
                ("name", TEXT),
                ("description", TEXT),
                ("group", TEXT),
                ("os", TEXT),
                ("ip_address", HOSTS),
                ("tags", TAGS),
            ]
        )
    )
    value = data.draw(strategy)

    def read(bot_id: int) -> Callable[[], Any]:
        return lambda: client.get(f"/api/v1/bots/{bot_id}", headers=operator).json()[field]

    # Create
    body = {"name": f"prop-{next(_serial)}", field: value}
    created = send(client, "POST", "/api/v1/bots", body, operator)
    bot_id = created.json()["id"] if created.status_code == 201 else None
    stored_or_refused(created, field, value, read(bot_id or 0))

    # Update, of a bot created with plain values
    if bot_id is None:
        bot_id = client.post("/api/v1/bots", json={"name": f"prop-{next(_serial)}"}, headers=operator).json()["id"]
    name = client.get(f"/api/v1/bots/{bot_id}", headers=operator).json()["name"]
    updated = send(client, "PUT", f"/api/v1/bots/{bot_id}", {"name": name, field: value}, operator)
    stored_or_refused(updated, field, value, read(bot_id))
    assert client.delete(f"/api/v1/bots/{bot_id}", headers=operator).status_code == 200


@EXAMPLES
@given(data=st.data())
def test_certificate_labels_are_stored_exactly_or_refused(
    client: TestClient, accounts: Accounts, data: st.DataObject
) -> None:
    operator = auth(accounts, "operator")
    field, strategy = data.draw(
        st.sampled_from([("tags", TAGS), ("batch_name", TEXT), ("organization", TEXT), ("reason", TEXT)])
    )
    value = data.draw(strategy)
    cert_id = client.post("/api/v1/certificates", json={"common_name": "prop.example.test"}, headers=operator).json()[
        "id"
    ]

    if field == "reason":  # Ignore's reason: its only "create"; Ignore again after Unignore is its update
        for _ in range(2):
            ignored = send(client, "POST", f"/api/v1/certificates/{cert_id}/ignore", {"reason": value}, operator)
            expected = "ignored by operator" + (f": {value}" if value else "")
            stored_or_refused(ignored, field, expected, lambda r=ignored: r.json()["status_reason"])
            client.post(f"/api/v1/certificates/{cert_id}/unignore", headers=operator)
        return

    new = {"common_name": "prop.example.test", field: value}
    created = send(client, "POST", "/api/v1/certificates", new, operator)
    stored_or_refused(created, field, value, lambda: created.json()[field])

    configure = {
        "ca_connector_id": accounts.boot.ca_connector_id,
        "provisioning_bot_id": accounts.boot.local_bot_id,
        "validity_days": 90,
        "renew_before_days": 30,
        field: value,
    }
    updated = send(client, "PUT", f"/api/v1/certificates/{cert_id}", configure, operator)
    stored_or_refused(
        updated,
        field,
        value,
        lambda: client.get(f"/api/v1/certificates/{cert_id}/configuration", headers=operator).json()[field],
    )


PROFILE = {"client_id": "00000000-0000-0000-0000-000000000001", "tenant_id": "00000000-0000-0000-0000-000000000002"}


@EXAMPLES
@given(data=st.data())
def test_smime_token_and_profile_fields_are_stored_exactly_or_refused(
    client: TestClient, accounts: Accounts, data: st.DataObject
) -> None:
    operator, admin = auth(accounts, "operator"), auth(accounts, "admin")
    kind, field, strategy = data.draw(
        st.sampled_from(
            [
                ("smime", "name", TEXT),
                ("smime", "email", EMAILS),
                ("smime", "designation", TEXT),
                ("token", "name", TEXT),
                ("profile", "description", TEXT),
                ("profile", "client_secret", TEXT),
            ]
        )
    )
    value = data.draw(strategy)
    serial = next(_serial)

    if kind == "smime":  # Import Manually is the only way in (no update)
        body = {"name": "Prop User", "email": f"prop{serial}@x.test", field: value}
        made = send(client, "POST", "/api/v1/smime-users", body, operator)
        stored_or_refused(made, field, value, lambda: made.json()[field])
        with session_scope() as s:  # a repeated address would be refused as a duplicate: start clean
            s.query(SmimeUser).delete()
        return

    if kind == "token":  # created, then listed (a token has no update)
        made = send(client, "POST", "/api/v1/tokens", {"name": value}, operator)
        listed = lambda: next(  # noqa: E731
            t["name"] for t in client.get("/api/v1/tokens", headers=operator).json() if t["id"] == made.json()["id"]
        )
        stored_or_refused(made, field, value, listed)
        return

    plain = {**PROFILE, "description": f"prop-{serial}", "client_secret": "s3cret"}

    def read(profile_id: int) -> Callable[[], Any]:
        if field == "description":
            return lambda: client.get("/api/v1/directory-profiles", headers=admin).json()[0]["description"]

        def secret() -> str | None:  # never in an answer: read from the database (decrypted)
            with session_scope() as s:
                profile = s.get(DirectoryProfile, profile_id)
                return profile.client_secret if profile else None

        return secret

    created = send(client, "POST", "/api/v1/directory-profiles", {**plain, field: value}, admin)
    profile_id = created.json()["id"] if created.status_code == 201 else None
    if field == "client_secret" and value == "":
        # An empty secret on create is "missing" (required), on update "keep the stored one": never stored.
        assert created.status_code == 422
        assert created.json()["field"] == "client_secret"
    else:
        stored_or_refused(created, field, value, read(profile_id or 0))
    if profile_id is None:
        profile_id = send(client, "POST", "/api/v1/directory-profiles", plain, admin).json()["id"]
    if not (field == "client_secret" and value == ""):
        updated = send(client, "PUT", f"/api/v1/directory-profiles/{profile_id}", {**plain, field: value}, admin)
        stored_or_refused(updated, field, value, read(profile_id))
    assert client.delete(f"/api/v1/directory-profiles/{profile_id}", headers=admin).status_code == 200
