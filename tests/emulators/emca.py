"""emCA Certificate Management emulator, JWT dialect (emCA 4.3.1 and 5.x; reference/ca-apis.md §3.2).

`version="4.3.1"` expects `Authorization: Bearer <JWT>`, `version="5"` expects `X-Emca-Api-Key: <JWT>`.
Every call needs an `X-Nonce`. `createCertificates` checks the subscriber, the issuing CA and the PKCS#7
signature over the CSR (with `openssl cms -verify`, signer must be the registered client certificate).
A repeated `applicationId` returns the request already made for it. `manual_authorization=True` leaves
requests pending until `authorize(id)`; `reject(id, reason)` rejects one.
"""

from __future__ import annotations

import base64
import itertools
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID

from tests.emulators.pki import IssuingCA, TlsIdentity
from tests.emulators.server import Emulator, Request, Response

PREFIX = "/emCAServices/rest/"
JWT_SECRET = "emca-emulator-signing-secret-0123456789"


def make_client_identity(password: str | None) -> tuple[bytes, x509.Certificate]:
    """The PKCS#12 file eMudhra would ship to an API client: a self-signed client certificate and key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certfleet emCA API client")])
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    encryption = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    return pkcs12.serialize_key_and_certificates(b"emca-client", key, cert, None, encryption), cert


@dataclass
class EmCARequest:
    id: str
    application_id: str
    csr_pem: str
    days: int
    status: str = "pending"  # issued, pending, rejected
    certificate: x509.Certificate | None = None
    reason: str = ""


@dataclass
class EmCAEmulator(Emulator):
    tls: TlsIdentity
    client_certificate: x509.Certificate
    version: str = "5"
    username: str = "certfleet-app"
    password: str = "emCA-pass-123"
    subscriber_id: str = "SUB-4711"
    issuing_ca: str = "emCA Issuing CA G1"
    manual_authorization: bool = False
    ca: IssuingCA = field(default_factory=lambda: IssuingCA("emCA Emulator"))
    requests: dict[str, EmCARequest] = field(default_factory=dict)
    tokens_issued: int = 0
    nonces: set[str] = field(default_factory=set)

    name = "emca"

    def __post_init__(self) -> None:
        super().__init__(self.tls)
        self._ids = itertools.count(90001)
        self._lock = threading.Lock()
        self.not_before = 0.0  # tokens issued before this moment are refused (simulates expiry)

    @property
    def base_url(self) -> str:
        return f"{self.base}/emCAServices/rest"

    def fault_response(self, fault: str, request: Request) -> Response:
        status = int(fault)
        if status == 401:
            return Response.json({"status": "failure", "errorMessage": "Invalid or expired token"}, 401)
        if status == 429:
            return Response.json({"status": "failure", "errorMessage": "Too many requests"}, 429, {"Retry-After": "0"})
        return Response.json({"status": "failure", "errorMessage": "Internal server error"}, status)

    def expire_tokens(self) -> None:
        self.not_before = time.time() + 1

    # -- authentication ----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.method != "POST" or not request.path.startswith(PREFIX):
            return Response.json({"status": "failure", "errorMessage": "Not found"}, 404)
        nonce = request.headers.get("X-Nonce")
        if not nonce:
            return Response.json({"status": "failure", "errorMessage": "X-Nonce header is mandatory"}, 400)
        with self._lock:
            if nonce in self.nonces:
                return Response.json({"status": "failure", "errorMessage": "Replayed nonce"}, 400)
            self.nonces.add(nonce)
        endpoint = request.path[len(PREFIX) :]
        body = request.json() or {}
        if endpoint == "auth/token":
            return self._token(body)
        if not self._token_ok(request):
            return Response.json({"status": "failure", "errorMessage": "Invalid or expired token"}, 401)
        handler = getattr(self, f"_ep_{endpoint}", None)
        if handler is None:
            return Response.json({"status": "failure", "errorMessage": f"Unknown API {endpoint}"}, 404)
        return handler(body)

    def _token(self, body: dict[str, Any]) -> Response:
        if (body.get("username"), body.get("password"), body.get("clientId")) != (
            self.username,
            self.password,
            self.subscriber_id,
        ):
            return Response.json({"status": "failure", "errorMessage": "Invalid request details found"}, 401)
        minutes = int(body.get("validityInMins") or 60)
        now = time.time()
        exp = int(now + minutes * 60)
        token = jwt.encode({"sub": self.username, "iat": now, "exp": exp}, JWT_SECRET, algorithm="HS256")
        self.tokens_issued += 1
        return Response.json({"status": "success", "token": token, "exp": exp})

    def _token_ok(self, request: Request) -> bool:
        if self.version == "5":
            token = request.headers.get("X-Emca-Api-Key") or ""
        else:
            header = request.headers.get("Authorization") or ""
            token = header[7:] if header.startswith("Bearer ") else ""
        try:
            claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
        except jwt.PyJWTError:
            return False
        return float(claims["iat"]) >= self.not_before

    # -- certificate management --------------------------------------------------------------------------

    def _ep_getCAs(self, body: dict[str, Any]) -> Response:
        return Response.json({"status": "success", "cas": [{"caName": self.issuing_ca, "status": "Active"}]})

    def _ep_createCertificates(self, body: dict[str, Any]) -> Response:
        if body.get("subscriberId") != self.subscriber_id:
            return Response.json({"status": "failure", "errorMessage": "Invalid subscriber id"})
        if body.get("issuingCA") != self.issuing_ca:
            return Response.json({"status": "failure", "errorMessage": "Invalid issuing CA"})
        csr_pem = str(body.get("csr") or "")
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError:
            return Response.json({"status": "failure", "errorMessage": "Invalid CSR"})
        if not self._signature_ok(str(body.get("signature") or ""), csr.public_bytes(serialization.Encoding.DER)):
            return Response.json({"status": "failure", "errorMessage": "Signature verification failed"})
        application_id = str(body.get("applicationId") or "")
        with self._lock:
            existing = next((r for r in self.requests.values() if r.application_id == application_id), None)
            if existing is None:
                days = int(str(body.get("validity") or "365:0:0:0").split(":")[0])
                existing = EmCARequest(str(next(self._ids)), application_id, csr_pem, days)
                self.requests[existing.id] = existing
                if not self.manual_authorization:
                    self._issue(existing)
        return self._request_reply(existing)

    def _signature_ok(self, signature_b64: str, csr_der: bytes) -> bool:
        try:
            der = base64.b64decode(signature_b64)
            signers = pkcs7.load_der_pkcs7_certificates(der)
        except ValueError:
            return False
        if self.client_certificate not in signers:
            return False
        with tempfile.TemporaryDirectory() as tmp:
            sig, out = Path(tmp) / "sig.der", Path(tmp) / "content"
            sig.write_bytes(der)
            result = subprocess.run(
                [
                    "openssl",
                    "cms",
                    "-verify",
                    "-inform",
                    "DER",
                    "-in",
                    str(sig),
                    "-noverify",
                    "-binary",
                    "-out",
                    str(out),
                ],
                capture_output=True,
                timeout=30,
                check=False,
            )
            return result.returncode == 0 and out.read_bytes() == csr_der

    def _issue(self, req: EmCARequest) -> None:
        req.certificate = self.ca.sign(req.csr_pem, req.days)
        req.status = "issued"

    def authorize(self, request_id: str) -> None:
        self._issue(self.requests[request_id])

    def reject(self, request_id: str, reason: str) -> None:
        req = self.requests[request_id]
        req.status, req.reason = "rejected", reason

    def _request_reply(self, req: EmCARequest) -> Response:
        reply: dict[str, Any] = {"status": "success", "requestId": req.id, "requestStatus": req.status}
        if req.certificate is not None:
            reply["certificate"] = base64.b64encode(req.certificate.public_bytes(serialization.Encoding.DER)).decode()
            reply["serialNumber"] = f"{req.certificate.serial_number:X}"
        elif req.status == "rejected":
            reply["message"] = req.reason
        else:
            reply["message"] = "Request submitted for manual authorization"
        return Response.json(reply)

    def _ep_getCertificate(self, body: dict[str, Any]) -> Response:
        req = self.requests.get(str(body.get("requestId")))
        if req is None:
            return Response.json({"status": "failure", "errorMessage": "Invalid request id"})
        return self._request_reply(req)

    def _ep_getCertificateChain(self, body: dict[str, Any]) -> Response:
        if body.get("issuingCA") != self.issuing_ca:
            return Response.json({"status": "failure", "errorMessage": "Invalid issuing CA"})
        chain = [
            base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
            for c in (self.ca.intermediate, self.ca.root)
        ]
        return Response.json({"status": "success", "chain": chain})

    def _ep_revoke(self, body: dict[str, Any]) -> Response:
        serial = int(str(body.get("serialNumber") or "0"), 16)
        if not self.ca.revoke(serial, str(body.get("revokeMode"))):
            return Response.json({"status": "failure", "errorMessage": "Certificate not found"})
        return Response.json({"status": "success", "result": "Certificate revoked"})

    @property
    def placed(self) -> int:
        return len(self.requests)
