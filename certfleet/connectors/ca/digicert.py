"""DigiCert CertCentral (Services API v2): order, poll pending orders, download `pem_all`, revoke.

Protocol: reference/ca-apis.md §1. Authentication is the `X-DC-DEVKEY` header, set on the injected client.
Idempotency: the order id is recorded through the journal as soon as DigiCert answers 201, and every order
carries certfleet's idempotency key in `comments`; when an earlier attempt's outcome is unknown (a timeout
after the request left), the connector first looks for an order with that key before placing another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from cryptography import x509

from certfleet.connectors.base import IssueRequest, IssueResult, Profile
from certfleet.connectors.ca.common import csr_names, join_pem, pem_chain_from
from certfleet.connectors.ca.http import CAHttp
from certfleet.connectors.ca.journal import MemoryOrderJournal, OrderJournal
from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError
from certfleet.pki.parse import serial_hex

CA_NAME = "DigiCert"
MAX_TLS_VALIDITY_DAYS = 397  # CertCentral caps public TLS at 397 days
REFERENCE_PREFIX = "certfleet-order:"

# Order statuses: still on the way, or final without a certificate.
_PENDING = {"pending", "needs_approval", "approved", "processing", "waiting_pickup", "reissue_pending"}
_FAILED = {"rejected", "canceled", "cancelled", "denied", "revoked", "expired"}


def _label(state: str) -> str:
    """CertCentral's order status as a column value: `needs_approval` -> "Needs approval"."""
    return state.replace("_", " ").capitalize()


# RFC 5280 reasons as CertCentral names them on revoke requests.
_REASONS = {
    x509.ReasonFlags.key_compromise: "key_compromise",
    x509.ReasonFlags.affiliation_changed: "affiliation_changed",
    x509.ReasonFlags.superseded: "superseded",
    x509.ReasonFlags.cessation_of_operation: "cessation_of_operation",
}


def error_message(response: httpx.Response) -> str | None:
    """CertCentral errors: {"errors": [{"code": ..., "message": ...}]}."""
    body = response.json()
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return None
    return "; ".join(f"{e.get('code', 'error')}: {e.get('message', '')}".strip() for e in errors)


@dataclass(frozen=True)
class DigiCertSettings:
    organization_id: int
    validity_days: int = MAX_TLS_VALIDITY_DAYS
    payment_method: str = "balance"  # or "profile"
    server_platform_id: int | None = None
    container_id: int | None = None
    product_name_id: str = "ssl_basic"
    smime_product_name_id: str = "secure_email_mailbox"


