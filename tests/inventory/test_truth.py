"""The inventory tells the truth: what each certificate is for (and which targets can serve it), chains completed
by material that arrives later, and every policy rule's outcome, including the rules not applied and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import SecretStr

from certfleet.inventory import service
from certfleet.inventory.record import Sighting, record
from certfleet.inventory.schemas import ConfigureRequest, TargetInput, UploadedFile
from certfleet.inventory.usage import NotServable, assert_servable, usage_counts
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import CAType, Certificate, Server, ServerConnection
from certfleet.pki.bundle import to_pkcs7, to_pkcs12
from tests.discovery.certs import Served
from tests.pki.conftest import PKI, Issued

ROOT_NAME = "Corp Root"


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def import_one(name: str, content: bytes, password: str | None = None) -> int:
    files = [UploadedFile(filename=name, content=content, password=SecretStr(password) if password else None)]
    outcome = service.import_files(files, actor="alice").outcomes[0]
    assert outcome.certificate_id is not None, outcome.reason
    return outcome.certificate_id


def get(cert_id: int) -> Certificate:
    with session_scope() as s:
        row = repo.get(s, Certificate, cert_id)
        s.expunge(row)
        return row


def register_root(pki: PKI, apply_public_rules: bool = False) -> int:
    with session_scope() as s:
        root = service.register_private_root(s, ROOT_NAME, pem(pki.root.cert), actor="admin")
        if apply_public_rules:
            service.hold_to_public_rules(s, root.id, True, actor="admin")
        return root.id


def smime_leaf(pki: PKI) -> Issued:
    now = datetime.now(UTC)
    return pki.issue(
        "Alice Example",
        sans=["alice@example.test"],
        not_before=now - timedelta(days=1),
        days=365,
        serial=0x5EE,
        extensions=[x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION])],
    )


def nginx(bot_id: int | None) -> int:
    with session_scope() as s:
        server = Server(description="web-1", host="127.0.0.1", ports=[443], connection=ServerConnection.LOCAL,
                        server_type="nginx", bot_id=bot_id)  # fmt: skip
        s.add(server)
        s.flush()
        return server.id


def configure_request(boot: Bootstrapped, server_id: int, tmp_path: Path) -> ConfigureRequest:
    target = TargetInput(server_id=server_id, port=443, cert_path=str(tmp_path / "c.pem"),
                         key_path=str(tmp_path / "k.pem"))  # fmt: skip
    return ConfigureRequest(ca_connector_id=boot.ca_connector_id, provisioning_bot_id=boot.local_bot_id,
                            targets=[target], key_spec="ec-p256", validity_days=60)  # fmt: skip


# --- 1. classification ---------------------------------------------------------------------------------------


def test_an_smime_certificate_is_classified_and_refused_as_a_tls_target(
    boot: Bootstrapped, pki: PKI, fleet: dict[str, Served], tmp_path: Path
) -> None:
    leaf = smime_leaf(pki)
    cert_id = import_one("alice.pem", pem(leaf.cert, pki.intermediate.cert))
    row = get(cert_id)
    assert (row.usage, row.profile) == ("smime", "smime")  # renewal re-orders it as S/MIME

    server_id = nginx(boot.local_bot_id)
    with session_scope() as s:
        problems = service.check_configuration(s, cert_id, configure_request(boot, server_id, tmp_path))
    assert (
        "targets[0].server_id",
        "web-1 (127.0.0.1): this is an S/MIME certificate: it cannot be served by nginx",
    ) in (problems)

    ca_id = import_one("intermediate.pem", pem(pki.intermediate.cert, pki.root.cert))
    assert get(ca_id).usage == "ca"
    with session_scope() as s:
        problems = service.check_configuration(s, ca_id, configure_request(boot, server_id, tmp_path))
    assert any(
        "this is a CA certificate: it issues certificates and cannot be served by nginx" in m for _, m in problems
    )

    good_id = import_one("good.pem", fleet["good"].cert_file.read_bytes())
    assert get(good_id).usage == "tls-server"
    with session_scope() as s:
        assert service.check_configuration(s, good_id, configure_request(boot, server_id, tmp_path)) == []
        details = service.details(s, cert_id)
        assert usage_counts(s) == {"smime": 1, "ca": 1, "tls-server": 1}  # what an S/MIME tile would count
    assert (details.usage, details.usage_label) == ("smime", "S/MIME")


def test_assert_servable_for_the_deploy_path(pki: PKI, fleet: dict[str, Served]) -> None:
    assert_servable(fleet["good"].cert_file.read_bytes(), "nginx")
    assert_servable(fleet["good"].cert_file.read_text(), "nginx")
    with pytest.raises(NotServable, match=r"^this is an S/MIME certificate: it cannot be served by tomcat$"):
        assert_servable(pem(smime_leaf(pki).cert), "tomcat")
    with pytest.raises(NotServable, match="cannot be served by iis"):
        assert_servable(der(pki.root.cert), "iis")
    with pytest.raises(NotServable, match="the certificate to deploy cannot be read"):
        assert_servable(b"junk", "nginx")


# --- 2. chains completed later -------------------------------------------------------------------------------


@pytest.mark.parametrize("later", ["fullchain", "pkcs7", "pkcs12", "intermediate alone", "tls"])
def test_a_leaf_imported_alone_gets_its_chain_from_later_material(
    boot: Bootstrapped, pki: PKI, fleet: dict[str, Served], later: str
) -> None:
    register_root(pki)
    good = fleet["good"]
    cert_id = import_one("leaf.cer", good.der)
    before = get(cert_id)
    assert (before.ca_type, before.trust_anchor) == (CAType.PRIVATE, None)
    assert before.pem_chain == pem(good.leaf).decode()
    assert before.awaiting_issuer is not None

    if later == "fullchain":
        assert import_one("fullchain.pem", pem(*good.chain)) == cert_id
    elif later == "pkcs7":
        assert import_one("chain.p7b", to_pkcs7(good.chain, der=True)) == cert_id
    elif later == "pkcs12":
        content = to_pkcs12(good.key, good.chain, b"pfx-password-1")  # type: ignore[arg-type]
        assert import_one("good.p12", content, "pfx-password-1") == cert_id
    elif later == "intermediate alone":
        assert import_one("intermediate.cer", der(pki.intermediate.cert)) != cert_id
    else:
        summary = record([Sighting(tuple(der(c) for c in good.chain), "tls", "tls:127.0.0.1:443#good",
                                   host="127.0.0.1", port=443)], now=datetime.now(UTC), bot_id=None)  # fmt: skip
        assert summary.completed_chain_ids == [cert_id]

    after = get(cert_id)
    assert after.pem_chain == good.pem_chain
    assert (after.ca_type, after.trust_anchor, after.awaiting_issuer) == (CAType.PRIVATE, ROOT_NAME, None)


def test_a_leaf_imported_after_its_intermediate_takes_the_chain_at_once(
    boot: Bootstrapped, pki: PKI, fleet: dict[str, Served]
) -> None:
    register_root(pki)
    import_one("intermediate.pem", pem(pki.intermediate.cert))
    cert_id = import_one("leaf.cer", fleet["good"].der)
    row = get(cert_id)
    assert row.pem_chain == fleet["good"].pem_chain
    assert row.trust_anchor == ROOT_NAME


def test_a_look_alike_intermediate_completes_nothing(boot: Bootstrapped, fleet: dict[str, Served]) -> None:
    cert_id = import_one("leaf.cer", fleet["good"].der)
    other = PKI()  # same names, other keys
    import_one("fake-intermediate.pem", pem(other.intermediate.cert))
    assert get(cert_id).pem_chain == pem(fleet["good"].leaf).decode()


# --- 3. policy per rule ---------------------------------------------------------------------------------------


def long_lived(pki: PKI) -> Issued:
    return pki.issue(
        "intranet.example.test",
        sans=["intranet.example.test"],
        not_before=datetime.now(UTC) - timedelta(days=1),
        days=825,
        serial=0x825,
        extensions=[x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])],
    )


def test_a_private_825_day_certificate_says_the_398_day_rule_was_not_applied(boot: Bootstrapped, pki: PKI) -> None:
    root_id = register_root(pki)
    cert_id = import_one("intranet.pem", pem(long_lived(pki).cert, pki.intermediate.cert))
    with session_scope() as s:
        details = service.details(s, cert_id)
    assert details.vulnerable is False
    rules = {o.rule: str(o) for o in details.policy}
    assert rules["398-day limit"] == f"398-day limit: not applicable, private CA ({ROOT_NAME})"
    assert rules["Key size"] == "Key size: passed, RSA key of 2048 bits"
    assert rules["Signature hash"] == "Signature hash: passed, signed with SHA256RSA"

    # An admin holds the root to the public rules: the certificate is now vulnerable, and says why.
    with session_scope() as s:
        assert service.hold_to_public_rules(s, root_id, True, actor="admin").apply_public_rules is True
    with session_scope() as s:
        details = service.details(s, cert_id)
    reason = "validity of 825 days exceeds the 398 days allowed for publicly trusted certificates"
    assert (details.vulnerable, details.vulnerability_reasons) == (True, [reason])
    assert str(details.policy[-1]) == f"398-day limit: failed, {reason}"

    with session_scope() as s:
        service.hold_to_public_rules(s, root_id, False, actor="admin")
    assert get(cert_id).vulnerable is False


def test_an_unknown_chain_says_so(boot: Bootstrapped, pki: PKI) -> None:
    cert_id = import_one("intranet.pem", pem(long_lived(pki).cert))
    with session_scope() as s:
        policy = service.details(s, cert_id).policy
    assert str(policy[-1]) == "398-day limit: not applicable, the chain verifies to no known root"
