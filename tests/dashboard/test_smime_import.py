"""S/MIME bulk import (CSV and Excel read with pandas) from the API and the page: a per-row report, nothing stored
from a file with a failing row unless the good rows are accepted, the same field rules as Import Manually."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from openpyxl import Workbook

from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, SmimeStatus, SmimeUser
from tests.dashboard.conftest import Accounts, auth, login

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

GOOD_CSV = "Name,Email ID,Designation\nAlice Example,alice@example.com,CFO\nBob Example,Bob@Example.com,\n"
MIXED_CSV = (
    "Designation,Email ID,Name\n"  # any column order
    "CFO,alice@example.com,Alice Example\n"
    ",not-an-address,No Mail\n"
    "Clerk,carol@example.com,\n"  # missing name
    "Clerk,ALICE@example.com,Alice Again\n"  # duplicate in the file (any case)
    "Lead,dave@example.com, Dave\n"  # a name with a leading space is refused, not trimmed
    "Lead,erin@example.com,Erin Example\n"
)


def listed() -> dict[str, SmimeUser]:
    with session_scope() as s:
        rows = list(s.query(SmimeUser))
        s.expunge_all()
    return {u.email: u for u in rows}


def upload(client: TestClient, headers: dict[str, str], name: str, data: bytes, accept: bool = False) -> dict:
    response = client.post(
        "/api/v1/smime-users/import",
        files={"file": (name, data)},
        data={"accept_good": "true" if accept else "false"},
        headers=headers,
    )
    return {"status": response.status_code, **response.json()}


def test_a_good_csv_is_stored_exactly_as_written(client: TestClient, accounts: Accounts) -> None:
    result = upload(client, auth(accounts, "operator"), "users.csv", GOOD_CSV.encode())
    assert result["status"] == 201
    assert (result["rows"], result["stored"], result["failed"]) == (2, 2, 0)
    users = listed()
    assert users["alice@example.com"].designation == "CFO"
    assert users["Bob@Example.com"].designation is None  # an empty cell is no designation
    assert users["Bob@Example.com"].status is SmimeStatus.AWAITING_ORDER
    assert users["Bob@Example.com"].source == "Manual Import"
    with session_scope() as s:
        assert s.query(AuditEvent).filter_by(action="import-smime-users").count() == 1


def test_a_file_with_failing_rows_stores_nothing_unless_the_good_rows_are_accepted(
    client: TestClient, accounts: Accounts
) -> None:
    headers = auth(accounts, "operator")
    refused = upload(client, headers, "users.csv", MIXED_CSV.encode())
    assert refused["status"] == 422
    assert (refused["rows"], refused["good"], refused["stored"]) == (6, 2, 0)
    problems = {p["row"]: " ".join(p["problems"]) for p in refused["problems"]}
    assert "email: not an e-mail address" in problems[3]
    assert "name: missing" in problems[4]
    assert "duplicate of row 2" in problems[5]
    assert "name: starts with whitespace" in problems[6]
    assert listed() == {}

    accepted = upload(client, headers, "users.csv", MIXED_CSV.encode(), accept=True)
    assert accepted["status"] == 201
    assert accepted["stored"] == 2
    assert set(listed()) == {"alice@example.com", "erin@example.com"}

    again = upload(client, headers, "users.csv", GOOD_CSV.encode())  # alice is listed now
    assert again["status"] == 422
    assert "already in the S/MIME list" in again["problems"][0]["problems"][0]
    assert set(listed()) == {"alice@example.com", "erin@example.com"}


def test_excel_files_are_read_too(client: TestClient, accounts: Accounts) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Name", "Email", "Designation"])
    sheet.append(["Xavier Sheet", "xavier@example.com", "Analyst"])
    sheet.append(["Yvonne Sheet", "yvonne@example.com", None])
    buffer = io.BytesIO()
    book.save(buffer)
    result = upload(client, auth(accounts, "operator"), "people.xlsx", buffer.getvalue())
    assert result["status"] == 201, result
    users = listed()
    assert users["xavier@example.com"].designation == "Analyst"
    assert users["yvonne@example.com"].designation is None


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("users.csv", b"Full Name,Mail\nA,a@example.com\n", "no column 'Name'"),
        ("users.csv", b"Name,Email ID\n", "no rows"),
        ("users.pdf", b"%PDF-1.4", "neither a .csv nor an .xlsx"),
        ("users.xlsx", b"not a zip file", "could not be read"),
        ("users.csv", "Name,Email ID\nZoë,z@example.com\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_unreadable_files_are_refused_naming_the_file(
    client: TestClient, accounts: Accounts, name: str, data: bytes, words: str
) -> None:
    response = client.post(
        "/api/v1/smime-users/import", files={"file": (name, data)}, headers=auth(accounts, "operator")
    )
    assert response.status_code == 422
    assert response.json()["field"] == "file"
    assert words in response.text
    assert listed() == {}


def test_the_page_shows_the_row_report_and_accepts_the_good_rows(client: TestClient, accounts: Accounts) -> None:
    csrf = login(client, "operator")
    refused = client.post(
        "/smime/import/file", files={"file": ("users.csv", MIXED_CSV.encode())}, data={"csrf_token": csrf}
    )
    assert refused.status_code == 422
    assert 'data-testid="bulk-refused"' in refused.text
    assert "duplicate of row 2" in refused.text
    assert listed() == {}
    accepted = client.post(
        "/smime/import/file",
        files={"file": ("users.csv", MIXED_CSV.encode())},
        data={"csrf_token": csrf, "accept_good": "yes"},
    )
    assert accepted.status_code == 200
    assert 'data-testid="bulk-stored"' in accepted.text
    assert set(listed()) == {"alice@example.com", "erin@example.com"}
