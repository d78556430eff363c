"""Import of uploaded PEM, DER, PKCS#7 and PKCS#12 files: every good file lands in the inventory with its
fields, every bad file gets its own reason, and a key in the file is kept (encrypted) only if it fits."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from sqlalchemy import func, select

from certfleet.inventory.schemas import UploadedFile
from certfleet.inventory.service import import_files
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, CAType, Certificate, CertificateLocation, CertificateStatus
from certfleet.pki.bundle import key_matches_certificate, to_pkcs7, to_pkcs12
from certfleet.pki.keys import load_private_key
from tests.discovery.certs import Served, expected_reasons


def upload(name: str, content: bytes, password: str | None = None) -> UploadedFile:
    return UploadedFile(filename=name, content=content, password=SecretStr(password) if password else None)


def row(sha256: str) -> Certificate:
    with session_scope() as s:
        found = s.scalar(select(Certificate).where(Certificate.sha256_thumbprint == sha256))
        assert found is not None
        return found


def p12(served: Served, password: bytes) -> bytes:
    return to_pkcs12(served.key, served.chain, password)  # type: ignore[arg-type]


def test_each_format_is_imported_with_its_fields(boot: Bootstrapped, fleet: dict[str, Served]) -> None:
    report = import_files(
        [
            upload("good.pem", fleet["good"].cert_file.read_bytes()),
            upload("expired.cer", fleet["expired"].der),
            upload("rsa1024.p7b", to_pkcs7(fleet["rsa1024"].chain, der=True)),
            upload("C:\\certs\\sha1.pfx", p12(fleet["sha1"], b"correct horse"), "correct horse"),
        ],
        actor="alice",
        bot_id=boot.local_bot_id,
    )
    assert [(o.filename, o.imported, o.new, o.reason) for o in report.outcomes] == [
        ("good.pem", True, True, None),
        ("expired.cer", True, True, None),
        # Its intermediate is the one expired.cer lacked: that chain is complete now.
        ("rsa1024.p7b", True, True, "completed the chain of 1 other certificate(s) in the inventory"),
        ("sha1.pfx", True, True, None),
    ]
    assert (report.imported, report.failed) == (4, 0)
    assert [o.private_key_stored for o in report.outcomes] == [False, False, False, True]

    good = row(fleet["good"].sha256)
    assert report.outcomes[0].certificate_id == good.id
    assert good.common_name == report.outcomes[0].common_name == "good.example.test"
    assert good.pem_chain == fleet["good"].pem_chain  # the chain in the file came along
    assert (good.status, good.ca_type, good.issuer_ca) == (
        CertificateStatus.DISCOVERED,
        CAType.PRIVATE,
        "Test Intermediate CA",
    )
    assert (good.serial_number, good.expires_on) == (fleet["good"].serial, fleet["good"].leaf.not_valid_after_utc)

    expired = row(fleet["expired"].sha256)
    assert expired.status is CertificateStatus.EXPIRED
    assert expired.vulnerability_reasons == expected_reasons(fleet["expired"])
    # expired.cer held the leaf alone; rsa1024.p7b, imported after it, carries their common intermediate.
    assert expired.pem_chain == fleet["expired"].pem_chain

    weak = row(fleet["rsa1024"].sha256)
    assert weak.vulnerability_reasons == expected_reasons(fleet["rsa1024"])
    assert weak.pem_chain == fleet["rsa1024"].pem_chain

    sha1 = row(fleet["sha1"].sha256)
    assert sha1.signature_algorithm == "SHA1RSA"
    assert sha1.private_key is not None
    assert key_matches_certificate(load_private_key(sha1.private_key), fleet["sha1"].leaf)

    with session_scope() as s:
        uploads = s.scalars(select(CertificateLocation).order_by(CertificateLocation.id)).all()
        assert [(u.kind, u.path, u.locator) for u in uploads] == [
            ("upload", "good.pem", "upload:good.pem"),
            ("upload", "expired.cer", "upload:expired.cer"),
            ("upload", "rsa1024.p7b", "upload:rsa1024.p7b"),
            ("upload", "sha1.pfx", "upload:sha1.pfx"),
        ]
        audits = s.scalars(select(AuditEvent.detail).where(AuditEvent.action == "import-certificate")).all()
        assert sorted(audits) == ["expired.cer", "good.pem", "rsa1024.p7b", "sha1.pfx"]


def test_each_bad_file_gets_a_clear_reason(boot: Bootstrapped, fleet: dict[str, Served]) -> None:
    key_only = fleet["good"].key_file.read_bytes()
    locked = p12(fleet["sha1"], b"correct horse")
    report = import_files(
        [
            upload("notes.txt", b"this is not a certificate"),
            upload("empty.pem", b"  \n"),
            upload("locked.pfx", locked),
            upload("wrong.pfx", locked, "battery staple"),
            upload("key.pem", key_only),
            upload("good.pem", fleet["good"].cert_file.read_bytes()),
            upload("huge.pem", b"-" * (1024 * 1024 + 1)),
        ],
        actor="alice",
    )
    reasons = {o.filename: (o.imported, o.reason) for o in report.outcomes}
    assert reasons == {
        "notes.txt": (
            False,
            "the file is text without a PEM '-----BEGIN CERTIFICATE-----' block: "
            "not a PEM, DER, PKCS#7 or PKCS#12 certificate file",
        ),
        "empty.pem": (False, "the file is empty"),
        "locked.pfx": (False, "PKCS#12 file needs a password"),
        "wrong.pfx": (False, "wrong password for PKCS#12 file"),
        "key.pem": (False, "the file holds only a private key; upload the certificate, or a PKCS#12 file with both"),
        "good.pem": (True, None),
        "huge.pem": (False, "the file is larger than 1024 KiB; upload one certificate file"),
    }
    assert "battery staple" not in repr(report)
    assert "correct horse" not in repr(report)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Certificate)) == 1


def test_a_later_upload_with_the_key_completes_the_certificate(boot: Bootstrapped, fleet: dict[str, Served]) -> None:
    first = import_files([upload("sha1.pem", fleet["sha1"].cert_file.read_bytes())], actor="alice").outcomes[0]
    assert (first.new, first.private_key_stored) == (True, False)
    second = import_files([upload("sha1.p12", p12(fleet["sha1"], b"pass-word"), "pass-word")], actor="bob").outcomes[0]
    assert (second.certificate_id, second.new, second.private_key_stored) == (first.certificate_id, False, True)
    stored = row(fleet["sha1"].sha256)
    assert stored.private_key is not None
    with session_scope() as s:  # one certificate, two places it came from
        places = s.scalars(
            select(CertificateLocation.path).where(CertificateLocation.certificate_id == first.certificate_id)
        )
        assert sorted(places) == ["sha1.p12", "sha1.pem"]


def test_a_key_that_does_not_fit_is_left_out(boot: Bootstrapped, fleet: dict[str, Served]) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    outcome = import_files([upload("mixed.pem", fleet["good"].cert_file.read_bytes() + other)], actor="alice").outcomes[
        0
    ]
    assert outcome.imported
    assert not outcome.private_key_stored
    assert outcome.reason == "the private key in the file does not belong to the certificate and was not stored"
    assert row(fleet["good"].sha256).private_key is None
