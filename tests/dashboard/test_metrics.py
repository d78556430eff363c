"""/metrics: the Prometheus text format, read back with prometheus_client's own parser, against a small fleet."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from certfleet.dashboard.services import users
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Bot,
    CAConnector,
    Certificate,
    CertificateStatus,
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    Order,
    OrderState,
    Server,
    ServerConnection,
    User,
    utcnow,
)
from certfleet.renewal.runs import record_completed
from certfleet.settings import get_settings
from tests.dashboard.conftest import Accounts, auth, login

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(client: TestClient, accounts: Accounts, role: str = "viewer") -> Samples:
    response = client.get("/metrics", headers=auth(accounts, role))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def by(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {labels[label]: value for labels, value in samples.get(name, [])}


def value(samples: Samples, name: str) -> float:
    ((_, v),) = samples[name]
    return v


def test_anonymous_and_unknown_tokens_get_401_and_a_viewer_token_scrapes(
    client: TestClient, accounts: Accounts
) -> None:
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert client.get("/metrics", headers={"Authorization": "Bearer cfu_not-a-token"}).status_code == 401
    for role in ("viewer", "operator", "admin"):
        assert "certfleet_certificates" in scrape(client, accounts, role)
    with session_scope() as s:  # a Viewer's token made for Prometheus, then revoked: refused from then on
        viewer = s.scalars(select(User).where(User.username == "viewer")).one()
        issued = users.create_api_token(s, viewer.id, "prometheus", "test")
    prometheus = {"Authorization": f"Bearer {issued.token}"}
    assert client.get("/metrics", headers=prometheus).status_code == 200
    with session_scope() as s:
        users.revoke_api_token(s, issued.id, user_id=viewer.id, is_admin=False, actor="test")
    assert client.get("/metrics", headers=prometheus).status_code == 401


def test_a_metrics_only_token_scrapes_and_does_nothing_else(client: TestClient, accounts: Accounts) -> None:
    made = client.post(
        "/api/v1/tokens", json={"name": "prometheus", "scope": "metrics"}, headers=auth(accounts, "admin")
    )
    assert made.status_code == 201, made.text
    assert made.json()["scope"] == "metrics"
    scraper = {"Authorization": f"Bearer {made.json()['token']}"}
    assert client.get("/metrics", headers=scraper).status_code == 200
    for method, path in (("GET", "/api/v1/me"), ("GET", "/api/v1/certificates"), ("POST", "/api/v1/tokens")):
        refused = client.request(method, path, headers=scraper, json={"name": "more"})
        assert refused.status_code == 403, (path, refused.text)
        assert "may only scrape /metrics" in refused.json()["detail"]
    listed = {t["name"]: t["scope"] for t in client.get("/api/v1/tokens", headers=auth(accounts, "admin")).json()}
    assert (listed["prometheus"], listed["tests"]) == ("metrics", "all")

    wrong = client.post("/api/v1/tokens", json={"name": "x", "scope": "Metrics"}, headers=auth(accounts, "admin"))
    assert wrong.status_code == 422
    assert wrong.json()["field"] == "scope"


def test_the_tokens_page_makes_a_metrics_only_token(client: TestClient, accounts: Accounts) -> None:
    csrf = login(client, "viewer")
    page = client.post("/account/tokens", data={"name": "prom", "scope": "metrics", "csrf_token": csrf})
    assert page.status_code == 200
    assert "only /metrics" in page.text
    token = re.search(r'data-testid="new-api-token">([^<]+)<', page.text)
    assert token
    client.cookies.clear()
    headers = {"Authorization": f"Bearer {token[1]}"}
    assert client.get("/metrics", headers=headers).status_code == 200
    assert client.get("/api/v1/me", headers=headers).status_code == 403


def _fleet(accounts: Accounts) -> dict[str, int]:
    """Four certificates (one on a server, one discovered elsewhere, one without a CA connector or expiry),
    two bots, three deployments and two orders."""
    now = utcnow()
    with session_scope() as s:
        connector = s.get(CAConnector, accounts.boot.ca_connector_id)
        assert connector is not None
        server = Server(description="web", host="web1.test", connection=ServerConnection.LOCAL, server_type="nginx")
        soon = Certificate(common_name="soon.test", status=CertificateStatus.DEPLOYED, ca_connector_id=connector.id,
                           expires_on=now + timedelta(days=3), batch_name="wave-1")  # fmt: skip
        later = Certificate(common_name="later.test", status=CertificateStatus.ISSUED, ca_connector_id=connector.id,
                            expires_on=now + timedelta(days=20), batch_name="wave-1")  # fmt: skip
        found = Certificate(common_name="found.test", status=CertificateStatus.DISCOVERED, location_host="10.1.1.1",
                            expires_on=now + timedelta(days=200))  # fmt: skip
        pending = Certificate(common_name="pending.test", status=CertificateStatus.INITIATED, batch_name="wave-2")
        s.add_all([server, soon, later, found, pending])
        s.flush()
        target = DeploymentTarget(certificate_id=soon.id, server_id=server.id, port=443)
        s.add(target)
        s.flush()
        for status in (DeploymentStatus.DEPLOYED, DeploymentStatus.DEPLOYED, DeploymentStatus.FAILED):
            s.add(Deployment(certificate_id=soon.id, target_id=target.id, status=status, serial_number="01"))
        for key, state in (("a", OrderState.ISSUED), ("b", OrderState.FAILED)):
            s.add(Order(certificate_id=soon.id, ca_connector_id=connector.id, idempotency_key=f"metrics-{key}",
                        state=state, csr_pem="-"))  # fmt: skip
        s.add(Bot(name="quiet-bot", work_queue="q1", last_update=now - timedelta(minutes=20)))
        s.add(Bot(name="never-bot", work_queue="q2"))
        return {"soon": soon.id, "later": later.id, "found": found.id, "pending": pending.id,
                "soon_expiry": int(soon.expires_on.timestamp()), "connector": connector.id}  # type: ignore[union-attr]  # fmt: skip


def test_the_series_match_the_fleet(client: TestClient, accounts: Accounts) -> None:
    before = scrape(client, accounts)
    ids = _fleet(accounts)
    after = scrape(client, accounts)

    counts_before = by(before, "certfleet_certificates", "status")
    counts = by(after, "certfleet_certificates", "status")
    assert set(counts) == {str(s) for s in CertificateStatus}  # every status has a series, 0 or not
    grown = {k: counts[k] - counts_before[k] for k in counts if counts[k] != counts_before[k]}
    assert grown == {"Deployed": 1, "Issued": 1, "Discovered": 1, "Initiated": 1}

    expiry = {labels["id"]: (labels, v) for labels, v in after["certfleet_certificate_expiry_timestamp_seconds"]}
    assert str(ids["pending"]) not in expiry  # no expiry, no series
    labels, seconds = expiry[str(ids["soon"])]
    with session_scope() as s:
        connector_name = s.get(CAConnector, ids["connector"]).name  # type: ignore[union-attr]
    assert labels == {"id": str(ids["soon"]), "common_name": "soon.test", "ca_connector": connector_name,
                      "server": "web1.test", "status": "Deployed"}  # fmt: skip
    assert int(seconds) == ids["soon_expiry"]
    found, _ = expiry[str(ids["found"])]
    assert (found["server"], found["ca_connector"], found["status"]) == ("10.1.1.1", "", "Discovered")

    within = by(after, "certfleet_certificates_expiring_within_days", "days")
    within_before = by(before, "certfleet_certificates_expiring_within_days", "days")
    assert {d: within[d] - within_before[d] for d in within} == {"0": 0, "1": 0, "7": 1, "14": 1, "30": 2, "90": 2}
    assert value(after, "certfleet_certificates_beyond_cap") == 0

    deployments = by(after, "certfleet_deployments", "status")
    assert deployments == {"Running": 0, "Deployed": 2, "Rolled Back": 0, "Deployment Failed": 1}
    orders = by(after, "certfleet_orders", "status")
    assert orders == {"Created": 0, "Submitted": 0, "Pending": 0, "Issued": 1, "Failed": 1}

    batches = {(labels["batch"], labels["status"]): v for labels, v in after["certfleet_batch_certificates"]}
    assert batches == {("wave-1", "Deployed"): 1, ("wave-1", "Issued"): 1, ("wave-2", "Initiated"): 1}

    ages = by(after, "certfleet_bot_last_heartbeat_age_seconds", "bot")
    assert "never-bot" not in ages
    assert 20 * 60 <= ages["quiet-bot"] < 21 * 60


def test_the_cap_keeps_the_soonest_expiring_and_counts_the_rest(
    client: TestClient, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _fleet(accounts)
    with session_scope() as s:  # everything with an expiry, including what initialize() made
        with_expiry = s.query(Certificate).filter(Certificate.expires_on.is_not(None)).count()
    monkeypatch.setenv("CERTFLEET_METRICS_MAX_CERTIFICATES", "1")
    get_settings.cache_clear()
    samples = scrape(client, accounts)
    (only,) = samples["certfleet_certificate_expiry_timestamp_seconds"]
    assert only[0]["id"] == str(ids["soon"])  # the soonest-expiring one
    assert value(samples, "certfleet_certificates_beyond_cap") == with_expiry - 1
    assert by(samples, "certfleet_certificates_expiring_within_days", "days")["90"] >= 2  # all still counted

    monkeypatch.setenv("CERTFLEET_METRICS_MAX_CERTIFICATES", "0")
    get_settings.cache_clear()
    samples = scrape(client, accounts)
    assert "certfleet_certificate_expiry_timestamp_seconds" not in samples
    assert value(samples, "certfleet_certificates_beyond_cap") == with_expiry


def test_the_last_renewal_run_is_0_until_one_completes(client: TestClient, accounts: Accounts) -> None:
    assert value(scrape(client, accounts), "certfleet_last_renewal_run_completed_timestamp_seconds") == 0
    first = utcnow() - timedelta(hours=4)
    record_completed(at=first)
    assert value(scrape(client, accounts), "certfleet_last_renewal_run_completed_timestamp_seconds") == (
        first.timestamp()
    )
    second = utcnow()
    record_completed(at=second)  # the row is updated, not added
    assert value(scrape(client, accounts), "certfleet_last_renewal_run_completed_timestamp_seconds") == (
        second.timestamp()
    )
