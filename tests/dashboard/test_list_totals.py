"""Every list's total equals the rows it returns, for a filter on every filterable column (issue 11 #7).

The data has several related rows per object (certificates with several targets, locations and orders, bots that
are the discovery and provisioning bot of several certificates, servers with several ports), so a filter that
brings a table into the FROM list without its join would multiply the total. pyproject.toml also turns
SQLAlchemy's cartesian-product warning into an error for every test.
"""

from __future__ import annotations

import enum
import math
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from certfleet.dashboard import listing, lists
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    AuditEvent,
    Bot,
    BotPurpose,
    BotStatus,
    CAConnector,
    CAType,
    Certificate,
    CertificateLocation,
    CertificateStatus,
    DeploymentTarget,
    DiscoveryRun,
    Order,
    OrderState,
    Server,
    ServerConnection,
    ServerStatus,
    SmimeOrder,
    SmimeStatus,
    SmimeUser,
    User,
    utcnow,
)
from tests.dashboard.conftest import Accounts, auth

PER_PAGE = 2  # small pages, so every total spans several of them


def _seed(accounts: Accounts) -> None:
    now = utcnow()
    with session_scope() as s:
        s.execute(update(User).values(last_login_at=now))
        bots = [
            Bot(name=f"bot-{i}", ip_address=f"10.0.0.{i}", description=f"bot number {i}", status=BotStatus.ACTIVE,
                last_update=now - timedelta(minutes=i), version="1.2", purpose=BotPurpose.BOTH, group_name="edge",
                os="Linux", tags=[f"site={i}", "env=prod"], token_prefix=f"cfb_{i}", work_queue=f"bot-{i}",
                created_by="test")
            for i in range(4)
        ]  # fmt: skip
        s.add_all(bots)
        s.flush()
        servers = [
            Server(description=f"web {i}", host=f"web{i}.example.test", ports=[443, 8443 + i],
                   connection=ServerConnection.SSH, username="deploy", server_type="nginx",
                   app_path="/etc/nginx", keystore_folder="/etc/ssl", version="1.22", service_name="nginx",
                   bot_id=bots[i % 2].id, status=ServerStatus.ACTIVE, status_reason="ok",
                   last_checked_at=now, created_by="test")
            for i in range(3)
        ]  # fmt: skip
        s.add_all(servers)
        s.flush()
        for i in range(7):
            cert = Certificate(
                common_name=f"site{i}.example.test", status=list(CertificateStatus)[i % 5],
                discovery_bot_id=bots[i % 3].id, provisioning_bot_id=bots[(i + 1) % 4].id if i != 6 else None,
                ca_connector_id=accounts.boot.ca_connector_id, organization="Example Org", tags=["env=prod", f"n={i}"],
                batch_name="q3", location_host=f"site{i}.example.test", location_port=443, scan_ip="10.1.0.1",
                scan_port=443, issuer_ca="Example CA", ca_type=CAType.PRIVATE, signature_algorithm="sha256WithRSA",
                serial_number=f"0a{i:02d}", expires_on=now + timedelta(days=10 * (i + 1)), issued_on=now,
                last_provisioned_on=now, validation_status="Valid", dcv_status="Complete", vulnerable=i % 2 == 0,
                ca_order_id=f"ord-{i}",
            )  # fmt: skip
            s.add(cert)
            s.flush()
            for server in servers:  # several targets and several locations per certificate
                s.add(DeploymentTarget(certificate_id=cert.id, server_id=server.id, port=443))
                s.add(CertificateLocation(certificate_id=cert.id, kind="tls", locator=f"tls:{server.host}:443:",
                                          host=server.host, port=443, discovery_bot_id=bots[0].id))  # fmt: skip
            for n in range(2):
                s.add(Order(certificate_id=cert.id, ca_connector_id=accounts.boot.ca_connector_id,
                            idempotency_key=f"k-{cert.id}-{n}", state=OrderState.ISSUED, ca_order_id=f"ca-{i}-{n}",
                            csr_pem="-----BEGIN CERTIFICATE REQUEST-----", serial_number=f"0a{i:02d}",
                            error="none", flow_run_id="00000000-0000-0000-0000-000000000000"))  # fmt: skip
        s.add(CAConnector(kind="acme", name="Pebble", base_url="https://127.0.0.1:14000/dir", created_by="test"))
        for i in range(3):
            smime_user = SmimeUser(name=f"User {i}", email=f"user{i}@example.test", designation="Engineer",
                                   source="Manual", status=SmimeStatus.AWAITING_ORDER,
                                   expires_on=now + timedelta(days=30),
                                   directory_state=None if i else "Disabled in directory")  # fmt: skip
            s.add(smime_user)
            if i == 1:  # an order stuck on a refused delivery (Last Error)
                s.flush()
                s.add(SmimeOrder(user_id=smime_user.id, ca_connector_id=accounts.boot.ca_connector_id,
                                 idempotency_key="smime-stuck", state="Certificate Issued",
                                 error="SMTP 550 refused"))  # fmt: skip
            s.add(DiscoveryRun(kind="tls", bot_id=bots[i % 2].id, flow_run_id=f"run-{i}", status="Completed",
                               endpoints_total=10, endpoints_answered=5, certificates_found=3, certificates_new=1,
                               finished_at=now))  # fmt: skip
            s.add(AuditEvent(actor="admin", action="update-bot", object_type="bot", object_id=str(bots[i].id),
                             outcome="ok", detail=f"change {i}"))  # fmt: skip


