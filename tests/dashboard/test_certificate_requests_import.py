"""Certificate requests from a spreadsheet (CSV and Excel read with pandas), from the API and the New Certificate
page: one certificate with its targets per row, a per-row report naming the column, the New Certificate form's
rules, nothing stored from a file with a failing row unless the good rows are accepted."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import Workbook

from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, CAConnector, Certificate, CertificateStatus
from tests.dashboard.conftest import Accounts, auth, login

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def _server(client: TestClient, accounts: Accounts, description: str, address: str) -> int:
    body = {
        "description": description,
        "ip_address": address,
        "username": "deploy",
        "password": "s3cret-Pass-9!",
        "server_type": "nginx",
        "nginx_path": "/etc/nginx/",
        "ports": [443, 8443],
    }
    response = client.post("/api/v1/servers", json=body, headers=auth(accounts, "operator"))
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _connector_name() -> str:
    with session_scope() as s:
        return s.query(CAConnector).order_by(CAConnector.id).first().name  # type: ignore[union-attr]


def upload(client: TestClient, accounts: Accounts, name: str, data: bytes, accept: bool = False) -> dict[str, Any]:
    response = client.post(
        "/api/v1/certificate-requests/import",
        files={"file": (name, data)},
        data={"accept_good": "true" if accept else "false"},
        headers=auth(accounts, "operator"),
    )
    return {"status": response.status_code, **response.json()}


def certificates() -> dict[str, Certificate]:
    with session_scope() as s:
        rows = list(s.query(Certificate))
        for row in rows:
            _ = row.targets
        s.expunge_all()
    return {c.common_name: c for c in rows}


def test_a_good_csv_requests_each_row_with_its_targets_and_batch(client: TestClient, accounts: Accounts) -> None:
    web = _server(client, accounts, "web-1 production", "10.0.0.10")
    _server(client, accounts, "web-2", "10.0.0.11")
    ca = _connector_name()
    csv = (
        "Common Name,SANs,Key Type,CA Connector,Servers,Batch Name,Renew Before Fraction,Tags\n"
        f"www.example.com,www.example.com example.com,ec-p256,{ca},"
        "web-1 production:443;10.0.0.11:8443@shop.example.com,"
        'Q4 rotation,0.25,"prod,web"\n'
        "api.example.com,,,,,Q4 rotation,,\n"
    )
    result = upload(client, accounts, "requests.csv", csv.encode())

    assert result["status"] == 201, result
    assert (result["rows"], result["stored"], result["failed"]) == (2, 2, 0)
    found = certificates()
    www = found["www.example.com"]
    assert www.sans == ["www.example.com", "example.com"]
    assert www.key_spec == "ec-p256"
    assert www.batch_name == "Q4 rotation"
    assert www.renew_before_fraction == 0.25
    assert www.tags == ["prod", "web"]
    assert www.status is CertificateStatus.INITIATED
    targets = sorted((t.server_id == web, t.port, t.server_name) for t in www.targets)
    assert targets == [(False, 8443, "shop.example.com"), (True, 443, None)]
    assert found["api.example.com"].key_spec == "rsa2048"
    assert found["api.example.com"].targets == []
    assert sorted(result["certificate_ids"]) == sorted(c.id for c in found.values())
    with session_scope() as s:
        assert s.query(AuditEvent).filter_by(action="import-certificate-requests").count() == 1


def test_failing_rows_are_reported_by_row_and_column_and_nothing_is_stored(
    client: TestClient, accounts: Accounts
) -> None:
    _server(client, accounts, "web", "10.0.0.20")
    _server(client, accounts, "web", "10.0.0.21")  # two servers share a description
    csv = (
        "Common Name,Servers,Key Type,CA Connector,SANs\n"
        "good.example.com,10.0.0.20:443,,,\n"  # row 2
        "bad name!,,,,\n"  # row 3
        "ports.example.com,10.0.0.20:8080,,,\n"  # row 4: not one of the server's ports
        "ambiguous.example.com,web:443,,,\n"  # row 5
        "nohost.example.com,db-9:443,,,\n"  # row 6
        "key.example.com,,dsa1024,,\n"  # row 7
        "ca.example.com,,,No Such CA,\n"  # row 8
        "good.example.com,10.0.0.20:443,,,\n"  # row 9: the same request as row 2
        "sans.example.com,,,,a.example.com A.example.com\n"  # row 10
        "form.example.com,10.0.0.20,,,\n"  # row 11: no port
    )
    result = upload(client, accounts, "requests.csv", csv.encode())

    assert result["status"] == 422
    assert (result["rows"], result["stored"], result["failed"]) == (10, 0, 9)
    problems = {p["row"]: " ".join(p["problems"]) for p in result["problems"]}
    assert sorted(problems) == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert problems[3].startswith("Common Name:")
    assert problems[4].startswith("Servers: port 8080 is not a port of server web (443, 8443)")  # README quotes it
    assert "'web' names 2 servers" in problems[5]
    assert "no server has the description or address 'db-9'" in problems[6]
    assert problems[7].startswith("Key Type:")
    assert "no CA connector is named 'No Such CA'" in problems[8]
    assert problems[9] == "the same request as row 2"
    assert problems[10].startswith("SANs:")
    assert "twice" in problems[10]
    assert "SERVER:PORT" in problems[11]
    assert certificates() == {}  # row 2 was good, but the file failed: nothing stored

    accepted = upload(client, accounts, "requests.csv", csv.encode(), accept=True)
    assert (accepted["status"], accepted["stored"], accepted["failed"]) == (201, 1, 9)
    assert list(certificates()) == ["good.example.com"]


def test_an_excel_file_is_read_cell_by_cell_as_written(client: TestClient, accounts: Accounts) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Common Name", "Batch Name", "Organization"])
    sheet.append(["xl.example.com", "007", "NA"])  # text cells that a number/NA guess would change
    data = io.BytesIO()
    book.save(data)
    result = upload(client, accounts, "requests.xlsx", data.getvalue())
    assert result["status"] == 201, result
    cert = certificates()["xl.example.com"]
    assert (cert.batch_name, cert.organization) == ("007", "NA")


def test_a_trailing_comma_on_every_row_requests_the_names_written(client: TestClient, accounts: Accounts) -> None:
    # Exported spreadsheets often end each row with a comma: read naively, "bar.example.com" became the common name
    result = upload(client, accounts, "requests.csv", b"Common Name,SANs\nfoo.example.com,bar.example.com,\n")
    assert result["status"] == 201, result
    assert certificates()["foo.example.com"].sans == ["bar.example.com"]


def test_a_blank_line_keeps_the_row_numbers_of_the_report(client: TestClient, accounts: Accounts) -> None:
    result = upload(client, accounts, "requests.csv", b"Common Name\nok.example.com\n\nbad name!\n")
    assert result["status"] == 422
    assert [p["row"] for p in result["problems"]] == [4]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("r.csv", b"Common Name,Colour\nx.example.com,red\n", "unknown column 'Colour'"),
        ("r.csv", b"SANs\nx.example.com\n", "no column 'Common Name'"),
        ("r.csv", b"Common Name\n", "no rows under the header"),
        ("r.pdf", b"%PDF-1.4", "neither a .csv nor an .xlsx"),
        ("r.xlsx", b"not a zip", "could not be read as a table"),
        ("r.csv", b"Common Name\n\xff\xfe\n", "not UTF-8"),
    ],
)
def test_an_unreadable_file_is_refused_naming_the_problem(
    client: TestClient, accounts: Accounts, name: str, data: bytes, message: str
) -> None:
    response = client.post(
        "/api/v1/certificate-requests/import", files={"file": (name, data)}, headers=auth(accounts, "operator")
    )
    assert response.status_code == 422
    assert response.json()["field"] == "file"
    assert message in response.json()["detail"]
    assert certificates() == {}


def test_the_new_certificate_page_imports_a_file_and_shows_the_report(client: TestClient, accounts: Accounts) -> None:
    csrf = login(client, "operator")
    page = client.get("/certificates/new")
    assert 'action="/certificates/requests/file"' in page.text
    bad = b"Common Name\nok.example.com\nbad name!\n"
    refused = client.post("/certificates/requests/file", files={"file": ("r.csv", bad)}, data={"csrf_token": csrf})
    assert refused.status_code == 422
    assert 'data-testid="bulk-refused"' in refused.text
    assert "bad name!" in refused.text
    assert certificates() == {}
    stored = client.post(
        "/certificates/requests/file",
        files={"file": ("r.csv", bad)},
        data={"csrf_token": csrf, "accept_good": "yes"},
    )
    assert stored.status_code == 200
    assert 'data-testid="bulk-stored"' in stored.text
    assert list(certificates()) == ["ok.example.com"]
