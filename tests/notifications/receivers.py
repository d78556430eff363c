"""Real receivers for the notification tests: an aiosmtpd SMTP server (STARTTLS + AUTH, optionally refusing
mail) and a threaded HTTP server recording webhook POSTs (answering with a chosen status)."""

from __future__ import annotations

import email
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from certfleet.demo.listener import free_port
from tests.emulators.pki import TlsIdentity

SMTP_USER = "alerts@example.org"
SMTP_PASSWORD = "s3cret pass"


@dataclass
class MailHandler:
    """Keeps every accepted message; answers DATA with `refuse` (e.g. '451 4.3.0 try later') while it is set, for
    every message or, with `refuse_subject`, only for those whose Subject starts with it."""

    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    refuse: str | None = None
    refuse_subject: str | None = None
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        with self.lock:
            raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
            parsed = email.message_from_bytes(raw, policy=default)
            assert isinstance(parsed, EmailMessage)
            if self.refuse and (self.refuse_subject is None or str(parsed["Subject"]).startswith(self.refuse_subject)):
                self.refused += 1
                return self.refuse
            self.messages.append((envelope, parsed))
        return "250 2.0.0 queued as 4711"


def _authenticator(server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword) and data.login == SMTP_USER.encode() and data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    port: int
    handler: MailHandler
    ca_file: str


@pytest.fixture
def smtp_server(emulator_tls: TlsIdentity) -> Iterator[SmtpServer]:
    """STARTTLS required, AUTH required (only over TLS), the emulators' TLS identity for 127.0.0.1."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(emulator_tls.cert_path, emulator_tls.key_path)
    handler = MailHandler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        require_starttls=True,
        auth_required=True,
        authenticator=_authenticator,
    )
    controller.start()
    try:
        yield SmtpServer(port, handler, str(emulator_tls.ca_path))
    finally:
        controller.stop()


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookServer:
    port: int
    hits: list[Hit] = field(default_factory=list)
    status: int = 200
    answer: bytes = b"ok"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    state = WebhookServer(port=free_port())
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                state.hits.append(Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(state.answer)))
            self.end_headers()
            self.wfile.write(state.answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", state.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
