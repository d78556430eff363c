"""The dashboard's help texts (ℹ) and menu say what certfleet does (issue 11 #13).

Each test puts the rows a help text speaks of in the database and checks the tile and the run it names:
"Total Certs" counts discovered, imported and requested certificates; "Deployment Pending" holds Initiated
certificates that nothing starts by itself, while renew-expiring deploys Issued ones again; every page is
reachable from the menu.
"""

from __future__ import annotations

import re
from datetime import timedelta

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi.testclient import TestClient

from certfleet.dashboard.help import HELP
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, CertificateStatus, DeploymentTarget, Server, ServerConnection, utcnow
from certfleet.tasks.renewal import find_due
from tests.dashboard.conftest import Accounts, auth, login
from tests.discovery.certs import Served


def _tiles(client: TestClient, accounts: Accounts) -> dict[str, int]:
    response = client.get("/api/v1/dashboard", headers=auth(accounts, "viewer"))
    assert response.status_code == 200
    tiles: dict[str, int] = response.json()["certificates"]
    return tiles


def test_total_certs_counts_discovered_imported_and_requested(
    client: TestClient, accounts: Accounts, fleet: dict[str, Served]
) -> None:
    assert "discovery scans, imported from files, and requested" in HELP["certs_total"]
    with session_scope() as s:
        s.add(Certificate(common_name="seen.example.test", status=CertificateStatus.DISCOVERED))
    served = fleet["good"]
    files = [("files", ("good.pem", served.chain[0].public_bytes(Encoding.PEM), "application/x-pem-file"))]
    imported = client.post("/api/v1/certificates/import", files=files, headers=auth(accounts, "operator"))
    assert imported.status_code == 200, imported.text
    requested = client.post(
        "/api/v1/certificates", json={"common_name": "new.example.test"}, headers=auth(accounts, "operator")
    )
    assert requested.status_code == 201, requested.text
    assert _tiles(client, accounts)["total"] == 3


def _configured(
    status: CertificateStatus, accounts: Accounts, name: str, issued_ago: timedelta = timedelta(days=1)
) -> int:
    """A certificate with a provisioning bot, a CA connector and a target: Deployment Pending until served."""
    with session_scope() as s:
        server = s.query(Server).filter_by(description="web").one_or_none()
        if server is None:
            server = Server(description="web", host="web.example.test", ports=[443], connection=ServerConnection.SSH,
                            server_type="nginx", app_path="/etc/nginx/", bot_id=accounts.boot.local_bot_id)  # fmt: skip
            s.add(server)
        issued = status is not CertificateStatus.INITIATED
        cert = Certificate(
            common_name=name,
            status=status,
            provisioning_bot_id=accounts.boot.local_bot_id,
            ca_connector_id=accounts.boot.ca_connector_id,
            serial_number="0A1B" if issued else None,
            issued_on=utcnow() - issued_ago if issued else None,
            expires_on=utcnow() + timedelta(days=80) if issued else None,
        )
        s.add(cert)
        s.flush()
        s.add(DeploymentTarget(certificate_id=cert.id, server_id=server.id, port=443))
        return cert.id


def test_deployment_pending_says_what_starts_each_certificate(client: TestClient, accounts: Accounts) -> None:
    text = HELP["certs_deployment_pending"]
    assert "Nothing starts a Discovered or Initiated one by itself" in text
    assert "An Issued or Rolled Back one is deployed by the hourly renew-expiring run once 6 hours" in text
    assert "scheduled deployment plan" not in text
    initiated = _configured(CertificateStatus.INITIATED, accounts, "initiated.example.test")
    issued = _configured(CertificateStatus.ISSUED, accounts, "issued.example.test")
    rolled_back = _configured(CertificateStatus.ROLLED_BACK, accounts, "rolled-back.example.test")
    _configured(CertificateStatus.ISSUED, accounts, "just-issued.example.test", issued_ago=timedelta(hours=1))
    retried = _configured(CertificateStatus.INITIATED, accounts, "retried.example.test", issued_ago=timedelta(days=80))
    with session_scope() as s:  # a renewal that did not issue, its backoff over
        cert = repo.get(s, Certificate, retried)
        cert.expires_on, cert.renewal_attempts = utcnow() + timedelta(days=5), 1
        cert.renewal_next_attempt_at = utcnow() - timedelta(minutes=1)
    assert "a renewal that did not issue is the exception" in text
    assert _tiles(client, accounts)["deployment_pending"] == 5
    due = {d.certificate_id: d.action for d in find_due.fn()}
    # The Initiated one waits for Provision; the one issued an hour ago for its 6 hours.
    assert due == {issued: "deploy", rolled_back: "deploy", retried: "provision"}
    assert initiated not in due
    # ... and Provision, the way the help text names, is on its page.
    login(client, "operator")
    page = client.get(f"/certificates/{initiated}")
    assert f'action="/certificates/{initiated}/run/provision"' in page.text
    assert "Provision (issue + deploy)" in page.text


def test_help_texts_promise_no_feature_certfleet_lacks() -> None:
    everything = " ".join(HELP.values())
    for promise in ("scheduled deployment plan", "populated from discovery", "load balancers", "All employees in"):
        assert promise not in everything


def test_every_page_is_in_the_menu_and_opens(client: TestClient, accounts: Accounts) -> None:
    login(client, "admin")
    home = client.get("/")
    menu = re.search(r'<nav class="side">(.*?)</nav>', home.text, re.DOTALL)
    assert menu, home.text[:500]
    links = dict((label.strip(), href) for href, label in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', menu[1]))
    for label, href in [("Discovery", "/discovery"), ("Discovery Runs", "/discovery-runs"),
                        ("Private Roots", "/private-roots")]:  # fmt: skip
        assert links.get(label) == href, links
    for href in links.values():
        assert client.get(href).status_code == 200, href
