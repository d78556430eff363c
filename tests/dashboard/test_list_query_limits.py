"""List queries at the edges of what a number or a date can be: refused with 422 naming the filter or page, or
answered (nothing is after the last day), never a 500 from an overflow."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.dashboard.conftest import Accounts, auth


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ("page=99999999999999999999", "page", "page is at most"),  # its row offset overflowed the database's int
        ("page=0", "page", "page starts at 1"),
        ("filter=expires_within:lt:1e10", "filter", "at most 36500 days either way"),  # the date overflowed
        ("filter=expires_within:lt:nan", "filter", "needs a finite number, not 'nan'"),
        ("filter=expires_within:gt:-inf", "filter", "needs a finite number, not '-inf'"),
    ],
)
def test_an_out_of_range_page_or_filter_is_refused_naming_it(
    client: TestClient, accounts: Accounts, query: str, field: str, words: str
) -> None:
    response = client.get(f"/api/v1/certificates?{query}", headers=auth(accounts, "viewer"))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert words in response.json()["detail"]


def test_nothing_is_after_the_last_day_and_everything_is_after_the_first(
    client: TestClient, accounts: Accounts
) -> None:
    viewer = auth(accounts, "viewer")
    made = client.post(
        "/api/v1/certificates", json={"common_name": "edge.example.test"}, headers=auth(accounts, "operator")
    )
    assert made.status_code == 201, made.text
    with_expiry = "filter=expires_on:after:9999-12-31"  # its next day, the start of "after", cannot be computed
    response = client.get(f"/api/v1/certificates?{with_expiry}", headers=viewer)
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 0
    assert client.get("/api/v1/certificates?filter=expires_on:before:0001-01-01", headers=viewer).status_code == 200
