"""discover-server-files on a registered server (local agent): PEM, DER, PKCS#12 and Java keystores are found
in its key store folder, CA bundles and key files are left alone, unreadable files are reported, and a file
that disappears is marked Missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from certfleet.flows.discovery import DiscoveryFailed, discover_server_files
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Certificate,
    CertificateLocation,
    CertificateStatus,
    DiscoveryRun,
    LocationStatus,
    Server,
    ServerConnection,
)
from certfleet.pki.bundle import chain_to_pem, to_java_keystore, to_pkcs12
from tests.discovery.certs import Served, expected_reasons
from tests.discovery.fixtures import write
from tests.pki.conftest import PKI

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def keystore(tmp_path: Path, fleet: dict[str, Served], pki: PKI) -> Path:
    root = tmp_path / "keystore"
    write(root / "good.pem", fleet["good"].cert_file.read_bytes())  # leaf + intermediate
    write(root / "expired.der", fleet["expired"].der)
    write(root / "sha1.p12", to_pkcs12(fleet["sha1"].key, fleet["sha1"].chain, b"changeit"))  # type: ignore[arg-type]
    write(root / "java" / "rsa1024.jks", to_java_keystore(fleet["rsa1024"].key, fleet["rsa1024"].chain, "s3cret"))  # type: ignore[arg-type]
    write(root / "a" / "b" / "self.cer", fleet["self_signed"].cert_file.read_bytes())
    write(root / "ca-bundle.pem", chain_to_pem([pki.intermediate.cert, pki.root.cert]))
    write(root / "server.key.pem", fleet["good"].key_file.read_bytes())
    write(root / "broken.crt", b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    write(root / "locked.p12", to_pkcs12(fleet["good"].key, fleet["good"].chain, b"unknown pass"))  # type: ignore[arg-type]
    write(root / "notes.txt", b"not a candidate")
    return root


def add_server(bot_id: int, keystore: Path) -> int:
    with session_scope() as s:
        server = Server(
            description="app-1", host="127.0.0.1", ports=[8443], connection=ServerConnection.LOCAL,
            server_type="generic", keystore_folder=str(keystore), bot_id=bot_id,
        )  # fmt: skip
        s.add(server)
        s.flush()
        return server.id


def file_locations() -> dict[str, tuple[str, LocationStatus]]:
    """path -> (certificate CN, status)"""
    with session_scope() as s:
        rows = s.execute(
            select(CertificateLocation.path, Certificate.common_name, CertificateLocation.last_status)
            .join(Certificate, Certificate.id == CertificateLocation.certificate_id)
            .where(CertificateLocation.kind == "file")
        ).all()
    return {path: (cn, status) for path, cn, status in rows}


def test_finds_every_kind_of_certificate_file(boot: Bootstrapped, keystore: Path, fleet: dict[str, Served]) -> None:
    server_id = add_server(boot.local_bot_id, keystore)
    (summary,) = discover_server_files(server_ids=[server_id])
    assert (summary.server_id, summary.files, summary.certificates, summary.new_certificates) == (server_id, 9, 5, 5)
    assert summary.skipped == [f"{keystore}/ca-bundle.pem: only CA certificates"]
    assert sorted(summary.errors) == [
        f"local:{keystore}/broken.crt: PEM block 1 (CERTIFICATE) is not valid base64: the file is damaged",
        f"local:{keystore}/locked.p12: PKCS#12 keystore needs a password certfleet does not know",
    ]
    assert file_locations() == {
        f"{keystore}/good.pem": ("good.example.test", LocationStatus.ACTIVE),
        f"{keystore}/expired.der": ("expired.example.test", LocationStatus.ACTIVE),
        f"{keystore}/sha1.p12": ("sha1.example.test", LocationStatus.ACTIVE),
        f"{keystore}/java/rsa1024.jks#certfleet": ("rsa1024.example.test", LocationStatus.ACTIVE),
        f"{keystore}/a/b/self.cer": ("self.example.test", LocationStatus.ACTIVE),
    }
    with session_scope() as s:
        for served in fleet.values():
            row = s.scalar(select(Certificate).where(Certificate.sha256_thumbprint == served.sha256))
            assert row is not None, served.name
            assert row.vulnerability_reasons == expected_reasons(served)
            assert row.discovery_bot_id == boot.local_bot_id
            assert row.private_key is None  # keys on servers stay on servers
            assert (row.location_host, row.location_port) == ("127.0.0.1", None)
            if served.kind != "expired":  # the DER file held the leaf alone
                assert row.pem_chain == served.pem_chain
        assert s.scalar(select(Certificate.status).where(Certificate.common_name == "expired.example.test")) is (
            CertificateStatus.EXPIRED
        )
        place = s.scalar(select(CertificateLocation).where(CertificateLocation.path.like("%good.pem")))
        assert place is not None
        assert (place.server_id, place.host, place.locator) == (
            server_id,
            "127.0.0.1",
            f"file:{server_id}:{place.path}",
        )
        run = s.scalar(select(DiscoveryRun).where(DiscoveryRun.kind == "files"))
        assert run is not None
        assert (run.status, run.endpoints_scanned, run.certificates_new) == ("Completed", 9, 5)
        assert any("broken.crt" in e for e in run.errors)

    # A file removed since the last scan is marked, not forgotten; the others stay Active.
    (keystore / "good.pem").unlink()
    (again,) = discover_server_files(server_ids=[server_id])
    assert (again.new_certificates, again.missing) == (0, 1)
    places = file_locations()
    assert places[f"{keystore}/good.pem"] == ("good.example.test", LocationStatus.MISSING)
    assert places[f"{keystore}/expired.der"][1] is LocationStatus.ACTIVE


def test_a_server_without_folders_fails_its_run_with_the_reason(boot: Bootstrapped) -> None:
    with session_scope() as s:
        server = Server(description="bare", host="127.0.0.1", connection=ServerConnection.LOCAL, server_type="generic")
        s.add(server)
        s.flush()
        server_id = server.id
    with pytest.raises(DiscoveryFailed, match="has no key store folder or installation path to scan"):
        discover_server_files(server_ids=[server_id])


def test_a_missing_folder_is_an_error_not_a_crash(boot: Bootstrapped, tmp_path: Path) -> None:
    server_id = add_server(boot.local_bot_id, tmp_path / "nowhere")
    (summary,) = discover_server_files(server_ids=[server_id])
    assert summary.files == 0
    assert len(summary.errors) == 1
    assert summary.errors[0].startswith(f"local: cannot list {tmp_path / 'nowhere'}: ")
    assert "No such file or directory" in summary.errors[0]