class DigiCertCA:
    kind: ClassVar[str] = "digicert"

    def __init__(self, http: CAHttp, settings: DigiCertSettings, journal: OrderJournal | None = None) -> None:
        self.http = http
        self.settings = settings
        self.journal: OrderJournal = journal or MemoryOrderJournal()

    # -- the protocol ------------------------------------------------------------------------------------

    def issue(self, request: IssueRequest) -> IssueResult:
        prior = self.journal.prior(request.idempotency_key)
        order_id = prior.ca_order_id
        if order_id is None and prior.attempts > 0:
            order_id = self.find_order(request.idempotency_key)
            if order_id is not None:
                self.journal.placed(request.idempotency_key, order_id)
        if order_id is not None:
            return self.status(order_id)
        body = self.http.request(
            "POST", f"order/certificate/{self._product(request.profile)}", json=self._order_body(request)
        ).json()
        order_id = str(body["id"])
        self.journal.placed(request.idempotency_key, order_id)
        chain = body.get("certificate_chain")
        if chain:  # issued at once (skip_approval with validated organization and domains)
            chain_pem = join_pem(*(c.get("pem") for c in chain))
            return IssueResult(ca_order_id=order_id, pem_chain=chain_pem, validation_status=_label("issued"))
        return self.status(order_id)

    def status(self, ca_order_id: str) -> IssueResult:
        order = self.http.request("GET", f"order/certificate/{ca_order_id}").json()
        state = str(order.get("status", "")).lower()
        certificate = order.get("certificate") or {}
        if state == "issued" and certificate.get("id"):
            pem = self.http.request("GET", f"certificate/{certificate['id']}/download/format/pem_all").text
            return IssueResult(
                ca_order_id=ca_order_id, pem_chain=pem_chain_from(pem, ca=CA_NAME), validation_status=_label(state)
            )
        if state in _FAILED:
            note = _latest_comment(order)
            raise PermanentConnectorError(f"DigiCert order {ca_order_id} is {state}" + (f": {note}" if note else ""))
        if state in _PENDING or state == "issued":  # issued but no certificate id yet: DigiCert is catching up
            return IssueResult(ca_order_id=ca_order_id, validation_status=_label(state))
        raise TransientConnectorError(f"DigiCert order {ca_order_id} has an unknown status {state!r}")

    def revoke(self, serial_number: int, reason: x509.ReasonFlags) -> None:
        known = self.journal.issued(serial_number)
        # CertCentral accepts the primary certificate's serial number wherever an order id goes.
        lookup = known.ca_order_id if known and known.ca_order_id else serial_hex(serial_number)
        order = self.http.request("GET", f"order/certificate/{lookup}").json()
        certificate_id = (order.get("certificate") or {}).get("id")
        if not certificate_id:
            raise PermanentConnectorError(f"DigiCert order {lookup} holds no certificate to revoke")
        body: dict[str, Any] = {"comments": f"revoked by certfleet ({reason.value})", "skip_approval": True}
        if reason in _REASONS:
            body["revocation_reason"] = _REASONS[reason]
        self.http.request("PUT", f"certificate/{certificate_id}/revoke", json=body)

    # -- beyond the protocol -----------------------------------------------------------------------------

    def check_credentials(self) -> str:
        """Authenticate without ordering: read the organization the connector orders for."""
        org = self.http.request("GET", f"organization/{self.settings.organization_id}").json()
        return f"authenticated; orders go to organization {org.get('name') or self.settings.organization_id}"

    def find_order(self, idempotency_key: str) -> str | None:
        """An order an earlier attempt placed, found by the idempotency key certfleet put in its comments."""
        reference = REFERENCE_PREFIX + idempotency_key
        listing = self.http.request(
            "GET", "order/certificate", params={"filters[search]": reference, "limit": 20}
        ).json()
        for order in listing.get("orders", []):
            if reference in str(order.get("comments", "")):
                return str(order["id"])
        return None

    def _product(self, profile: Profile) -> str:
        return self.settings.smime_product_name_id if profile is Profile.SMIME else self.settings.product_name_id

    def _order_body(self, request: IssueRequest) -> dict[str, Any]:
        names = csr_names(request.csr_pem)
        days = request.validity_days or self.settings.validity_days
        if request.profile is Profile.TLS_SERVER and days > MAX_TLS_VALIDITY_DAYS:
            raise PermanentConnectorError(
                f"validity of {days} days exceeds DigiCert's {MAX_TLS_VALIDITY_DAYS}-day limit for TLS"
            )
        certificate: dict[str, Any] = {
            "common_name": names.common_name,
            "csr": request.csr_pem,
            "signature_hash": "sha256",
        }
        if request.profile is Profile.SMIME:
            certificate["emails"] = names.emails
        else:
            certificate["dns_names"] = [n for n in names.dns_names if n != names.common_name]
        if self.settings.server_platform_id is not None:
            certificate["server_platform"] = {"id": self.settings.server_platform_id}
        body: dict[str, Any] = {
            "certificate": certificate,
            "organization": {"id": self.settings.organization_id},
            "order_validity": {"days": days},
            "payment_method": self.settings.payment_method,
            "skip_approval": True,
            "comments": REFERENCE_PREFIX + request.idempotency_key,
        }
        if self.settings.container_id is not None:
            body["container"] = {"id": self.settings.container_id}
        return body


def _latest_comment(order: dict[str, Any]) -> str | None:
    requests = order.get("requests") or []
    for req in reversed(requests):
        if req.get("comments"):
            return str(req["comments"])
    return None
