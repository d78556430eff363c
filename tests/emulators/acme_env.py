"""Real ACME peers for the tests: Pebble, pebble-challtestsrv (mock DNS) and BIND's named (RFC 2136).

All start on 127.0.0.1 at free ports with their own TLS certificates; a missing binary fails the test
with the install hint (scripts/install-system-packages.sh installs `pebble` and `bind9`).
`AcmeFaultProxy` sits in front of Pebble to inject what Pebble never does: 429, 503 and timeouts.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from certfleet.demo.listener import free_port
from tests.emulators.pki import TlsIdentity
from tests.emulators.server import Emulator, Request, Response

INSTALL_HINT = "install it with: bash scripts/install-system-packages.sh"


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        pytest.fail(f"{name} (Debian package {package}) is needed by the ACME tests; {INSTALL_HINT}")
    return path


def _wait(check: Any, what: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited at start: {log.read_text(errors='replace')[-2000:]}")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.05)
    process.terminate()
    pytest.fail(f"{what} did not come up within {timeout:g} s: {log.read_text(errors='replace')[-2000:]}")


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}
        )
    return Process(process, log)


@dataclass
class ChallTestSrv:
    """Mock DNS answering every A query with 127.0.0.1 (and no AAAA), so any name reaches our responders."""

    workdir: Path
    dns_port: int = 0
    management_port: int = 0
    proc: Process | None = None

    def start(self) -> ChallTestSrv:
        binary = _binary("pebble-challtestsrv", "pebble")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dns_port, self.management_port = free_port(), free_port()
        self.proc = _spawn(
            [
                binary,
                "-management",
                f"127.0.0.1:{self.management_port}",
                "-dns01",
                f"127.0.0.1:{self.dns_port}",
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ],
            self.workdir / "challtestsrv.log",
        )
        management = f"http://127.0.0.1:{self.management_port}"
        _wait(
            lambda: httpx.post(f"{management}/clear-txt", json={"host": "x.test."}, trust_env=False).status_code == 200,
            "pebble-challtestsrv",
            self.proc.process,
            self.proc.log,
        )
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()


@dataclass
class Named:
    """BIND 9 as the authoritative server for test zones that accept TSIG-signed RFC 2136 updates."""

    workdir: Path
    zones: tuple[str, ...] = ("example.test",)
    key_name: str = "certfleet-acme."
    secret: str = field(default_factory=lambda: base64.b64encode(secrets.token_bytes(32)).decode())
    port: int = 0
    proc: Process | None = None

    def start(self) -> Named:
        binary = _binary("named", "bind9")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        zone_blocks = []
        for zone in self.zones:
            (self.workdir / f"{zone}.zone").write_text(
                f"$TTL 60\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 600 60\n"
                f"@ IN NS ns.{zone}.\nns IN A 127.0.0.1\n@ IN A 127.0.0.1\n* IN A 127.0.0.1\n"
            )
            zone_blocks.append(
                f'zone "{zone}" {{ type primary; file "{self.workdir}/{zone}.zone"; '
                f"update-policy {{ grant {self.key_name} zonesub TXT; }}; }};"
            )
        conf = self.workdir / "named.conf"
        conf.write_text(
            f"""options {{
  directory "{self.workdir}";
  pid-file "{self.workdir}/named.pid";
  session-keyfile "{self.workdir}/session.key";
  managed-keys-directory "{self.workdir}";
  listen-on port {self.port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  allow-query {{ any; }};
}};
controls {{ }};
key "{self.key_name}" {{ algorithm hmac-sha256; secret "{self.secret}"; }};
{chr(10).join(zone_blocks)}
"""
        )
        self.proc = _spawn([binary, "-g", "-4", "-c", str(conf)], self.workdir / "named.log")
        log = self.proc.log
        _wait(lambda: "running" in log.read_text(errors="replace"), "named", self.proc.process, log)
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()


@dataclass
class Pebble:
    """A Pebble ACME server with its own config: DNS server, http-01 port, EAB keys, blocked names."""

    workdir: Path
    tls: TlsIdentity
    dns_server: str
    http_port: int
    eab_keys: dict[str, str] | None = None
    blocklist: tuple[str, ...] = ()
    port: int = 0
    management_port: int = 0
    proc: Process | None = None

    def start(self) -> Pebble:
        binary = _binary("pebble", "pebble")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.management_port = free_port(), free_port()
        config: dict[str, Any] = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self.tls.cert_path),
            "privateKey": str(self.tls.key_path),
            "httpPort": self.http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(self.eab_keys),
            "externalAccountMACKeys": self.eab_keys or {},
            "domainBlocklist": list(self.blocklist),
        }
        path = self.workdir / "pebble-config.json"
        path.write_text(json.dumps({"pebble": config}, indent=2))
        self.proc = _spawn(
            [binary, "-config", str(path), "-dnsserver", self.dns_server],
            self.workdir / "pebble.log",
            env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"},
        )
        _wait(lambda: self._get("/roots/0").status_code == 200, "pebble", self.proc.process, self.proc.log)
        return self

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _get(self, path: str) -> httpx.Response:
        return httpx.get(
            f"https://127.0.0.1:{self.management_port}{path}",
            verify=ssl.create_default_context(cafile=str(self.tls.ca_path)),
            trust_env=False,
            timeout=5,
        )

    def root_pem(self) -> str:
        """The root of the hierarchy Pebble issues from (regenerated at every start)."""
        return self._get("/roots/0").text

    def intermediate_pem(self) -> str:
        return self._get("/intermediates/0").text

    def cert_status(self, serial: int) -> dict[str, Any]:
        return dict(self._get(f"/cert-status-by-serial/{serial:x}").json())

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()


class AcmeFaultProxy(Emulator):
    """HTTPS in front of Pebble; forwards everything (Host kept, so Pebble's URLs point here) unless a fault fires."""

    name = "acme-proxy"

    def __init__(self, tls: TlsIdentity, pebble: Pebble) -> None:
        super().__init__(tls)
        self.pebble = pebble
        self.upstream = httpx.Client(
            verify=ssl.create_default_context(cafile=str(tls.ca_path)), trust_env=False, timeout=30
        )
        self.hold_processing = False
        self.orders_placed = 0
        self.lose_order_answers = 0  # Pebble creates the next orders; their answers are lost (a 502)
        self.reset_ari()

    def reset_ari(self) -> None:
        """The ACME Renewal Information responder (RFC 9773) the installed Pebble 2.4 lacks: off until a test sets
        `ari_answers` ({CertID: renewalInfo JSON}; an unknown CertID gets 404). When on, the directory names
        `<proxy>/renewal-info`; every other endpoint is still Pebble's."""
        self.ari_answers: dict[str, dict[str, Any]] | None = None
        self.ari_retry_after: str | None = None
        self.ari_status = 200  # what a known CertID is answered with (a test sets 500 for a failing CA)
        self.ari_asked: list[str] = []
        self.order_payloads: list[dict[str, Any]] = []  # the newOrder JWS payloads, as sent

    @property
    def directory_url(self) -> str:
        return f"{self.base}/dir"

    def fault_response(self, fault: str, request: Request) -> Response:
        status = int(fault)
        if status == 429:
            return Response(
                429,
                json.dumps(
                    {
                        "type": "urn:ietf:params:acme:error:rateLimited",
                        "detail": "too many new orders recently",
                        "status": 429,
                    }
                ).encode(),
                {"Content-Type": "application/problem+json", "Retry-After": "1", "Replay-Nonce": self._nonce()},
            )
        return Response.text("<html><body>503 Service Temporarily Unavailable</body></html>", status)

    def _nonce(self) -> str:
        return self.upstream.head(f"https://127.0.0.1:{self.pebble.port}/nonce-plz").headers.get("Replay-Nonce", "")

    def _renewal_info(self, cert_id: str) -> Response:
        self.ari_asked.append(cert_id)
        answers = self.ari_answers or {}
        if cert_id not in answers:
            problem = {"type": "urn:ietf:params:acme:error:malformed", "detail": "unknown certificate", "status": 404}
            return Response(404, json.dumps(problem).encode(), {"Content-Type": "application/problem+json"})
        if self.ari_status != 200:
            return Response.text("renewal information unavailable", self.ari_status)
        headers = {"Content-Type": "application/json"}
        if self.ari_retry_after is not None:
            headers["Retry-After"] = self.ari_retry_after
        return Response(200, json.dumps(answers[cert_id]).encode(), headers)

    def handle(self, request: Request) -> Response:
        if self.ari_answers is not None and request.path.startswith("/renewal-info/"):
            return self._renewal_info(request.path.removeprefix("/renewal-info/"))
        if request.path.startswith("/order-plz") and request.body:
            payload = json.loads(request.body).get("payload", "")
            self.order_payloads.append(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "connection")}
        upstream = self.upstream.request(
            request.method,
            f"https://127.0.0.1:{self.pebble.port}{request.path}",
            content=request.body,
            headers=headers,
            params={k: v[0] for k, v in request.query.items()},
        )
        keep = {
            k: v
            for k, v in upstream.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")
        }
        body = upstream.content
        if self.ari_answers is not None and request.path == "/dir" and upstream.status_code == 200:
            directory = json.loads(body)
            directory["renewalInfo"] = f"{self.base}/renewal-info"
            body = json.dumps(directory).encode()
        if request.path.startswith("/order-plz") and upstream.status_code == 201:
            self.orders_placed += 1
            if self.lose_order_answers > 0:
                self.lose_order_answers -= 1
                return Response.text("<html><body>502 Bad Gateway</body></html>", 502)
        if self.hold_processing and request.path.startswith(("/my-order/", "/finalize-order/")):
            # The CA is "still working": every order it shows is processing until released.
            order = json.loads(body)
            if order.get("status") in ("ready", "valid", "processing"):
                order["status"] = "processing"
                order.pop("certificate", None)
                body = json.dumps(order).encode()
        return Response(upstream.status_code, body, keep)

    def stop(self) -> None:
        super().stop()
        self.upstream.close()
