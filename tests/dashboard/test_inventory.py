"""The Provisioning Certificates Select Action menu, Import and private roots through the dashboard's API and
forms: every action goes through the inventory service, answers what a user checks, and respects roles."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from fastapi.testclient import TestClient

from certfleet.models.bootstrap import LOCAL_BOT_NAME
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    AuditEvent,
    Bot,
    BotPurpose,
    BotStatus,
    Certificate,
    CertificateLocation,
    Server,
    ServerConnection,
)
from certfleet.pki.bundle import key_matches_certificate, to_pkcs12
from tests.dashboard.conftest import Accounts, auth, csrf_of, login
from tests.discovery.certs import Served
from tests.pki.conftest import PKI

P12_PASSWORD = "pfx-password-1"
API = "/api/v1/certificates"


def _pkcs12(served: Served, password: str = P12_PASSWORD) -> bytes:
    return to_pkcs12(served.key, served.chain, password.encode())  # type: ignore[arg-type]


def import_with_key(client: TestClient, accounts: Accounts, served: Served) -> int:
    response = client.post(
        f"{API}/import",
        files=[("files", (f"{served.name}.p12", _pkcs12(served), "application/x-pkcs12"))],
        data={"password": P12_PASSWORD},
        headers=auth(accounts, "operator"),
    )
    assert response.status_code == 200, response.text
    outcome = response.json()["outcomes"][0]
    assert outcome["imported"], outcome
    assert outcome["private_key_stored"] is True
    return int(outcome["certificate_id"])


def test_import_reports_each_file_with_the_reason_for_each_bad_one(
    client: TestClient, accounts: Accounts, fleet: dict[str, Served]
) -> None:
    good, expired = fleet["good"], fleet["expired"]
    key_only = good.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    files = [
        ("files", ("good.pem", good.cert_file.read_bytes(), "application/x-pem-file")),
        ("files", ("expired.cer", expired.der, "application/pkix-cert")),
        ("files", ("chain.p7b", pkcs7.serialize_certificates(good.chain, serialization.Encoding.DER), "x")),
        ("files", ("notes.txt", b"hello, this is not a certificate", "text/plain")),
        ("files", ("empty.pem", b"", "application/x-pem-file")),
        ("files", ("key.pem", key_only, "application/x-pem-file")),
        ("files", ("wrong.p12", _pkcs12(good, "another-password"), "application/x-pkcs12")),
    ]
    response = client.post(f"{API}/import", files=files, data={"password": P12_PASSWORD},
                           headers=auth(accounts, "operator"))  # fmt: skip
    assert response.status_code == 207, response.text  # some imported, some not: read each outcome
    body = response.json()
    by_name = {o["filename"]: o for o in body["outcomes"]}
    assert [o["filename"] for o in body["outcomes"]] == [name for _, (name, _, _) in files]
    assert (body["imported"], body["failed"]) == (3, 4)
    assert by_name["good.pem"]["new"] is True
    assert by_name["chain.p7b"]["new"] is False  # the same certificate: one more place, not a second row
    assert by_name["chain.p7b"]["certificate_id"] == by_name["good.pem"]["certificate_id"]
    assert by_name["expired.cer"]["common_name"] == expired.leaf.subject.rfc4514_string().removeprefix("CN=")
    assert by_name["notes.txt"]["reason"] == (
        "the file is text without a PEM '-----BEGIN CERTIFICATE-----' block: "
        "not a PEM, DER, PKCS#7 or PKCS#12 certificate file"
    )
    assert by_name["empty.pem"]["reason"] == "the file is empty"
    assert "only a private key" in by_name["key.pem"]["reason"]
    assert by_name["wrong.p12"]["reason"] == "wrong password for PKCS#12 file"
    assert P12_PASSWORD not in response.text
    with session_scope() as s:
        assert s.query(Certificate).count() == 2
        events = s.query(AuditEvent).filter_by(action="import-certificate").all()
        assert {e.actor for e in events} == {"operator"}

    # A viewer cannot import.
    denied = client.post(f"{API}/import", files=files[:1], headers=auth(accounts, "viewer"))
    assert denied.status_code == 403


def test_every_action_of_the_menu_through_the_api(
    client: TestClient, accounts: Accounts, fleet: dict[str, Served]
) -> None:
    good = fleet["good"]
    cert_id = import_with_key(client, accounts, good)
    viewer, operator = auth(accounts, "viewer"), auth(accounts, "operator")

    # Certificate Details: the decoded leaf, its chain and where it was found.
    details = client.get(f"{API}/{cert_id}/details", headers=viewer)
    assert details.status_code == 200, details.text
    d = details.json()
    assert d["certificate"]["sha256_thumbprint"] == good.sha256
    assert d["certificate"]["sha1_thumbprint"] == good.sha1
    assert d["certificate"]["serial_number"] == good.serial
    assert d["certificate"]["sans"] == [good.leaf.subject.rfc4514_string().removeprefix("CN="),
                                        "www." + good.leaf.subject.rfc4514_string().removeprefix("CN=")]  # fmt: skip
    assert len(d["chain"]) == len(good.chain)
    assert d["has_private_key"] is True
    [location] = d["locations"]
    assert location["kind"] == "upload"
    assert location["status"] == "Active"
    assert location["first_seen"]
    assert location["last_seen"]

    # View Certificate.
    text = client.get(f"{API}/{cert_id}/text", headers=viewer).json()["text"]
    assert "Certificate:" in text
    assert "Subject Alternative Name" in text

    # Download: PEM (leaf + chain), DER (leaf), PKCS#7 (chain), PKCS#12 (key + chain, password, operator only).
    pem = client.get(f"{API}/{cert_id}/download", params={"format": "pem"}, headers=viewer)
    assert pem.status_code == 200
    assert pem.headers["content-disposition"].endswith('.pem"')
    assert x509.load_pem_x509_certificates(pem.content) == good.chain
    der = client.get(f"{API}/{cert_id}/download", params={"format": "der"}, headers=viewer)
    assert hashlib.sha256(der.content).hexdigest().upper() == good.sha256
    p7b = client.get(f"{API}/{cert_id}/download", params={"format": "p7b"}, headers=viewer)
    assert set(pkcs7.load_der_pkcs7_certificates(p7b.content)) == set(good.chain)  # a SET: DER sorts it
    in_url = client.get(f"{API}/{cert_id}/download", params={"format": "pkcs12"}, headers=viewer)
    assert in_url.status_code == 422
    assert "POST" in in_url.json()["detail"]
    by_viewer = client.post(f"{API}/{cert_id}/download", json={"format": "pkcs12", "password": P12_PASSWORD},
                            headers=viewer)  # fmt: skip
    assert by_viewer.status_code == 403
    short = client.post(f"{API}/{cert_id}/download", json={"format": "pkcs12", "password": "short"}, headers=operator)
    assert short.status_code == 422
    assert short.json()["field"] == "password"
    p12 = client.post(f"{API}/{cert_id}/download", json={"format": "pkcs12", "password": "download-pass-9"},
                      headers=operator)  # fmt: skip
    assert p12.status_code == 200, p12.text
    key, leaf, extra = pkcs12.load_key_and_certificates(p12.content, b"download-pass-9")
    assert leaf == good.leaf
    assert key is not None
    assert key_matches_certificate(key, good.leaf)  # type: ignore[arg-type]
    assert extra == good.chain[1:]
    bad_format = client.get(f"{API}/{cert_id}/download", params={"format": "zip"}, headers=viewer)
    assert bad_format.status_code == 422
    assert bad_format.json()["field"] == "format"

    # Ignore (with a reason), then Unignore.
    assert client.post(f"{API}/{cert_id}/ignore", headers=viewer).status_code == 403
    ignored = client.post(f"{API}/{cert_id}/ignore", json={"reason": "lab box"}, headers=operator)
    assert ignored.status_code == 200, ignored.text
    assert ignored.json()["status"] == "Ignored"
    assert ignored.json()["status_reason"] == "ignored by operator: lab box"
    listed = client.get(API, params={"filter": "status:eq:Ignored"}, headers=viewer).json()
    assert [row["id"] for row in listed["items"]] == [cert_id]
    back = client.post(f"{API}/{cert_id}/unignore", headers=operator)
    assert back.json()["status"] == "Discovered"

    # Delete: the certificate, its locations, and then it is gone.
    assert client.delete(f"{API}/{cert_id}", headers=viewer).status_code == 403
    deleted = client.delete(f"{API}/{cert_id}", headers=operator)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"certificate_id": cert_id, "common_name": d["certificate"]["common_name"],
                              "locations": 1}  # fmt: skip
    assert client.get(f"{API}/{cert_id}/details", headers=viewer).status_code == 404
    with session_scope() as s:
        assert s.query(CertificateLocation).filter_by(certificate_id=cert_id).count() == 0
        actions = {e.action for e in s.query(AuditEvent).filter_by(actor="operator")}
    assert {"download-certificate", "ignore-certificate", "unignore-certificate", "delete-certificate"} <= actions


def _discovery_only_bot() -> int:
    with session_scope() as s:
        bot = Bot(name=f"scanner-{s.query(Bot).count()}", purpose=BotPurpose.DISCOVERY, status=BotStatus.ACTIVE,
                  work_queue=f"bot-scanner-{s.query(Bot).count()}")  # fmt: skip
        s.add(bot)
        s.flush()
        return bot.id


def test_configure_refuses_with_every_reason_per_field_then_saves(
    client: TestClient, accounts: Accounts, fleet: dict[str, Served]
) -> None:
    cert_id = import_with_key(client, accounts, fleet["good"])
    operator = auth(accounts, "operator")
    scanner = _discovery_only_bot()
    bad: dict[str, Any] = {"ca_connector_id": accounts.boot.ca_connector_id, "provisioning_bot_id": scanner,
                           "validity_days": 30, "renew_before_days": 30, "key_spec": "rsa1000"}  # fmt: skip
    refused = client.put(f"{API}/{cert_id}", json=bad, headers=operator)
    assert refused.status_code == 422, refused.text
    problems = {p["field"]: p["message"] for p in refused.json()["problems"]}
    assert set(problems) == {"provisioning_bot_id", "key_spec", "renew_before_days"}
    assert "only discovers" in problems["provisioning_bot_id"]
    assert "fewer than 30 days" in problems["renew_before_days"]
    check = client.post(f"{API}/{cert_id}/configuration/check", json=bad, headers=auth(accounts, "viewer"))
    assert check.json()["ok"] is False
    assert len(check.json()["problems"]) == 3
    with session_scope() as s:
        cert = s.get(Certificate, cert_id)
        assert cert is not None
        assert cert.provisioning_bot_id is None  # nothing saved

    good = {**bad, "provisioning_bot_id": accounts.boot.local_bot_id, "key_spec": "ec-p256", "validity_days": 90,
            "tags": ["env=prod"], "batch_name": "q3"}  # fmt: skip
    assert client.put(f"{API}/{cert_id}", json=good, headers=auth(accounts, "viewer")).status_code == 403
    saved = client.put(f"{API}/{cert_id}", json=good, headers=operator)
    assert saved.status_code == 200, saved.text
    config = client.get(f"{API}/{cert_id}/configuration", headers=auth(accounts, "viewer")).json()
    assert config["provisioning_bot_id"] == accounts.boot.local_bot_id
    assert config["ca_connector_id"] == accounts.boot.ca_connector_id
    assert (config["key_spec"], config["validity_days"], config["renew_before_days"]) == ("ec-p256", 90, 30)
    assert (config["tags"], config["batch_name"], config["targets"]) == (["env=prod"], "q3", [])
    row = client.get(API, params={"filter": "batch_name:eq:q3"}, headers=operator).json()["items"]
    assert row[0]["provisioning_bot"] == config["provisioning_bot"] == LOCAL_BOT_NAME


def test_private_roots_decide_ca_type(
    client: TestClient, accounts: Accounts, fleet: dict[str, Served], pki: PKI
) -> None:
    cert_id = import_with_key(client, accounts, fleet["good"])
    operator = auth(accounts, "operator")
    before = client.get(f"{API}/{cert_id}/details", headers=operator).json()
    assert before["trust_anchor"] is None
    added = client.post("/api/v1/private-roots", json={"name": "Test Root", "pem": pki.root.pem.decode()},
                        headers=operator)  # fmt: skip
    assert added.status_code == 201, added.text
    assert added.json()["created_by"] == "operator"
    after = client.get(f"{API}/{cert_id}/details", headers=operator).json()
    assert after["ca_type"] == "Private"
    assert after["trust_anchor"]
    roots = client.get("/api/v1/private-roots", headers=auth(accounts, "viewer")).json()
    assert [r["name"] for r in roots] == ["Test Root"]
    leaf = client.post("/api/v1/private-roots", json={"name": "leaf", "pem": fleet["good"].leaf.public_bytes(
        serialization.Encoding.PEM).decode()}, headers=operator)  # fmt: skip
    assert leaf.status_code == 422
    assert leaf.json()["field"] == "content"
    denied = client.delete(f"/api/v1/private-roots/{roots[0]['id']}", headers=auth(accounts, "viewer"))
    assert denied.status_code == 403
    assert client.delete(f"/api/v1/private-roots/{roots[0]['id']}", headers=operator).status_code == 204
    assert client.get(f"{API}/{cert_id}/details", headers=operator).json()["trust_anchor"] is None


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_menu_forms_configure_shows_reasons_per_field_and_ignore_unignore(
    client: TestClient, accounts: Accounts, fleet: dict[str, Served]
) -> None:
    cert_id = import_with_key(client, accounts, fleet["good"])
    token = login(client, "operator")
    listing = client.get("/certificates").text
    for action in ("Configure", "Download Certificate", "Download PKCS#12", "Certificate Details",
                   "View Certificate", "Ignore", "Delete"):  # fmt: skip
        assert action in listing, action
    page = client.get(f"/certificates/{cert_id}")
    assert page.status_code == 200
    assert 'data-testid="cert-locations"' in page.text
    assert 'data-testid="download-pkcs12"' in page.text
    form = {"ca_connector_id": str(accounts.boot.ca_connector_id), "provisioning_bot_id": str(_discovery_only_bot()),
            "key_spec": "rsa2048", "validity_days": "30", "renew_before_days": "40", "csrf_token": token}  # fmt: skip
    refused = client.post(f"/certificates/{cert_id}", data=form)
    assert refused.status_code == 422
    assert 'data-field-error="provisioning_bot_id"' in refused.text
    assert 'data-field-error="renew_before_days"' in refused.text
    assert 'value="40"' in refused.text  # the user's values stay in the form

    p12 = client.post(f"/certificates/{cert_id}/download", data={"password": "page-pass-123", "csrf_token": token})
    assert p12.status_code == 200
    assert pkcs12.load_key_and_certificates(p12.content, b"page-pass-123")[1] == fleet["good"].leaf

    client.post(f"/certificates/{cert_id}/ignore", data={"csrf_token": token})
    assert f'action="/certificates/{cert_id}/unignore"' in client.get("/certificates").text
    client.post(f"/certificates/{cert_id}/unignore", data={"csrf_token": token})
    with session_scope() as s:
        cert = s.get(Certificate, cert_id)
        assert cert is not None
        assert cert.status.value == "Discovered"


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_import_and_private_root_pages(
    client: TestClient, accounts: Accounts, fleet: dict[str, Served], pki: PKI
) -> None:
    token = login(client, "operator")
    assert client.get("/discovery/import").status_code == 200
    response = client.post(
        "/discovery/import",
        data={"csrf_token": token},
        files=[("files", ("good.pem", fleet["good"].cert_file.read_bytes(), "application/x-pem-file")),
               ("files", ("junk.bin", b"\x00\x01junk", "application/octet-stream"))],
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.text.count('data-imported="yes"') == 1
    assert response.text.count('data-imported="no"') == 1
    assert "not a PEM, DER, PKCS#7 or PKCS#12 certificate file" in response.text

    added = client.post("/private-roots", data={"name": "Corp Root", "pem": pki.root.pem.decode(),
                                                "csrf_token": token}, follow_redirects=False)  # fmt: skip
    assert added.status_code == 303
    assert "Corp Root" in client.get("/private-roots").text
    again = client.post("/private-roots", data={"name": "Corp Root", "pem": pki.root.pem.decode(),
                                                "csrf_token": token})  # fmt: skip
    assert again.status_code == 422
    assert "exists already" in again.text

    client.cookies.clear()
    token = login(client, "viewer")
    assert client.get("/discovery/import").status_code == 403
    assert client.post("/private-roots", data={"name": "x", "pem": "x", "csrf_token": token}).status_code == 403
    assert "Corp Root" in client.get("/private-roots").text
    assert csrf_of(client.get("/discovery").text)


# --- issue 11: what a certificate is for, malformed files, policy per rule -------------------------------------


def _smime_pem(pki: PKI) -> bytes:
    issued = pki.issue(
        "Alice Example",
        sans=["alice@example.test"],
        not_before=datetime.now(UTC) - timedelta(days=1),
        days=365,
        serial=0x5EE,
        extensions=[x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION])],
    )
    return issued.pem + pki.intermediate.pem


def test_usage_column_filter_and_quick_target_refusal(
    client: TestClient, accounts: Accounts, fleet: dict[str, Served], pki: PKI
) -> None:
    operator = auth(accounts, "operator")
    files = [("files", ("good.pem", fleet["good"].cert_file.read_bytes(), "x")),
             ("files", ("alice.pem", _smime_pem(pki), "x"))]  # fmt: skip
    body = client.post(f"{API}/import", files=files, headers=operator).json()
    good_id, alice_id = (o["certificate_id"] for o in body["outcomes"])

    columns = {c["key"]: c for c in client.get(f"{API}/columns", headers=operator).json()}
    assert columns["usage"]["label"] == "Usage"
    assert columns["usage"]["values"] == ["tls-server", "tls-client", "smime", "code-signing", "ca", "other"]
    smime = client.get(API, params={"filter": "usage:eq:smime", "columns": "common_name,usage"}, headers=operator)
    assert smime.status_code == 200, smime.text
    assert [r["id"] for r in smime.json()["items"]] == [alice_id]
    assert smime.json()["total"] == 1
    tls = client.get(API, params={"filter": "usage:eq:tls-server"}, headers=operator).json()
    assert [r["id"] for r in tls["items"]] == [good_id]
    # Requested, not issued yet: the list shows the profile it will be ordered with.
    bob = client.post(API, json={"common_name": "bob@example.test", "profile": "smime"},
                      headers=operator)  # fmt: skip
    assert bob.status_code == 201, bob.text
    assert bob.json()["usage"] == "smime"
    smime_ids = [
        r["id"] for r in client.get(API, params={"filter": "usage:eq:smime"}, headers=operator).json()["items"]
    ]
    assert smime_ids == [bob.json()["id"], alice_id]
    assert client.get(f"{API}/{alice_id}", headers=operator).json()["usage"] == "smime"
    assert client.get(f"{API}/{alice_id}/details", headers=operator).json()["usage_label"] == "S/MIME"

    with session_scope() as s:
        server = Server(description="web-1", host="127.0.0.1", ports=[443], connection=ServerConnection.LOCAL,
                        server_type="nginx", bot_id=accounts.boot.local_bot_id)  # fmt: skip
        s.add(server)
        s.flush()
        server_id = server.id
    target = {"server_id": server_id, "port": 443, "cert_path": "/srv/tls/a.pem", "key_path": "/srv/tls/a.key"}
    refused = client.post(f"{API}/{alice_id}/targets", json=target, headers=operator)
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "server_id"
    assert "this is an S/MIME certificate: it cannot be served by nginx" in refused.json()["detail"]
    assert client.post(f"{API}/{good_id}/targets", json=target, headers=operator).status_code == 201

    token = login(client, "viewer")
    assert token
    page = client.get("/certificates", params={"filter": "usage:eq:smime"}).text
    assert "Alice Example" in page
    assert "S/MIME" in page
    assert "good.example.test" not in page


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_import_status_is_422_when_nothing_is_imported_and_each_reason_names_the_problem(
    client: TestClient, accounts: Accounts, fleet: dict[str, Served]
) -> None:
    good = fleet["good"]
    pem = good.cert_file.read_bytes()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(good.leaf.subject)
        .sign(
            good.key,
            hashes.SHA256(),  # type: ignore[arg-type]
        )
    )
    csr_in_cert_armour = csr.public_bytes(serialization.Encoding.PEM).replace(b"CERTIFICATE REQUEST", b"CERTIFICATE")
    p12 = _pkcs12(good)
    files = [
        ("files", ("cut.pem", pem[: len(pem) // 3], "x")),
        ("files", ("request.crt", csr_in_cert_armour, "x")),
        ("files", ("cut.cer", good.der[:300], "x")),
        ("files", ("garbage.p12", p12[:40] + bytes(len(p12) - 40), "x")),
        ("files", ("cut.p12", p12[: len(p12) // 2], "x")),
    ]
    response = client.post(f"{API}/import", files=files, data={"password": P12_PASSWORD},
                           headers=auth(accounts, "operator"))  # fmt: skip
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["imported"], body["failed"]) == (0, 5)
    reasons = {o["filename"]: o["reason"] for o in body["outcomes"]}
    assert reasons == {
        "cut.pem": "the PEM CERTIFICATE block that begins on line 1 has no '-----END CERTIFICATE-----' line: "
        "the file is truncated or damaged",
        "request.crt": "PEM block 1 is a certificate signing request (CSR) inside CERTIFICATE armour, not a "
        "certificate: upload the certificate the CA issued for it",
        "cut.cer": f"the DER file is truncated: its header announces {len(good.der)} bytes, it has 300",
        "garbage.p12": "the PKCS#12 file is damaged: its structure cannot be parsed (no password would open it)",
        "cut.p12": f"the PKCS#12 file is truncated: its header announces {len(p12)} bytes, it has {len(p12) // 2}",
    }
    ok = client.post(f"{API}/import", files=[("files", ("good.pem", pem, "x"))], headers=auth(accounts, "operator"))
    assert ok.status_code == 200
    openapi = client.get("/api/v1/openapi.json", headers=auth(accounts, "viewer"))  # the document needs a login
    if openapi.status_code == 404:
        openapi = client.get("/openapi.json")
    operation = openapi.json()["paths"]["/api/v1/certificates/import"]["post"]
    assert {"200", "207", "422"} <= set(operation["responses"])
    assert "**207**" in operation["description"]

    token = login(client, "operator")
    page = client.post("/discovery/import", data={"csrf_token": token},
                       files=[("files", ("cut.cer", good.der[:300], "x"))])  # fmt: skip
    assert page.status_code == 422
    assert "the DER file is truncated" in page.text


def test_policy_per_rule_in_the_api_and_public_rules_for_a_chosen_private_root(
    client: TestClient, accounts: Accounts, pki: PKI
) -> None:
    leaf = pki.issue(
        "intranet.example.test",
        sans=["intranet.example.test"],
        not_before=datetime.now(UTC) - timedelta(days=1),
        days=825,
        serial=0x825,
        extensions=[x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])],
    )
    operator = auth(accounts, "operator")
    files = [("files", ("intranet.pem", leaf.pem + pki.intermediate.pem, "x"))]
    cert_id = client.post(f"{API}/import", files=files, headers=operator).json()["outcomes"][0]["certificate_id"]
    root = client.post("/api/v1/private-roots", json={"name": "Corp Root", "pem": pki.root.pem.decode()},
                       headers=operator).json()  # fmt: skip
    assert root["apply_public_rules"] is False

    details = client.get(f"{API}/{cert_id}/details", headers=operator).json()
    assert details["vulnerable"] is False
    limit = {p["rule"]: p for p in details["policy"]}["398-day limit"]
    assert (limit["outcome"], limit["detail"]) == ("not applicable", "private CA (Corp Root)")

    path = f"/api/v1/private-roots/{root['id']}/public-rules"
    assert client.put(path, json={"apply": True}, headers=operator).status_code == 403  # an admin's choice
    held = client.put(path, json={"apply": True}, headers=auth(accounts, "admin"))
    assert held.status_code == 200, held.text
    assert held.json()["apply_public_rules"] is True
    details = client.get(f"{API}/{cert_id}/details", headers=operator).json()
    limit = {p["rule"]: p for p in details["policy"]}["398-day limit"]
    assert limit["outcome"] == "failed"
    assert details["vulnerable"] is True
    assert details["vulnerability_reasons"] == [
        "validity of 825 days exceeds the 398 days allowed for publicly trusted certificates"
    ]

    token = login(client, "admin")
    page = client.get("/private-roots").text
    assert f'data-testid="public-rules-{root["id"]}">Applied' in page
    stop = client.post(f"/private-roots/{root['id']}/public-rules", data={"apply": "0", "csrf_token": token},
                       follow_redirects=False)  # fmt: skip
    assert stop.status_code == 303
    assert f'data-testid="public-rules-{root["id"]}">Not applied' in client.get("/private-roots").text
    detail_page = client.get(f"/certificates/{cert_id}").text
    assert "398-day limit" in detail_page
    assert "private CA (Corp Root)" in detail_page
    assert 'data-testid="cert-usage">TLS server' in detail_page
