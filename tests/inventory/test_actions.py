"""The Select Action menu through the service API: Configure (and every refusal), Download in each format,
Certificate Details, View Certificate, Ignore, Delete, and private roots."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from pydantic import SecretStr
from sqlalchemy import func, select

from certfleet.inventory import service
from certfleet.inventory.schemas import (
    ConfigurationRejected,
    ConfigureRequest,
    DownloadFormat,
    DownloadRequest,
    InventoryError,
    TargetInput,
    UploadedFile,
)
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
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
    ConnectorStatus,
    DeploymentTarget,
    DeploymentType,
    LocationStatus,
    Order,
    OrderState,
    Server,
    ServerConnection,
    ServerStatus,
)
from certfleet.pki.bundle import key_matches_certificate, to_pkcs12
from tests.discovery.certs import Served, expected_reasons
from tests.pki.conftest import PKI

PASSWORD = "pfx-password-1"


def imported(fleet: dict[str, Served], name: str, *, with_key: bool = False) -> int:
    served = fleet[name]
    if with_key:
        content = to_pkcs12(served.key, served.chain, PASSWORD.encode())  # type: ignore[arg-type]
        files = [UploadedFile(filename=f"{name}.p12", content=content, password=SecretStr(PASSWORD))]
    else:
        files = [UploadedFile(filename=f"{name}.pem", content=served.cert_file.read_bytes())]
    outcome = service.import_files(files, actor="alice").outcomes[0]
    assert outcome.certificate_id is not None, outcome.reason
    return outcome.certificate_id


def add_server(bot_id: int | None, **fields: object) -> int:
    with session_scope() as s:
        server = Server(
            description=str(fields.pop("description", "web-1")),
            host="127.0.0.1",
            ports=fields.pop("ports", [8443, 443]),
            connection=fields.pop("connection", ServerConnection.LOCAL),
            server_type=str(fields.pop("server_type", "generic")),
            bot_id=bot_id,
            **fields,
        )
        s.add(server)
        s.flush()
        return server.id


def add_bot(name: str, purpose: BotPurpose = BotPurpose.PROVISIONING, status: BotStatus = BotStatus.ACTIVE) -> int:
    with session_scope() as s:
        bot = Bot(name=name, purpose=purpose, status=status, work_queue=name)
        s.add(bot)
        s.flush()
        return bot.id


def request(boot: Bootstrapped, server_id: int, tmp_path: Path, **changes: object) -> ConfigureRequest:
    target = TargetInput(
        server_id=server_id,
        port=8443,
        server_name="good.example.test",
        cert_path=str(tmp_path / "cert.pem"),
        key_path=str(tmp_path / "key.pem"),
    )
    values: dict[str, object] = {
        "ca_connector_id": boot.ca_connector_id,
        "provisioning_bot_id": boot.local_bot_id,
        "targets": [target],
        "key_spec": "ec-p256",
        "validity_days": 60,
        "renew_before_days": 20,
        "tags": ["web"],
        "batch_name": "wave-1",
    }
    values.update(changes)
    return ConfigureRequest.model_validate(values)


# --- Configure ---------------------------------------------------------------------------------------------


def test_configure_saves_everything(boot: Bootstrapped, fleet: dict[str, Served], tmp_path: Path) -> None:
    cert_id = imported(fleet, "good")
    server_id = add_server(boot.local_bot_id)
    with session_scope() as s:
        saved = service.configure(s, cert_id, request(boot, server_id, tmp_path), actor="alice")
    assert (saved.ca_connector, saved.provisioning_bot) == ("Built-in CA", "local-bot")
    assert (saved.key_spec, saved.validity_days, saved.renew_before_days) == ("ec-p256", 60, 20)
    assert (saved.tags, saved.batch_name, saved.deployment_type) == (["web"], "wave-1", DeploymentType.AUTOMATED)
    (target,) = saved.targets
    assert (target.server_id, target.port, target.server_name) == (server_id, 8443, "good.example.test")
    assert target.cert_path == str(tmp_path / "cert.pem")

    # Reconfigure: the same (server, port) is updated in place, a new one added, a dropped one removed.
    other = add_server(boot.local_bot_id, description="web-2")
    again = request(boot, server_id, tmp_path, key_spec="rsa3072")
    again.targets[0].cert_path = "/etc/ssl/new.pem"
    again.targets.append(TargetInput(server_id=other, port=443, cert_path="/a.pem", key_path="/a.key"))
    with session_scope() as s:
        saved = service.configure(s, cert_id, again, actor="bob")
    assert [(t.id == target.id, t.cert_path) for t in saved.targets] == [(True, "/etc/ssl/new.pem"), (False, "/a.pem")]
    with session_scope() as s:
        service.configure(s, cert_id, request(boot, other, tmp_path), actor="bob")
        assert [t.server_id for t in repo.get(s, Certificate, cert_id).targets] == [other]
        assert s.scalar(select(func.count()).select_from(DeploymentTarget)) == 1
        assert s.scalar(select(func.count()).where(AuditEvent.action == "configure-certificate")) == 3


REJECTIONS: list[tuple[str, Callable[[Bootstrapped, int], dict[str, object]], str]] = [
    ("unknown connector", lambda b, s: {"ca_connector_id": 999}, "CA connector 999 does not exist"),
    (
        "disabled connector",
        lambda b, s: {"ca_connector_id": _connector("Old CA", "local", ConnectorStatus.DISABLED)},
        "CA connector 'Old CA' is disabled: enable it or choose another",
    ),
    (
        "public CA, long validity",
        lambda b, s: {"ca_connector_id": _connector("Public ACME", "acme"), "validity_days": 500},
        "'Public ACME' is a public CA: it issues TLS certificates for at most 398 days, not 500",
    ),
    ("unknown bot", lambda b, s: {"provisioning_bot_id": 999}, "bot 999 does not exist"),
    (
        "discovery-only bot",
        lambda b, s: {"provisioning_bot_id": add_bot("scanner", BotPurpose.DISCOVERY)},
        "bot 'scanner' only discovers; choose a bot whose purpose includes Provisioning",
    ),
    (
        "stopped bot",
        lambda b, s: {"provisioning_bot_id": add_bot("sleepy", status=BotStatus.STOPPED)},
        "bot 'sleepy' is Stopped: start it or choose another",
    ),
    ("unknown key type", lambda b, s: {"key_spec": "dsa1024"}, "unknown key type 'dsa1024'"),
    ("key size", lambda b, s: {"key_spec": "rsa1024"}, "RSA key size 1024 is not supported"),
    # another spelling was stored lower-cased ("rsa-3072"): a filter on rsa3072 then missed it
    ("key type spelling", lambda b, s: {"key_spec": "RSA-3072"}, "write the key type 'RSA-3072' as 'rsa3072'"),
    ("key type spaces", lambda b, s: {"key_spec": " ec-p256"}, "write the key type ' ec-p256' as 'ec-p256'"),
    ("key type not issued", lambda b, s: {"key_spec": "ec-p521"}, "EC curve size 521 is not supported"),
    (
        "renewal window",
        lambda b, s: {"validity_days": 30, "renew_before_days": 30},
        "renewing 30 days before expiry of a 30-day certificate would renew it as soon as it is issued",
    ),
    (
        "unknown server",
        lambda b, s: {"targets": [{"server_id": 999, "port": 443, "cert_path": "/c", "key_path": "/k"}]},
        "server 999 does not exist; add it first",
    ),
    (
        "server of another bot",
        lambda b, s: {"targets": [_target(add_server(add_bot("dmz-bot"), description="dmz"))]},
        "dmz (127.0.0.1) is mapped to bot 'dmz-bot', which bot 'local-bot' cannot stand in for",
    ),
    (
        "unreachable server",
        lambda b, s: {"targets": [_target(_unreachable(b))]},
        "down (127.0.0.1) was unreachable at its last check: connection refused",
    ),
    (
        "no files for a plain server",
        lambda b, s: {"targets": [{"server_id": s, "port": 443}]},
        "web-1 (127.0.0.1) is a generic server: give the certificate and key file paths",
    ),
    (
        "port the server does not list",
        lambda b, s: {"targets": [{"server_id": s, "port": 9443, "cert_path": "/c", "key_path": "/k"}]},
        "port 9443 is not a port of server web-1 (8443, 443): add it to the server's Ports first",
    ),
    (
        "relative path",
        lambda b, s: {"targets": [{"server_id": s, "port": 443, "cert_path": "certs/c.pem", "key_path": "/k"}]},
        "cert path 'certs/c.pem' must be an absolute path",
    ),
    *(
        (
            f"system location {path}",
            lambda b, s, path=path: {"targets": [{"server_id": s, "port": 443, "cert_path": path, "key_path": "/k"}]},
            f"cert path {path!r} {how} {where}, a system location certfleet never reads or writes "
            "(rule: system-location)",
        )
        for path, how, where in (
            ("/etc/shadow", "is", "/etc/shadow"),
            ("/proc/self/environ", "is inside", "/proc"),
            ("/dev/zero", "is inside", "/dev"),
        )
    ),
    (
        "dot-dot path",
        lambda b, s: {
            "targets": [{"server_id": s, "port": 443, "cert_path": "/etc/nginx/../../etc/passwd", "key_path": "/k"}]
        },
        "cert path '/etc/nginx/../../etc/passwd' contains a `.` or `..` part; write the path without them",
    ),
    (
        "key path outside the server's folders",
        lambda b, s: {
            "targets": [
                {
                    "server_id": add_server(b.local_bot_id, description="nginx-1", app_path="/etc/nginx"),
                    "port": 443,
                    "cert_path": "/etc/nginx/ssl/c.pem",
                    "key_path": "/var/backups/k.pem",
                }
            ]
        },
        "key path '/var/backups/k.pem' is outside the folders this server allows (/etc/nginx); add its folder to "
        "the server's Allowed paths, or choose a path under them (rule: allowed-roots)",
    ),
    *(
        (
            f"server name {name!r}",
            lambda b, s, name=name: {"targets": [{**_target(s), "server_name": name}]},
            f"server name {name!r} {why}",
        )
        for name, why in (
            ("$(touch /tmp/pwned)", "is not a DNS name"),
            ("good.example.test\r\nX: y", "contains a control character"),
            ("good.example.test\x00", "contains a control character"),
            ("-oProxyCommand=touch /tmp/pwned", "is not a DNS name"),
            (
                "g\u043e\u043ed.example.test",
                "is not ASCII: give the name's A-label form, here xn--gd-fmca.example.test",
            ),
        )
    ),
    (
        "same place twice",
        lambda b, s: {"targets": [{"server_id": s, "port": 443, "cert_path": "/c", "key_path": "/k"}] * 2},
        "web-1 (127.0.0.1) port 443 is given twice",
    ),
]


def _target(server_id: int) -> dict[str, object]:
    return {"server_id": server_id, "port": 443, "cert_path": "/c", "key_path": "/k"}


def _unreachable(boot: Bootstrapped) -> int:
    return add_server(
        boot.local_bot_id, description="down", status=ServerStatus.UNREACHABLE, status_reason="connection refused"
    )


def _connector(name: str, kind: str, status: ConnectorStatus = ConnectorStatus.ACTIVE) -> int:
    with session_scope() as s:
        connector = CAConnector(kind=kind, name=name, status=status, settings={}, default_validity_days=90)
        s.add(connector)
        s.flush()
        return connector.id


@pytest.mark.parametrize(("case", "change", "message"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_configure_refuses_what_cannot_work(
    boot: Bootstrapped,
    fleet: dict[str, Served],
    tmp_path: Path,
    case: str,
    change: Callable[[Bootstrapped, int], dict[str, object]],
    message: str,
) -> None:
    cert_id = imported(fleet, "good")
    server_id = add_server(boot.local_bot_id)
    bad = request(boot, server_id, tmp_path, **change(boot, server_id))
    with session_scope() as s:
        with pytest.raises(ConfigurationRejected) as info:
            service.configure(s, cert_id, bad, actor="alice")
        assert message in str(info.value)
        assert message in next(m for _, m in service.check_configuration(s, cert_id, bad))
    with session_scope() as s:  # nothing was saved
        cert = repo.get(s, Certificate, cert_id)
        assert (cert.ca_connector_id, cert.provisioning_bot_id, cert.targets) == (None, None, [])


def test_configure_lists_every_problem_at_once(boot: Bootstrapped, fleet: dict[str, Served], tmp_path: Path) -> None:
    cert_id = imported(fleet, "good")
    bad = request(boot, add_server(boot.local_bot_id), tmp_path, ca_connector_id=999, key_spec="rsa1")
    with session_scope() as s:
        problems = service.check_configuration(s, cert_id, bad)
    assert [field for field, _ in problems] == ["ca_connector_id", "key_spec"]


def test_an_ignored_certificate_cannot_be_configured(
    boot: Bootstrapped, fleet: dict[str, Served], tmp_path: Path
) -> None:
    cert_id = imported(fleet, "good")
    with session_scope() as s:
        service.ignore(s, cert_id, actor="alice")
        with pytest.raises(ConfigurationRejected, match="is ignored; un-ignore it before configuring"):
            service.configure(s, cert_id, request(boot, add_server(boot.local_bot_id), tmp_path), actor="alice")


# --- Download ----------------------------------------------------------------------------------------------


def download(cert_id: int, fmt: DownloadFormat, **options: object) -> tuple[str, str, bytes]:
    with session_scope() as s:
        result = service.download(s, cert_id, DownloadRequest(format=fmt, **options), actor="alice")  # type: ignore[arg-type]
    assert repr(result.content) not in repr(result)
    return result.filename, result.media_type, result.content


def test_download_pem_der_pkcs7(boot: Bootstrapped, fleet: dict[str, Served]) -> None:
    good = fleet["good"]
    cert_id = imported(fleet, "good")
    name, media, pem = download(cert_id, DownloadFormat.PEM)
    assert (name, media) == ("good.example.test.pem", "application/x-pem-file")
    assert pem.decode() == good.pem_chain
    assert download(cert_id, DownloadFormat.PEM, include_chain=False)[2] == good.leaf.public_bytes(
        serialization.Encoding.PEM
    )
    name, media, der = download(cert_id, DownloadFormat.DER)
    assert (name, media, der) == ("good.example.test.cer", "application/pkix-cert", good.der)
    name, media, p7b = download(cert_id, DownloadFormat.PKCS7)
    assert (name, media) == ("good.example.test.p7b", "application/x-pkcs7-certificates")
    assert set(pkcs7.load_der_pkcs7_certificates(p7b)) == set(good.chain)  # a SET: DER sorts it
    with session_scope() as s:
        details = s.scalars(select(AuditEvent.detail).where(AuditEvent.action == "download-certificate")).all()
        assert sorted(details) == ["der", "pem", "pem", "pkcs7"]


def test_download_pkcs12_needs_the_key_and_a_password(boot: Bootstrapped, fleet: dict[str, Served]) -> None:
    without_key = imported(fleet, "good")
    with session_scope() as s, pytest.raises(InventoryError, match="does not hold the private key") as info:
        service.download(
            s, without_key, DownloadRequest(format=DownloadFormat.PKCS12, password=SecretStr(PASSWORD)), actor="a"
        )
    assert info.value.field == "format"

    with_key = imported(fleet, "sha1", with_key=True)
    with session_scope() as s, pytest.raises(InventoryError, match="at least 8 characters") as info:
        service.download(
            s, with_key, DownloadRequest(format=DownloadFormat.PKCS12, password=SecretStr("short")), actor="a"
        )
    assert info.value.field == "password"
    assert "short" not in str(info.value)

    name, media, pfx = download(with_key, DownloadFormat.PKCS12, password=SecretStr("another secret"))
    assert (name, media) == ("sha1.example.test.pfx", "application/x-pkcs12")
    key, leaf, extra = pkcs12.load_key_and_certificates(pfx, b"another secret")
    assert leaf == fleet["sha1"].leaf
    assert extra == fleet["sha1"].chain[1:]
    assert key is not None
    assert key_matches_certificate(key, leaf)  # type: ignore[arg-type]


def test_a_certificate_not_issued_yet_has_nothing_to_download(boot: Bootstrapped) -> None:
    with session_scope() as s:
        cert = Certificate(common_name="*.new.example.test", status=CertificateStatus.INITIATED)
        s.add(cert)
        s.flush()
        with pytest.raises(InventoryError, match=r"\(\*.new.example.test\) has not been issued yet"):
            service.download(s, cert.id, DownloadRequest(), actor="alice")
        with pytest.raises(InventoryError, match="has not been issued yet"):
            service.details(s, cert.id)
        with pytest.raises(repo.NotFound, match="Certificate 999 does not exist"):
            service.view(s, 999)


# --- Details, View -----------------------------------------------------------------------------------------


def test_details_show_every_field(boot: Bootstrapped, fleet: dict[str, Served]) -> None:
    good = fleet["good"]
    cert_id = imported(fleet, "good", with_key=True)
    with session_scope() as s:
        d = service.details(s, cert_id)
    c = d.certificate
    assert (d.id, d.status, d.ca_type, d.trust_anchor, d.issuer_ca) == (
        cert_id, CertificateStatus.DISCOVERED, CAType.PRIVATE, None, "Test Intermediate CA",
    )  # fmt: skip
    assert (d.vulnerable, d.vulnerability_reasons, d.has_private_key) == (False, [], True)
    assert 87 <= d.expires_within_days <= 89
    assert c.subject == "CN=good.example.test"
    assert c.issuer == "CN=Test Intermediate CA,O=Certfleet Test"
    assert (c.not_before, c.not_after) == (good.leaf.not_valid_before_utc, good.leaf.not_valid_after_utc)
    assert (c.key_type, c.key_size, c.serial_number) == ("RSA", 2048, "1001")
    assert c.sha1_thumbprint == hashlib.sha1(good.der).hexdigest().upper()  # noqa: S324 - a thumbprint
    assert c.sha256_thumbprint == hashlib.sha256(good.der).hexdigest().upper()
    assert c.sans == ["good.example.test", "www.good.example.test"]
    assert c.key_usage == ["digitalSignature", "keyEncipherment"]
    assert c.extended_key_usage == ["serverAuth"]
    assert c.basic_constraints == "CA:FALSE"
    assert c.authority_info_access == ["CA Issuers - URI:http://aia.test/int.cer"]
    assert c.crl_distribution_points == ["http://crl.test/int.crl"]
    assert [(e.subject, e.is_ca) for e in d.chain] == [
        ("CN=good.example.test", False),
        ("CN=Test Intermediate CA,O=Certfleet Test", True),
    ]
    (place,) = d.locations
    assert (place.kind, place.where, place.status) == ("upload", "uploaded good.p12", LocationStatus.ACTIVE)


def test_view_is_the_decoded_certificate(boot: Bootstrapped, fleet: dict[str, Served]) -> None:
    cert_id = imported(fleet, "sha1")
    with session_scope() as s:
        text = service.view(s, cert_id).text
    for line in (
        "Serial Number: 1004",
        "Signature Algorithm: SHA1RSA (1.2.840.113549.1.1.5)",
        "Issuer: CN=Test Intermediate CA,O=Certfleet Test",
        "Subject: CN=sha1.example.test",
        "Public-Key: (2048 bit)",
        "DNS:sha1.example.test, DNS:www.sha1.example.test",
        f"SHA256 Fingerprint: {fleet['sha1'].sha256}",
    ):
        assert line in text


# --- Ignore, Delete ----------------------------------------------------------------------------------------


def test_ignore_and_unignore(boot: Bootstrapped, fleet: dict[str, Served]) -> None:
    good, expired = imported(fleet, "good"), imported(fleet, "expired")
    with session_scope() as s:
        change = service.ignore(s, good, actor="alice", reason="test lab")
        assert (change.status, change.status_reason) == (CertificateStatus.IGNORED, "ignored by alice: test lab")
        service.ignore(s, expired, actor="alice")
    # Discovery seeing it again leaves it ignored.
    service.import_files([UploadedFile(filename="again.pem", content=fleet["good"].cert_file.read_bytes())], actor="x")
    with session_scope() as s:
        assert repo.get(s, Certificate, good).status is CertificateStatus.IGNORED
        assert service.unignore(s, good, actor="alice").status is CertificateStatus.DISCOVERED
        assert service.unignore(s, expired, actor="alice").status is CertificateStatus.EXPIRED
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.object_id == str(good))).all()
        assert actions.count("ignore-certificate") == 1
        assert actions.count("unignore-certificate") == 1


def test_ignore_and_delete_wait_for_an_order_under_way(boot: Bootstrapped, fleet: dict[str, Served]) -> None:
    cert_id = imported(fleet, "good")
    with session_scope() as s:
        s.add(Order(certificate_id=cert_id, ca_connector_id=boot.ca_connector_id, idempotency_key="k",
                    csr_pem="-", state=OrderState.PENDING))  # fmt: skip
    with session_scope() as s:
        with pytest.raises(InventoryError, match="has an order under way at its CA; ignore it once it completes"):
            service.ignore(s, cert_id, actor="alice")
        with pytest.raises(InventoryError, match="has an order under way at its CA; delete it once it completes"):
            service.delete(s, cert_id, actor="alice")


def test_delete_removes_the_certificate_and_its_places(
    boot: Bootstrapped, fleet: dict[str, Served], tmp_path: Path
) -> None:
    cert_id = imported(fleet, "good")
    service.import_files([UploadedFile(filename="copy.pem", content=fleet["good"].cert_file.read_bytes())], actor="x")
    keep = imported(fleet, "sha1")
    with session_scope() as s:
        service.configure(s, cert_id, request(boot, add_server(boot.local_bot_id), tmp_path), actor="alice")
    with session_scope() as s:
        gone = service.delete(s, cert_id, actor="alice")
    assert (gone.certificate_id, gone.common_name, gone.locations) == (cert_id, "good.example.test", 2)
    with session_scope() as s:
        assert s.get(Certificate, cert_id) is None
        assert s.scalar(select(func.count()).select_from(CertificateLocation)) == 1  # only sha1's
        assert s.scalar(select(func.count()).select_from(DeploymentTarget)) == 0
        assert s.get(Certificate, keep) is not None
        audit = s.scalar(select(AuditEvent).where(AuditEvent.action == "delete-certificate"))
        assert audit is not None
        assert (audit.actor, audit.object_id, audit.detail) == ("alice", str(cert_id), "good.example.test")
        with pytest.raises(repo.NotFound):
            service.delete(s, cert_id, actor="alice")


# --- Private roots -----------------------------------------------------------------------------------------


def test_a_registered_private_root_names_the_anchor(boot: Bootstrapped, fleet: dict[str, Served], pki: PKI) -> None:
    cert_id, self_signed = imported(fleet, "good"), imported(fleet, "self_signed")
    root_pem = pki.root.cert.public_bytes(serialization.Encoding.PEM)
    with session_scope() as s:
        view = service.register_private_root(s, "Corp Root", root_pem, actor="admin")
        assert (view.name, view.subject) == ("Corp Root", "CN=Test Root CA,O=Certfleet Test")
        assert [r.name for r in service.list_private_roots(s)] == ["Corp Root"]
    with session_scope() as s:
        good = repo.get(s, Certificate, cert_id)
        assert (good.ca_type, good.trust_anchor) == (CAType.PRIVATE, "Corp Root")
        assert repo.get(s, Certificate, self_signed).trust_anchor is None
        with pytest.raises(InventoryError, match="exists already"):
            service.register_private_root(s, "Corp Root", root_pem, actor="admin")
        with pytest.raises(InventoryError, match="is registered already"):
            service.register_private_root(s, "Again", root_pem, actor="admin")
        with pytest.raises(InventoryError, match=r"CN=good\.example\.test is not a CA certificate"):
            service.register_private_root(s, "Leaf", _leaf_pem(fleet), actor="admin")
        with pytest.raises(InventoryError, match="not a PEM, DER, PKCS#7 or PKCS#12"):
            service.register_private_root(s, "Junk", b"junk", actor="admin")
        with pytest.raises(InventoryError, match="name: ends with whitespace"):  # it was trimmed and stored
            service.register_private_root(s, "Other Root ", root_pem, actor="admin")
    with session_scope() as s:
        service.remove_private_root(s, view.id, actor="admin")
    with session_scope() as s:
        assert repo.get(s, Certificate, cert_id).trust_anchor is None
        assert service.list_private_roots(s) == []


def _leaf_pem(fleet: dict[str, Served]) -> bytes:
    return fleet["good"].leaf.public_bytes(serialization.Encoding.PEM)


def test_reasons_survive_a_reclassification(boot: Bootstrapped, fleet: dict[str, Served]) -> None:
    ids = {name: imported(fleet, name) for name in ("good", "expired", "sha1", "rsa1024", "self_signed")}
    with session_scope() as s:
        assert service.reclassify(s) == 0  # nothing changed: same store, same verdicts
        for name, cert_id in ids.items():
            assert repo.get(s, Certificate, cert_id).vulnerability_reasons == expected_reasons(fleet[name])
