"""DigiCert CertCentral Services API v2 emulator (reference/ca-apis.md §1), enough for certfleet's connector.

Modes for new orders: "issue" (skip_approval: 201 with `certificate_chain`), "pending" (201 with a
pending request; `approve(id)` or `auto_approve_after` polls issue it), "needs_approval" (the same, with the order
waiting for an administrator's approval), "reject" (the order ends rejected). Products are checked against
CertCentral's ids (an unknown one: 404 `not_found|product`); the Secure Email products issue S/MIME certificates
(each address of `certificate.emails` as rfc822Name, emailProtection) and need those addresses in the CSR.
Counts every order placed and every duplicate of an idempotency reference, which is what the batch test
checks on the CA side.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.emulators.pki import IssuingCA, TlsIdentity
from tests.emulators.server import Emulator, Request, Response

PREFIX = "/services/v2/"
TLS_PRODUCTS = frozenset(
    {
        "ssl_basic", "ssl_plus", "ssl_multi_domain", "ssl_wildcard", "ssl_ev_plus", "ssl_ev_multi_domain",
        "ssl_securesite_pro", "ssl_ev_securesite_pro", "ssl_securesite_flex", "ssl_ev_securesite_flex",
        "ssl_dv_geotrust", "ssl_dv_rapidssl", "wildcard_dv_geotrust", "wildcard_dv_rapidssl", "private_ssl_plus",
    }
)  # fmt: skip
SMIME_PRODUCTS = frozenset({"secure_email_mailbox", "secure_email_sponsor", "secure_email_organization"})


@dataclass
class DigiCertOrder:
    id: int
    product: str
    body: dict[str, Any]
    status: str = "pending"
    certificate_id: int | None = None
    certificate: x509.Certificate | None = None
    polls: int = 0
    comment: str | None = None


@dataclass
class DigiCertEmulator(Emulator):
    tls: TlsIdentity
    api_key: str = "dc-test-key-0123456789"
    organization_id: int = 112233
    mode: str = "issue"
    auto_approve_after: int | None = None
    reject_message: str = "Organization validation failed: the organization could not be verified"
    ca: IssuingCA = field(default_factory=lambda: IssuingCA("DigiCert Emulator"))
    orders: dict[int, DigiCertOrder] = field(default_factory=dict)
    duplicates: int = 0

    name = "digicert"

    def __post_init__(self) -> None:
        super().__init__(self.tls)
        self._ids = itertools.count(540001)
        self._cert_ids = itertools.count(880001)
        self._lock = threading.Lock()
        self.references: dict[str, int] = {}

    @property
    def base_url(self) -> str:
        return f"{self.base}/services/v2"

    def fault_response(self, fault: str, request: Request) -> Response:
        status = int(fault)
        if status == 429:
            return Response.json(
                {
                    "errors": [
                        {
                            "code": "request_limit_exceeded",
                            "message": "Service unavailable, please limit request volume",
                        }
                    ]
                },
                429,
            )
        if status == 401:
            return _error(401, "invalid_api_key", "The API key provided is not valid")
        return Response.text("<html><body>Service Unavailable</body></html>", status)

    # -- CertCentral -------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.headers.get("X-DC-DEVKEY") != self.api_key:
            return _error(401, "invalid_api_key", "The API key provided is not valid")
        if not request.path.startswith(PREFIX):
            return _error(404, "not_found", "unknown resource")
        path = request.path[len(PREFIX) :]
        if request.method == "POST" and (m := re.fullmatch(r"order/certificate/([a-z_]+)", path)):
            return self._place(m.group(1), request.json())
        if request.method == "GET" and path == "order/certificate":
            return self._list(request.arg("filters[search]") or "")
        if request.method == "GET" and (m := re.fullmatch(r"order/certificate/([0-9A-Fa-f]+)", path)):
            return self._order_info(m.group(1))
        if request.method == "GET" and (m := re.fullmatch(r"certificate/(\d+)/download/format/pem_all", path)):
            return self._download(int(m.group(1)))
        if request.method == "PUT" and (m := re.fullmatch(r"certificate/(\d+)/revoke", path)):
            return self._revoke(int(m.group(1)), request.json())
        if request.method == "GET" and (m := re.fullmatch(r"organization/(\d+)", path)):
            if int(m.group(1)) != self.organization_id:
                return _error(404, "not_found", f"Organization {m.group(1)} was not found")
            return Response.json({"id": self.organization_id, "name": "certfleet Test Org", "status": "active"})
        return _error(404, "not_found", "unknown resource")

    def _place(self, product: str, body: dict[str, Any]) -> Response:
        if product not in TLS_PRODUCTS | SMIME_PRODUCTS:
            return _error(404, "not_found|product", f"Product {product} was not found")
        cert = body.get("certificate") or {}
        names = "emails" if product in SMIME_PRODUCTS else "common_name"
        problems = [k for k in (names, "csr", "signature_hash") if not cert.get(k)]
        if problems:
            return _error(400, "missing_field", f"missing certificate fields: {', '.join(problems)}")
        if (body.get("organization") or {}).get("id") != self.organization_id:
            return _error(400, "invalid_organization", "organization.id is not an organization of this account")
        if body.get("payment_method") not in ("balance", "profile", "card", "wire_transfer"):
            return _error(400, "invalid_payment_method", "payment_method is invalid")
        try:
            csr = x509.load_pem_x509_csr(cert["csr"].encode())
        except ValueError:
            return _error(400, "invalid_csr", "The CSR could not be parsed")
        if product in SMIME_PRODUCTS:
            try:
                in_csr = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                mailboxes = in_csr.get_values_for_type(x509.RFC822Name)
            except x509.ExtensionNotFound:
                mailboxes = []
            missing = [e for e in cert["emails"] if e not in mailboxes]
            if missing:
                return _error(400, "invalid_csr", f"The CSR does not contain the email addresses {', '.join(missing)}")
        with self._lock:
            order = DigiCertOrder(next(self._ids), product, body)
            reference = str(body.get("comments") or "")
            if reference:
                if reference in self.references:
                    self.duplicates += 1
                self.references[reference] = order.id
            self.orders[order.id] = order
        if self.mode == "reject":
            order.status = "rejected"
            order.comment = self.reject_message
            return Response.json({"id": order.id, "requests": [{"id": order.id + 1, "status": "rejected"}]}, 201)
        if self.mode == "issue":
            self._issue(order)
            assert order.certificate is not None
            chain = [order.certificate, self.ca.intermediate, self.ca.root]
            return Response.json(
                {
                    "id": order.id,
                    "requests": [{"id": order.id + 1, "status": "approved"}],
                    "certificate_id": order.certificate_id,
                    "certificate_chain": [
                        {
                            "subject_common_name": c.subject.rfc4514_string(),
                            "pem": c.public_bytes(serialization.Encoding.PEM).decode().replace("\n", "\r\n"),
                        }
                        for c in chain
                    ],
                },
                201,
            )
        if self.mode == "needs_approval":
            order.status = "needs_approval"
        return Response.json({"id": order.id, "requests": [{"id": order.id + 1, "status": "pending"}]}, 201)

    def _issue(self, order: DigiCertOrder) -> None:
        days = int((order.body.get("order_validity") or {}).get("days") or 365)
        order.certificate = self.ca.sign(order.body["certificate"]["csr"], days, email=order.product in SMIME_PRODUCTS)
        order.certificate_id = next(self._cert_ids)
        order.status = "issued"

    def approve(self, order_id: int) -> None:
        self._issue(self.orders[order_id])

    def _find(self, ident: str) -> DigiCertOrder | None:
        if ident.isdigit() and int(ident) in self.orders:
            return self.orders[int(ident)]
        for order in self.orders.values():  # CertCentral also takes the certificate's serial number
            if order.certificate is not None and f"{order.certificate.serial_number:X}".lstrip(
                "0"
            ) == ident.upper().lstrip("0"):
                return order
        return None

    def _order_info(self, ident: str) -> Response:
        order = self._find(ident)
        if order is None:
            return _error(404, "not_found", f"Order {ident} was not found")
        order.polls += 1
        waiting = order.status in ("pending", "needs_approval")
        if waiting and self.auto_approve_after is not None and order.polls > self.auto_approve_after:
            self._issue(order)
        certificate: dict[str, Any] = {
            "common_name": order.body["certificate"]["common_name"],
            "dns_names": order.body["certificate"].get("dns_names", []),
            "emails": order.body["certificate"].get("emails", []),
        }
        if order.certificate is not None:
            certificate.update(id=order.certificate_id, serial_number=f"{order.certificate.serial_number:x}")
        requests = [{"id": order.id + 1, "status": order.status, "comments": order.comment}]
        return Response.json(
            {
                "id": order.id,
                "status": order.status,
                "certificate": certificate,
                "product": {"name_id": order.product},
                "organization": {"id": self.organization_id},
                "comments": order.body.get("comments"),
                "requests": requests,
            }
        )

    def _list(self, search: str) -> Response:
        found = [
            {"id": o.id, "status": o.status, "comments": o.body.get("comments")}
            for o in self.orders.values()
            if not search or search in str(o.body.get("comments", ""))
        ]
        return Response.json({"orders": found, "page": {"total": len(found), "limit": 20, "offset": 0}})

    def _download(self, certificate_id: int) -> Response:
        order = next((o for o in self.orders.values() if o.certificate_id == certificate_id), None)
        if order is None or order.certificate is None:
            return _error(404, "not_found", f"Certificate {certificate_id} was not found")
        pem = self.ca.full_chain_pem(order.certificate).replace("\n", "\r\n")
        return Response(200, pem.encode(), {"Content-Type": "application/x-pem-file"})

    def _revoke(self, certificate_id: int, body: dict[str, Any]) -> Response:
        order = next((o for o in self.orders.values() if o.certificate_id == certificate_id), None)
        if order is None or order.certificate is None:
            return _error(404, "not_found", f"Certificate {certificate_id} was not found")
        self.ca.revoke(order.certificate.serial_number, str(body.get("revocation_reason") or "unspecified"))
        order.status = "revoked"
        return Response(204)

    # -- what tests check --------------------------------------------------------------------------------

    @property
    def placed(self) -> int:
        return len(self.orders)


def _error(status: int, code: str, message: str) -> Response:
    return Response.json({"errors": [{"code": code, "message": message}]}, status)
