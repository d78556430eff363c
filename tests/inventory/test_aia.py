"""Missing intermediates fetched from the CA Issuers URL: never unless an admin allowed it, bounded, and a URL
that fails leaves a note instead of failing the import. A real HTTP server on loopback plays the CA."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from certfleet.inventory import service
from certfleet.inventory.aia import MAX_BYTES
from certfleet.inventory.schemas import ImportOutcome, UploadedFile
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate
from certfleet.settings import get_settings
from tests.pki.conftest import PKI


class CA:
    """Serves /int.cer (the intermediate, DER), /huge.cer (too big) and /slow.cer (never answers)."""

    def __init__(self, intermediate: bytes) -> None:
        self.requests: list[str] = []
        self.release = threading.Event()
        ca = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ca.requests.append(self.path)
                if self.path == "/slow.cer":
                    ca.release.wait(30)
                    return
                body = intermediate if self.path == "/int.cer" else b"\x30" * (MAX_BYTES + 10)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def ca(pki: PKI) -> Iterator[CA]:
    server = CA(pki.intermediate.der)
    yield server
    server.release.set()
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def allowed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CERTFLEET_AIA_FETCH", "true")
    monkeypatch.setenv("CERTFLEET_AIA_TIMEOUT_S", "1")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def leaf_pointing_to(pki: PKI, url: str, serial: int) -> bytes:
    issued = pki.issue(
        f"aia{serial}.example.test",
        sans=[f"aia{serial}.example.test"],
        not_before=datetime.now(UTC) - timedelta(days=1),
        serial=serial,
        extensions=[
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        x509.oid.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(url)
                    )
                ]
            )
        ],
    )
    return issued.cert.public_bytes(serialization.Encoding.DER)


def import_one(content: bytes) -> tuple[ImportOutcome, Certificate]:
    files = [UploadedFile(filename="leaf.cer", content=content, password=SecretStr("x"))]
    outcome = service.import_files(files, actor="alice").outcomes[0]
    assert outcome.certificate_id is not None, outcome.reason
    with session_scope() as s:
        row = repo.get(s, Certificate, outcome.certificate_id)
        s.expunge(row)
    return outcome, row


def register_root(pki: PKI) -> None:
    with session_scope() as s:
        service.register_private_root(s, "Corp Root", pki.root.pem, actor="admin")


def test_nothing_is_fetched_unless_an_admin_allowed_it(boot: Bootstrapped, pki: PKI, ca: CA) -> None:
    assert get_settings().aia_fetch is False
    _outcome, row = import_one(leaf_pointing_to(pki, ca.url("/int.cer"), 0xA1))
    assert row.pem_chain is not None
    assert len(x509.load_pem_x509_certificates(row.pem_chain.encode())) == 1
    assert ca.requests == []


def test_an_allowed_fetch_completes_the_chain(boot: Bootstrapped, pki: PKI, ca: CA, allowed: None) -> None:
    register_root(pki)
    outcome, row = import_one(leaf_pointing_to(pki, ca.url("/int.cer"), 0xA2))
    assert outcome.reason == "1 intermediate(s) fetched from the CA Issuers URL"
    assert row.pem_chain is not None
    chain = x509.load_pem_x509_certificates(row.pem_chain.encode())
    assert chain[1] == pki.intermediate.cert
    assert row.trust_anchor == "Corp Root"
    assert ca.requests == ["/int.cer"]


def test_a_url_that_fails_leaves_a_note(boot: Bootstrapped, pki: PKI, ca: CA, allowed: None) -> None:
    slow = ca.url("/slow.cer")
    outcome, _row = import_one(leaf_pointing_to(pki, slow, 0xA3))
    assert outcome.imported
    assert outcome.reason == f"CA Issuers URL {slow}: did not answer within 1 s"
    huge = ca.url("/huge.cer")
    outcome, _ = import_one(leaf_pointing_to(pki, huge, 0xA4))
    assert outcome.reason == f"CA Issuers URL {huge}: answered more than 64 KiB, which no CA certificate needs"
    missing = ca.url("/missing.cer").replace(str(ca.port), str(free_port()))
    outcome, _ = import_one(leaf_pointing_to(pki, missing, 0xA5))
    assert outcome.reason == f"CA Issuers URL {missing}: cannot be fetched (ConnectError)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
