"""eMudhra emCA (private CA), Certificate Management REST API of emCA 4.3.1 and 5.x (the JWT dialect).

Supported versions: **4.3.1 and 5.x**. emCA 4.2.x and older speak a different API (an `emKey` header
from a vendor JAR and AES-encrypted request bodies); certfleet does not implement it and refuses such a
version when the connector is saved.

Dialect (reference/ca-apis.md §3.2; payload details beyond the documented field names are inferred):
- `POST {base}/auth/token` with username (appCode), password, clientId and validityInMins, header
  `X-Nonce`, answers a short-lived JWT and its `exp`. certfleet sends the connector's Subscriber ID as
  the ClientID emCA issued at registration.
- 4.3.1 sends the JWT as `Authorization: Bearer <JWT>`, 5.x as `X-Emca-Api-Key: <JWT>`.
- `createCertificates` for the connector's Issuing CA and Subscriber ID; `applicationId` is certfleet's
  idempotency key; `signature` is the CSR signed (PKCS#7) with the client certificate eMudhra ships —
  the connector's uploaded file (PKCS#12 or PEM with key). With manual authorisation the answer is a
  request id without a certificate: the order is pending and `getCertificate` polls it.
- `getCertificateChain` for the issuing CA's chain, `revoke` by serial number, `getCAs` to test the login.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from certfleet.connectors.base import RFC5280_REASON_CODES, IssueRequest, IssueResult, Profile
from certfleet.connectors.ca.common import csr_names, join_pem, pem_chain_from
from certfleet.connectors.ca.http import CAHttp
from certfleet.connectors.ca.journal import MemoryOrderJournal, OrderJournal
from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.parse import load_material, serial_hex

CA_NAME = "emCA"
SUPPORTED_VERSIONS = "4.3.1 and 5.x"
UNSUPPORTED_HINT = (
    f"certfleet supports emCA {SUPPORTED_VERSIONS} (the JWT API); emCA 4.2.x and older use the emKey/AES API, "
    "which certfleet does not implement"
)
TOKEN_MINUTES = 60
_REFRESH_MARGIN_S = 60.0

Dialect = Literal["4.3.1", "5"]

# emCA's revokeMode takes the RFC 5280 codes, except certificateHold.
_REVOKE_MODE: dict[x509.ReasonFlags, int] = {
    r: code for r, code in RFC5280_REASON_CODES.items() if r is not x509.ReasonFlags.certificate_hold
}


def dialect_for(version: str) -> Dialect:
    """The API dialect an emCA version speaks; unsupported versions are refused with what is supported."""
    text = version.strip().lstrip("vV")
    if re.fullmatch(r"4\.3\.1(\.\d+)?", text):
        return "4.3.1"
    if re.fullmatch(r"5(\.\d+){0,2}", text):
        return "5"
    raise PermanentConnectorError(f"emCA version {version!r} is not supported: {UNSUPPORTED_HINT}")


@dataclass(frozen=True)
class ClientIdentity:
    """The client certificate and key from the uploaded file; signs requests."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    def __repr__(self) -> str:
        return f"ClientIdentity(subject={self.certificate.subject.rfc4514_string()!r})"

    @classmethod
    def load(cls, data: bytes, password: str | None) -> ClientIdentity:
        try:
            material = load_material(data, password.encode() if password else None)
        except CertificateFormatError as exc:
            raise PermanentConnectorError(
                f"the uploaded emCA file is not a usable client certificate: {exc}; upload the PKCS#12 (.p12/.pfx) "
                "file eMudhra issued for API access, or a PEM file with its certificate and private key"
            ) from exc
        key = material.private_key
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise PermanentConnectorError(
                "the uploaded emCA file holds no private key; upload the PKCS#12 file with the client key"
            )
        return cls(material.leaf, key)

    def sign(self, data: bytes) -> str:
        """PKCS#7 SignedData (DER, base64) over `data`, with the signer certificate embedded."""
        signed = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(data)
            .add_signer(self.certificate, self.key, hashes.SHA256())
            .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
        )
        return base64.b64encode(signed).decode()


@dataclass(frozen=True)
class EmCASettings:
    version: str
    username: str
    issuing_ca: str
    subscriber_id: str
    validity_days: int = 365