def _filter_for(col: listing.Column, value: Any) -> str:
    """A filter on `col` that the row holding `value` satisfies."""
    if isinstance(value, enum.Enum):
        value = value.value
    if col.type is listing.ColType.TAGS:
        return f"{col.key}:eq:{value[0]}"
    if col.type is listing.ColType.BOOL:
        return f"{col.key}:eq:{'Yes' if value else 'No'}"
    if col.type is listing.ColType.DATE:
        return f"{col.key}:before:{(value + timedelta(seconds=1)).isoformat()}"
    if col.type is listing.ColType.DAYS_LEFT:
        return f"{col.key}:lt:{(value - utcnow()).days + 2}"
    return f"{col.key}:eq:{value}"


def _all_pages(client: TestClient, accounts: Accounts, path: str, filters: list[str]) -> tuple[int, list[int]]:
    h = auth(accounts, "admin")
    first = client.get(f"/api/v1/{path}", params={"filter": filters, "per_page": PER_PAGE}, headers=h)
    assert first.status_code == 200, (path, filters, first.text)
    body = first.json()
    ids = [item["id"] for item in body["items"]]
    assert body["pages"] == max(1, math.ceil(body["total"] / PER_PAGE)), (path, filters, body)
    for page in range(2, body["pages"] + 1):
        more = client.get(f"/api/v1/{path}", params={"filter": filters, "per_page": PER_PAGE, "page": page}, headers=h)
        assert more.json()["total"] == body["total"]
        ids += [item["id"] for item in more.json()["items"]]
    return int(body["total"]), ids


def test_every_list_total_equals_its_rows_for_every_filterable_column(client: TestClient, accounts: Accounts) -> None:
    _seed(accounts)
    assert {"certificates", "bots", "servers", "orders", "audit", "users", "smime_users", "ca_connectors",
            "discovery_runs"} <= set(lists.SPECS)  # fmt: skip
    checked = 0
    for spec in lists.SPECS.values():
        path = spec.name.replace("_", "-")
        total, ids = _all_pages(client, accounts, path, [])
        assert total == len(ids) == len(set(ids)) > 0, (spec.name, total, ids)
        with session_scope() as s:
            keys = [c.key for c in spec.columns]
            rows = listing.fetch(s, spec, listing.ListQuery(columns=keys, per_page=listing.MAX_PER_PAGE)).rows
        for col in spec.columns:
            if not col.filterable:
                continue
            source = next((r for r in rows if r[col.key] not in (None, "", [])), None)
            assert source is not None, f"the test data has no value for {spec.name}.{col.key}: add one"
            flt = _filter_for(col, source[col.key])
            total, ids = _all_pages(client, accounts, path, [flt])
            assert total == len(ids), f"{spec.name} filter={flt}: total {total} but {len(ids)} rows"
            assert len(ids) == len(set(ids)), f"{spec.name} filter={flt}: a row came twice"
            assert source["id"] in ids, f"{spec.name} filter={flt} lost the row it was taken from"
            checked += 1
    assert checked > 60


def test_provisioning_bot_filter_total_is_the_number_of_its_certificates(
    client: TestClient, accounts: Accounts
) -> None:
    """The report's case: certificates of one provisioning bot, with several other bots in the database."""
    _seed(accounts)
    with session_scope() as s:
        bot = s.query(Bot).filter_by(name="bot-1").one()
        expected = s.query(Certificate).filter_by(provisioning_bot_id=bot.id).count()
    body = client.get(
        "/api/v1/certificates", params={"filter": ["provisioning_bot:eq:bot-1"]}, headers=auth(accounts, "viewer")
    ).json()
    assert (body["total"], len(body["items"]), body["pages"]) == (expected, expected, 1)
    assert {i["provisioning_bot"] for i in body["items"]} == {"bot-1"}
