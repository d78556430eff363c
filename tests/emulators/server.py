"""A small threaded HTTPS server the CA emulators build on, with the failure modes real CAs show.

Faults are applied before an emulator sees a request:
- `faults.queue`: one-shot faults for the next requests ("401", "429", "500", "503", "timeout", and
  "lost": the request is carried out but the answer is replaced by a 503, as when a reply is lost),
- `faults.every_nth_429`: every n-th request is refused with 429 (a CA shedding load),
- `faults.window`: a rolling window (max requests, seconds) like DigiCert's 100 requests / 5 s; going over
  it answers 429 and counts a burst violation.
HTTP/1.1 with keep-alive, so connection-bound authentication (NTLM) works.
"""

from __future__ import annotations

import collections
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.emulators.pki import TlsIdentity


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any  # http.client.HTTPMessage
    body: bytes
    connection: dict[str, Any]  # state that lives as long as the TCP connection (NTLM contexts)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/html") -> Response:
        return cls(status, text.encode(), {"Content-Type": content_type})


@dataclass
class Faults:
    queue: list[str] = field(default_factory=list)
    every_nth_429: int | None = None
    window: tuple[int, float] | None = None
    delay_s: float = 3.0
    applies_to: Callable[[Request], bool] = lambda r: True
    requests: int = 0
    refused_429: int = 0
    burst_violations: int = 0
    _recent: collections.deque[float] = field(default_factory=collections.deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def pick(self, request: Request) -> str | None:
        with self._lock:
            if not self.applies_to(request):
                return None
            self.requests += 1
            if self.window is not None:
                limit, seconds = self.window
                now = time.monotonic()
                while self._recent and now - self._recent[0] > seconds:
                    self._recent.popleft()
                if len(self._recent) >= limit:
                    self.burst_violations += 1
                    self.refused_429 += 1
                    return "429"
                self._recent.append(now)
            if self.queue:
                fault = self.queue.pop(0)
                if fault == "429":
                    self.refused_429 += 1
                return fault
            if self.every_nth_429 and self.requests % self.every_nth_429 == 0:
                self.refused_429 += 1
                return "429"
            return None


class Emulator:
    """Subclasses implement `handle`; `fault_response` says how this CA words a fault."""

    name = "emulator"

    def __init__(self, tls: TlsIdentity) -> None:
        self.tls = tls
        self.faults = Faults()
        self.stopping = threading.Event()
        self.log: list[tuple[str, str, int]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- to implement ------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def fault_response(self, fault: str, request: Request) -> Response:
        status = int(fault)
        headers = {"Retry-After": "0"} if status == 429 else {}
        return Response.json({"error": f"injected {status}"}, status, headers)

    # -- plumbing ----------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> Emulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection_state: dict[str, Any] = {}

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _dispatch(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    self.command, parts.path, parse_qs(parts.query), self.headers, body, self.connection_state
                )
                fault = emulator.faults.pick(request)
                if fault == "timeout":
                    emulator.stopping.wait(emulator.faults.delay_s)
                    self.close_connection = True
                    return
                try:
                    if fault == "lost":  # the CA does the work, but its answer never reaches the client
                        emulator.handle(request)
                        response = emulator.fault_response("503", request)
                    else:
                        response = emulator.fault_response(fault, request) if fault else emulator.handle(request)
                except Exception as exc:  # an emulator bug must show as a 500, not hang the client
                    response = Response.text(f"emulator error: {exc!r}", 500, "text/plain")
                emulator.log.append((self.command, parts.path, response.status))
                self.send_response(response.status)
                for key, value in response.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.cert_path, self.tls.key_path)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=f"{self.name}-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