class EmCACA:
    kind: ClassVar[str] = "emca"

    def __init__(
        self,
        http: CAHttp,
        settings: EmCASettings,
        password: str,
        identity: ClientIdentity,
        journal: OrderJournal | None = None,
    ) -> None:
        self.http = http
        self.settings = settings
        self.dialect = dialect_for(settings.version)
        self._password = password
        self.identity = identity
        self.journal: OrderJournal = journal or MemoryOrderJournal()
        self._token: tuple[str, float] | None = None
        self._token_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EmCACA(version={self.settings.version!r}, issuing_ca={self.settings.issuing_ca!r})"

    # -- the protocol ------------------------------------------------------------------------------------

    def issue(self, request: IssueRequest) -> IssueResult:
        prior = self.journal.prior(request.idempotency_key)
        if prior.ca_order_id is not None:
            return self.status(prior.ca_order_id)
        csr_names(request.csr_pem)
        csr = x509.load_pem_x509_csr(request.csr_pem.encode())
        days = request.validity_days or self.settings.validity_days
        reply = self._call(
            "createCertificates",
            {
                "subscriberId": self.settings.subscriber_id,
                "issuingCA": self.settings.issuing_ca,
                "applicationId": request.idempotency_key,
                "certificateType": "SMIME" if request.profile is Profile.SMIME else "SSL",
                "csr": request.csr_pem,
                "validity": f"{days}:0:0:0",
                "signature": self.identity.sign(csr.public_bytes(serialization.Encoding.DER)),
            },
        )
        request_id = str(reply.get("requestId") or "")
        if not request_id:
            raise PermanentConnectorError("emCA accepted the request but returned no request id")
        self.journal.placed(request.idempotency_key, request_id)
        return self._result(request_id, reply)

    def status(self, ca_order_id: str) -> IssueResult:
        return self._result(ca_order_id, self._call("getCertificate", {"requestId": ca_order_id}))

    def revoke(self, serial_number: int, reason: x509.ReasonFlags) -> None:
        self._call(
            "revoke",
            {
                "issuingCA": self.settings.issuing_ca,
                "serialNumber": serial_hex(serial_number),
                "revokeMode": _REVOKE_MODE.get(reason, 0),
                "remarks": f"revoked by certfleet ({reason.value})",
            },
        )

    def check_credentials(self) -> str:
        """Log in and list the CAs the account may use: proves the login and the Issuing CA name."""
        reply = self._call("getCAs", {"subscriberId": self.settings.subscriber_id})
        names = [str(c.get("caName") if isinstance(c, dict) else c) for c in reply.get("cas", [])]
        if self.settings.issuing_ca not in names:
            raise PermanentConnectorError(
                f"emCA has no issuing CA {self.settings.issuing_ca!r} for this account; it offers: "
                + (", ".join(names) or "none")
            )
        return f"authenticated to emCA {self.settings.version}; issuing CA {self.settings.issuing_ca!r} found"

    # -- plumbing ----------------------------------------------------------------------------------------

    def _result(self, request_id: str, reply: dict[str, Any]) -> IssueResult:
        state = str(reply.get("requestStatus") or "").lower()
        if state in ("rejected", "denied"):
            reason = reply.get("message") or reply.get("result") or "no reason given"
            raise PermanentConnectorError(f"emCA rejected request {request_id}: {reason}")
        certificate = reply.get("certificate")
        if not certificate:
            return IssueResult(ca_order_id=request_id, validation_status="Awaiting authorisation")
        leaf = pem_chain_from(_certificate_bytes(certificate), ca=CA_NAME)
        chain = self._call("getCertificateChain", {"issuingCA": self.settings.issuing_ca}).get("chain") or []
        parts = [pem_chain_from(_certificate_bytes(c), ca=CA_NAME) for c in chain]
        return IssueResult(ca_order_id=request_id, pem_chain=join_pem(leaf, *parts), validation_status="Authorised")

    def _auth_headers(self) -> dict[str, str]:
        token = self._current_token()
        if self.dialect == "5":
            return {"X-Emca-Api-Key": token}
        return {"Authorization": f"Bearer {token}"}

    def _current_token(self, *, renew: bool = False) -> str:
        with self._token_lock:
            if not renew and self._token is not None and self._token[1] - _REFRESH_MARGIN_S > time.time():
                return self._token[0]
            reply = self._post(
                "auth/token",
                {
                    "username": self.settings.username,
                    "password": self._password,
                    "clientId": self.settings.subscriber_id,
                    "validityInMins": TOKEN_MINUTES,
                },
                headers={},
            )
            token = str(reply.get("token") or reply.get("accessToken") or "")
            if not token:
                raise PermanentConnectorError("emCA answered the login without a token")
            self._token = (token, _expiry(token, reply.get("exp")))
            return token

    def _call(self, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._post(endpoint, payload, headers=self._auth_headers())
        except _TokenRejected:
            # The JWT expired or was revoked on the server side: log in again once.
            self._current_token(renew=True)
            try:
                return self._post(endpoint, payload, headers=self._auth_headers())
            except _TokenRejected as exc:
                raise PermanentConnectorError(f"emCA rejected the login token for {endpoint}: {exc}") from exc

    def _post(self, endpoint: str, payload: dict[str, Any], *, headers: dict[str, str]) -> dict[str, Any]:
        try:
            response = self.http.request(
                "POST", endpoint, json=payload, headers={"X-Nonce": uuid.uuid4().hex, **headers}
            )
        except PermanentConnectorError as exc:
            if endpoint != "auth/token" and "HTTP 401" in str(exc):
                raise _TokenRejected(str(exc)) from exc
            raise
        reply = response.json()
        if not isinstance(reply, dict):
            raise TransientConnectorError(f"emCA {endpoint} answered something other than a JSON object")
        if str(reply.get("status", "success")).lower() != "success":
            message = reply.get("errorMessage") or reply.get("message") or reply.get("result") or "no message"
            code = reply.get("errorCode")
            text = f"emCA {endpoint} failed: " + (f"{code} " if code else "") + str(message)
            if "internal server error" in str(message).lower():
                raise TransientConnectorError(text)
            raise PermanentConnectorError(text)
        return dict(reply)


class _TokenRejected(Exception):
    pass


def error_message(response: httpx.Response) -> str | None:
    body = response.json()
    if isinstance(body, dict):
        return str(body.get("errorMessage") or body.get("message") or "") or None
    return None


def _certificate_bytes(value: Any) -> bytes:
    """emCA returns certificates as base64 DER or as PEM text."""
    text = str(value).strip()
    if text.startswith("-----BEGIN"):
        return text.encode()
    try:
        return base64.b64decode(text, validate=False)
    except ValueError as exc:
        raise PermanentConnectorError(f"emCA sent a certificate that is neither PEM nor base64: {exc}") from exc


def _expiry(token: str, exp: Any) -> float:
    try:
        return float(exp)
    except (TypeError, ValueError):
        pass
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        return float(claims["exp"])
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return time.time() + TOKEN_MINUTES * 60 / 2
