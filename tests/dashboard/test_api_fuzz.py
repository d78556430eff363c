"""Schemathesis against certfleet's own /api/v1/openapi.json, in-process, as an Admin API token.

Every operation gets a bounded, derandomized number of generated requests on a fresh SQLite database (one
operation cannot spoil another by revoking the token or deleting the admin); each response must not be a 5xx
and must match the schema the OpenAPI document states for its status code.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from certfleet.dashboard.app import create_app
from tests.dashboard.conftest import Accounts, auth

# CI budget: about 2 minutes for the whole API on a loaded 2-core machine.
CASES_PER_OPERATION = int(os.environ.get("CERTFLEET_API_FUZZ_CASES", "12"))


def _load_schema(client: TestClient, headers: dict[str, str]) -> Any:
    response = client.get("/api/v1/openapi.json", headers=headers)
    assert response.status_code == 200, response.text
    return schemathesis.openapi.from_dict(response.json())


def _operation_ids() -> list[str]:
    """The operations, read from the app's own OpenAPI document (no database needed to build it)."""
    spec = create_app().openapi()
    return sorted(
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        if path.startswith("/api/v1")
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    )


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
@pytest.mark.parametrize("operation_id", _operation_ids())
def test_operation(operation_id: str, database: str, accounts: Accounts, client: TestClient) -> None:
    headers = auth(accounts, "admin")
    schema = _load_schema(client, headers)
    method, path = operation_id.split(" ", 1)
    operation = schema[path][method]

    @settings(
        max_examples=CASES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: schemathesis.Case) -> None:
        # schemathesis' own ASGI transport (a TestClient on the same app, whose startup already ran): it builds
        # multipart bodies that a request() through our client cannot replay (httpx.RequestNotRead).
        response = case.call(app=client.app, base_url="http://127.0.0.1", headers=headers)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    run()
