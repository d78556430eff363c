"""emSign / CERTInext REST emulator (reference/ca-apis.md §3.1).

Every call is checked like the real service: account number, `authKey = sha256hex(accessKey + ts + txn)`,
and a `txn` never seen before. Failures come back as HTTP 200 with `meta.status` "0"; the burst limit
answers "Inactive Account User". Orders: mode "issue" (fulfilled at once), "pending" (DCV pending until
`verify(order)` or `auto_verify_after` TrackOrder calls), "pending_approval" (orderStatusId 8 until the same),
"reject". SSL products go through GenerateOrderSSL, S/MIME products (894) through GenerateOrderSMIME, each refusing
the other's product codes; an S/MIME order's CSR must hold its `emailAddress` as rfc822Name, and the certificate
is an S/MIME one (emailProtection). GetOrderReport lists the orders newest
first, with the remarks they were placed with. `lose_answers` > 0: the next order calls are taken, and their
answers lost (a 502 from the gateway), as when the connection drops after emSign accepted the order.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.emulators.pki import IssuingCA, TlsIdentity
from tests.emulators.server import Emulator, Request, Response

PREFIX = "/emSignHub-API/"
SMIME_PRODUCTS = frozenset({"894"})


@dataclass
class EmSignOrder:
    number: str
    details: dict[str, Any]
    status: int = 3  # in progress
    dcv: int = 0
    certificate: x509.Certificate | None = None
    tracks: int = 0
    remarks: str = ""
    smime: bool = False


@dataclass
class EmSignEmulator(Emulator):
    tls: TlsIdentity
    account_number: str = "1000012345"
    access_key: str = "emsign-access-key-abcdef"
    mode: str = "issue"
    auto_verify_after: int | None = None
    reject_reason: str = "Domain ownership could not be established"
    ca: IssuingCA = field(default_factory=lambda: IssuingCA("emSign Emulator"))
    orders: dict[str, EmSignOrder] = field(default_factory=dict)
    seen_txns: set[str] = field(default_factory=set)
    auth_failures: int = 0
    lose_answers: int = 0
    hide_from_report: bool = False  # the order report lags behind new orders

    name = "emsign"

    def __post_init__(self) -> None:
        super().__init__(self.tls)
        self._numbers = itertools.count(7000101)
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"{self.base}/emSignHub-API/"

    def fault_response(self, fault: str, request: Request) -> Response:
        if fault == "429":  # CERTInext's burst limit: a 200 with an error, not a 429
            return _fail("EMS-1023", "Inactive Account User")
        if fault == "401":
            return _fail("EMS-1001", "Authentication failed")
        return Response.text("<html><body>502 Bad Gateway</body></html>", int(fault))

    def handle(self, request: Request) -> Response:
        if request.method != "POST" or not request.path.startswith(PREFIX):
            return Response.text("Not Found", 404)
        body = request.json() or {}
        meta = body.get("meta") or {}
        problem = self._check_meta(meta)
        if problem:
            self.auth_failures += 1
            return _fail("EMS-1001", problem)
        endpoint = request.path[len(PREFIX) :]
        handler = getattr(self, f"_ep_{endpoint}", None)
        if handler is None:
            return _fail("EMS-1404", f"Unknown API {endpoint}")
        return handler(body, meta)

    def _check_meta(self, meta: dict[str, Any]) -> str | None:
        ts, txn = str(meta.get("ts", "")), str(meta.get("txn", ""))
        if meta.get("accountNumber") != self.account_number:
            return "Authentication failed: unknown account number"
        expected = hashlib.sha256((self.access_key + ts + txn).encode()).hexdigest()
        if meta.get("authKey") != expected:
            return "Authentication failed: invalid authKey"
        with self._lock:
            if txn in self.seen_txns:
                return f"Duplicate transaction id {txn}"
            self.seen_txns.add(txn)
        return None

    # -- endpoints ---------------------------------------------------------------------------------------

    def _ep_ValidateCredentials(self, body: dict[str, Any], meta: dict[str, Any]) -> Response:
        return _ok(meta, {"accountDetails": {"accountNumber": self.account_number, "status": "Active"}})

    def _ep_GenerateOrderSSL(self, body: dict[str, Any], meta: dict[str, Any]) -> Response:
        details = body.get("orderDetails") or {}
        info = details.get("certificateInformation") or {}
        if str(details.get("productCode")) in SMIME_PRODUCTS:
            return _fail("EMS-1103", f"Product {details.get('productCode')} is not an SSL product")
        if not details.get("csr") or not info.get("domainName"):
            return _fail("EMS-1101", "csr and certificateInformation.domainName are mandatory")
        try:
            x509.load_pem_x509_csr(details["csr"].encode())
        except ValueError:
            return _fail("EMS-1102", "Invalid CSR")
        return self._place(details, meta, smime=False)

    def _ep_GenerateOrderSMIME(self, body: dict[str, Any], meta: dict[str, Any]) -> Response:
        details = body.get("orderDetails") or {}
        info = details.get("certificateInformation") or {}
        if str(details.get("productCode")) not in SMIME_PRODUCTS:
            return _fail("EMS-1103", f"Product {details.get('productCode')} is not an S/MIME product")
        mailbox = info.get("emailAddress")
        if not details.get("csr") or not mailbox:
            return _fail("EMS-1101", "csr and certificateInformation.emailAddress are mandatory")
        try:
            csr = x509.load_pem_x509_csr(details["csr"].encode())
            in_csr = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, x509.ExtensionNotFound):
            return _fail("EMS-1102", "Invalid CSR: an S/MIME CSR names its mailbox as a subject alternative name")
        if mailbox not in in_csr.get_values_for_type(x509.RFC822Name):
            return _fail("EMS-1104", f"The CSR does not contain the email address {mailbox}")
        return self._place(details, meta, smime=True)

    def _place(self, details: dict[str, Any], meta: dict[str, Any], *, smime: bool) -> Response:
        with self._lock:
            order = EmSignOrder(str(next(self._numbers)), details, smime=smime)
            self.orders[order.number] = order
        if self.mode == "reject":
            order.status, order.remarks = 4, self.reject_reason
        elif self.mode == "issue":
            self._fulfil(order)
        elif self.mode == "pending_approval":
            order.status = 8
        if self.lose_answers > 0:
            self.lose_answers -= 1
            return Response.text("<html><body>502 Bad Gateway</body></html>", 502)
        return _ok(
            meta,
            {
                "orderDetails": {
                    "orderNumber": order.number,
                    "requestNumber": f"R{order.number}",
                    "trackingURL": f"https://emsign.test/track/{order.number}",
                }
            },
        )

    def _ep_GetOrderReport(self, body: dict[str, Any], meta: dict[str, Any]) -> Response:
        report = body.get("reportDetails") or {}
        try:
            page, size = int(report.get("pageNumber", 1)), int(report.get("pageSize", 50))
        except (TypeError, ValueError):
            return _fail("EMS-1501", "pageNumber and pageSize must be numbers")
        if page < 1 or not 1 <= size <= 100:
            return _fail("EMS-1502", "pageNumber must be 1 or more and pageSize 1 to 100")
        newest = (
            [] if self.hide_from_report else sorted(self.orders.values(), key=lambda o: int(o.number), reverse=True)
        )
        rows = [
            {
                "orderNumber": o.number,
                "requestNumber": f"R{o.number}",
                "productCode": o.details.get("productCode"),
                "orderStatusId": str(o.status),
                "remarks": (o.details.get("additionalInformation") or {}).get("remarks", ""),
            }
            for o in newest[(page - 1) * size : page * size]
        ]
        return _ok(meta, {"orderDetails": rows, "totalRecords": str(len(newest))})

    def _fulfil(self, order: EmSignOrder) -> None:
        order.certificate = self.ca.sign(order.details["csr"], 365, email=order.smime)
        order.status, order.dcv = 6, 1

    def verify(self, order_number: str) -> None:
        self._fulfil(self.orders[order_number])

    def _ep_TrackOrder(self, body: dict[str, Any], meta: dict[str, Any]) -> Response:
        order = self.orders.get(str(body.get("orderNumber")))
        if order is None:
            return _fail("EMS-1201", "Order not found")
        order.tracks += 1
        if order.status in (3, 8) and self.auto_verify_after is not None and order.tracks > self.auto_verify_after:
            self._fulfil(order)
        info = order.details.get("certificateInformation") or {}
        domains = [] if order.smime else [info.get("domainName"), *info.get("additionalDomains", [])]
        cert_status = (
            22 if order.status == 6 and order.certificate and self._revoked(order) else (20 if order.status == 6 else 1)
        )
        return _ok(
            meta,
            {
                "orderDetails": {
                    "orderNumber": order.number,
                    "orderStatusId": str(order.status),
                    "certificateStatusId": str(cert_status),
                    "remarks": order.remarks,
                    "domainVerification": {d: {"dcvMethod": "2", "dcvStatus": str(order.dcv)} for d in domains if d},
                }
            },
        )

    def _revoked(self, order: EmSignOrder) -> bool:
        return order.certificate is not None and order.certificate.serial_number in self.ca.revoked

    def _ep_GetCertificate(self, body: dict[str, Any], meta: dict[str, Any]) -> Response:
        order = self.orders.get(str(body.get("orderNumber")))
        if order is None or order.certificate is None:
            return _fail("EMS-1301", "Certificate not yet issued for this order")
        pem = order.certificate.public_bytes(serialization.Encoding.PEM).decode()
        inter, root = self.ca.chain_pems()
        return _ok(
            meta,
            {
                "certificateDetails": {
                    "endEntityCertificate": pem,
                    "caCertificate": inter,
                    "rootCertificate": root,
                    "ceritficateSerialNumber": f"{order.certificate.serial_number:x}",
                }
            },
        )

    def _ep_RevokeOrder(self, body: dict[str, Any], meta: dict[str, Any]) -> Response:
        details = body.get("revocationDetails") or {}
        order = self.orders.get(str(details.get("orderNumber")))
        if order is None or order.certificate is None:
            return _fail("EMS-1401", "Order not found or not issued")
        if str(details.get("revokeReasonId")) not in {"1", "3", "4", "5", "9"}:
            return _fail("EMS-1402", "Invalid revokeReasonId")
        self.ca.revoke(order.certificate.serial_number, str(details.get("revokeReasonId")))
        return _ok(meta, {"revocationDetails": {"orderNumber": order.number, "status": "Revoked"}})

    @property
    def placed(self) -> int:
        return len(self.orders)


def _ok(meta: dict[str, Any], payload: dict[str, Any]) -> Response:
    return Response.json(
        {"meta": {"ver": "1.0", "ts": meta.get("ts"), "txn": meta.get("txn"), "status": "1"}, **payload}
    )


def _fail(code: str, message: str) -> Response:
    return Response.json({"meta": {"ver": "1.0", "status": "0", "errorCode": code, "errorMessage": message}})
