"""Secrets sweep (issue 12, "prove the rest", partly): an in-process scenario through the API with every kind of
secret certfleet takes (SSH password, CA API key, PKCS#12 password and its private key, API tokens), including
refused calls and exports; then certfleet's database read raw (every text and blob column), the log output,
the exports and every response body must hold none of them.

The flows and Prefect's database are swept by tests/flows/test_secrets_in_prefect.py.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from sqlalchemy import LargeBinary, String, Text, text

from certfleet.models.db import session_scope
from certfleet.models.orm import Base
from certfleet.pki.bundle import to_pkcs12
from tests.dashboard.conftest import PASSWORD, Accounts, auth
from tests.discovery.certs import Served

SSH_PASSWORD = "ssh-Sweep-pw-7431"
API_KEY = "digicert-sweep-key-0f9e8d7c6b5a"
P12_PASSWORD = "p12-sweep-pw-5520"


def _key_lines(served: Served) -> list[str]:
    pem = served.key.private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def _hits(haystack: bytes | str, secrets: list[str]) -> list[str]:
    data = haystack if isinstance(haystack, str) else haystack.decode("latin-1")
    return [s for s in secrets if s in data]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_no_secret_anywhere_after_a_scenario(
    database: str,
    accounts: Accounts,
    client: TestClient,
    fleet: dict[str, Served],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = auth(accounts, "admin")
    served = fleet["good"]
    secrets = [SSH_PASSWORD, API_KEY, P12_PASSWORD, PASSWORD, *accounts.tokens.values(), *_key_lines(served)]
    bodies: list[bytes] = []

    def call(method: str, path: str, expect: int, **kwargs: Any) -> Any:
        response = client.request(method, path, headers=admin, **kwargs)
        assert response.status_code == expect, response.text
        bodies.append(response.content)
        return response

    server = {
        "description": "sweep", "ip_address": "10.0.0.10", "username": "deploy", "password": SSH_PASSWORD,
        "server_type": "nginx", "nginx_path": "/etc/nginx/", "keystore_folder": "/etc/nginx/ssl",
        "version": "Nginx 1.22", "ports": [443], "service_name": "nginx",
    }  # fmt: skip
    server_id = call("POST", "/api/v1/servers", 201, json=server).json()["id"]
    connector = {"kind": "digicert", "name": "DigiCert sweep", "api_key": API_KEY, "organization_id": 1,
                 "certificate_validity": 200, "payment_type": "Profile"}  # fmt: skip
    call("POST", "/api/v1/ca-connectors", 201, json=connector)
    p12 = to_pkcs12(served.key, served.chain, P12_PASSWORD.encode())  # type: ignore[arg-type]
    call("POST", "/api/v1/certificates/import", 200,
         files=[("files", ("sweep.p12", p12, "application/x-pkcs12"))], data={"password": P12_PASSWORD})  # fmt: skip
    # Refused calls that carry secrets: a bad field next to a password, a wrong PKCS#12 password, a bad key.
    call("POST", "/api/v1/servers", 422, json={**server, "ip_address": "10.0.0.300"})
    call("PUT", f"/api/v1/servers/{server_id}", 422, json={"ip_address": "10.0.0.11"})
    call("POST", "/api/v1/ca-connectors", 422, json={**connector, "organization_id": "x"})
    wrong = to_pkcs12(served.key, served.chain, b"another-" + P12_PASSWORD.encode())  # type: ignore[arg-type]
    call("POST", "/api/v1/certificates/import", 422,
         files=[("files", ("wrong.p12", wrong, "application/x-pkcs12"))], data={"password": P12_PASSWORD})  # fmt: skip
    exports = []
    for listing in ("servers", "ca-connectors", "certificates", "audit", "users"):
        for fmt in ("xlsx", "pdf"):
            exports.append(call("GET", f"/api/v1/{listing}/export", 200, params={"format": fmt}).content)

    found: dict[str, list[str]] = {}
    with session_scope() as s:
        for table in Base.metadata.sorted_tables:
            columns = [c.name for c in table.columns if isinstance(c.type, (String, Text, LargeBinary))]
            for column in columns:
                for (value,) in s.execute(text(f'SELECT "{column}" FROM "{table.name}"')):  # noqa: S608
                    if value is not None and (hits := _hits(value, secrets)):
                        found.setdefault(f"db {table.name}.{column}", []).extend(hits)
    for i, body in enumerate(bodies):
        if hits := _hits(body, secrets):
            found[f"response {i}"] = hits
    for i, export in enumerate(exports):
        if hits := _hits(export, secrets):
            found[f"export {i}"] = hits
    out, err = capfd.readouterr()
    for name, captured in (("log", caplog.text), ("stdout", out), ("stderr", err)):
        if hits := _hits(captured, secrets):
            found[name] = hits
    assert found == {}
    assert len(bodies) == 17  # the scenario ran to the end
    assert len(exports) == 10
