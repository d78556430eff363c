"""Regression tests for what the schemathesis run (test_api_fuzz.py) found."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.dashboard.conftest import Accounts, auth

TOO_BIG = 2**63  # one past the largest database id


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("PUT", f"/api/v1/servers/{TOO_BIG}", "server_id"),
        ("PATCH", f"/api/v1/users/{TOO_BIG}", "user_id"),
        ("POST", f"/api/v1/certificates/{TOO_BIG}/download", "cert_id"),
        ("DELETE", f"/api/v1/certificates/1/targets/{TOO_BIG}", "target_id"),
    ],
)
def test_an_id_past_64_bits_is_refused_naming_it(
    method: str, path: str, field: str, database: str, accounts: Accounts, client: TestClient
) -> None:
    # Was a 500: the number reached SQLite (OverflowError).
    response = client.request(method, path, headers=auth(accounts, "admin"), json={})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_openapi_documents_the_refusal_body(database: str, accounts: Accounts, client: TestClient) -> None:
    # The document said a 422 holds FastAPI's list of errors; certfleet answers {"detail": str, "field": ...}.
    spec = client.get("/api/v1/openapi.json", headers=auth(accounts, "viewer")).json()
    refusal = spec["components"]["schemas"]["HTTPValidationError"]
    assert refusal["properties"]["detail"]["type"] == "string"
    answer = client.get("/api/v1/bots?page=0", headers=auth(accounts, "viewer"))
    assert answer.status_code == 422
    assert isinstance(answer.json()["detail"], str)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
@pytest.mark.parametrize("fmt", ["xlsx", "pdf"])
def test_an_export_sorted_by_an_unknown_column_is_refused_before_the_download(
    fmt: str, database: str, accounts: Accounts, client: TestClient
) -> None:
    # Was a broken download: the sort key was checked only once the file had started streaming.
    response = client.get("/api/v1/users/export", params={"format": fmt, "sort": "0"}, headers=auth(accounts, "admin"))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "sort"
    assert "unknown column '0'" in response.json()["detail"]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_non_ascii_name_given_twice_is_refused_not_a_server_error(
    database: str, accounts: Accounts, client: TestClient
) -> None:
    """Found by the API fuzzer: SQLite's lower() folds ASCII only, so the case-blind duplicate check missed the
    exact same non-ASCII name and the insert hit the unique constraint (500)."""
    name = "H\u00e4\u00d2\u00b8\u00fc\u00da\u00fd"
    first = client.post("/api/v1/bots", json={"name": name}, headers=auth(accounts, "admin"))
    assert first.status_code == 201, first.text
    again = client.post("/api/v1/bots", json={"name": name}, headers=auth(accounts, "admin"))
    assert again.status_code == 422
    assert again.json()["field"] == "name"
