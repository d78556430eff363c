"""eMudhra emSign through the CERTInext REST API: GenerateOrderSSL / GenerateOrderSMIME, TrackOrder, GetCertificate,
RevokeOrder.

Protocol: reference/ca-apis.md §3.1. Every call is a POST whose `meta` block carries the account number,
a timestamp, a unique transaction id and `authKey = sha256hex(accessKey + ts + txn)`; the access key
itself never leaves this process. CERTInext answers HTTP 200 even on failure (`meta.status` "0" with
`errorCode`/`errorMessage`): those replies become errors here. Its burst limit shows up as an
"Inactive Account User" error and is treated as a rate limit (transient).
The order number is recorded through the journal as soon as GenerateOrderSSL answers, and the order's
remarks carry certfleet's idempotency key. S/MIME orders (the S/MIME product, 894 in production) go to
GenerateOrderSMIME, CERTInext's S/MIME order endpoint, with the same order details except that
`certificateInformation` names the mailbox (`emailAddress`; the field name is not in the public documentation
certfleet could read, see reference/ca-apis.md §3.1) instead of domains; they are tracked and fetched as SSL orders.

Crash between "emSign accepted" and "recorded": the transaction id of the GenerateOrderSSL call is written
through the journal (`txn:<id>`) before the call, and replaced by `answered:<id>` when emSign answers
without an order. A retry that finds `txn:<id>` does not know whether emSign took the order, so it
1. looks for the order in GetOrderReport by its remarks (`certfleet-order:<idempotency key>`), and
2. if it is not listed, sends GenerateOrderSSL again with the same transaction id: emSign refuses a
   transaction id it has seen, so the order is placed at most once; that refusal means the first call
   reached emSign, and the retry waits for the order to be listed.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from cryptography import x509

from certfleet.connectors.base import RFC5280_REASON_CODES, IssueRequest, IssueResult, Profile
from certfleet.connectors.ca.common import csr_names, join_pem
from certfleet.connectors.ca.http import CAHttp, RateLimited
from certfleet.connectors.ca.journal import MemoryOrderJournal, OrderJournal
from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError
from certfleet.pki.parse import serial_hex

CA_NAME = "emSign"
REFERENCE_PREFIX = "certfleet-order:"
_BURST_LIMIT_MARKERS = ("inactive account user", "too many requests", "rate limit")
_DUPLICATE_TXN_MARKERS = ("duplicate transaction",)
REPORT_PAGES = 5  # GetOrderReport pages (newest first) searched for an order whose answer was lost
REPORT_PAGE_SIZE = 100


class DuplicateTransaction(PermanentConnectorError):
    """emSign refused a transaction id it has already seen."""


# TrackOrder orderStatusId: 1 placed, 2 accepted, 3 in progress, 4 rejected, 5 cancelled, 6 fulfilled,
# 7 on hold, 8/9 pending approval. certificateStatusId 20 generated, 9 downloaded, 22 revoked.
_ORDER_FAILED = {4: "rejected", 5: "cancelled"}
_ORDER_FULFILLED = 6
_CERT_AVAILABLE = {9, 20}
_DCV = {0: "Pending", 1: "Verified", 2: "Failed"}
# TrackOrder's orderStatusId for orders still open (4 and 5 fail the order, 6 delivers it)
_ORDER_STATE = {
    1: "Placed",
    2: "Accepted",
    3: "In progress",
    7: "On hold",
    8: "Pending approval",
    9: "Pending approval",
}

# RevokeOrder accepts revokeReasonId 1, 3, 4, 5, 9 (RFC 5280 codes).
_REVOKE_REASON = {r: code for r, code in RFC5280_REASON_CODES.items() if code in {1, 3, 4, 5, 9}}


@dataclass(frozen=True)
class EmSignSettings:
    account_number: str
    full_name: str
    email: str
    product_code: str = "838"  # CERTInext production DV SSL; sandbox accounts use their own codes
    smime_product_code: str = "894"
    validity_years: int = 1


class EmSignCA:
    kind: ClassVar[str] = "emsign"

    def __init__(
        self, http: CAHttp, settings: EmSignSettings, access_key: str, journal: OrderJournal | None = None
    ) -> None:
        self.http = http
        self.settings = settings
        self._access_key = access_key
        self.journal: OrderJournal = journal or MemoryOrderJournal()
        self._txn = itertools.count(time.time_ns() // 1000)

    def __repr__(self) -> str:
        return f"EmSignCA(account={self.settings.account_number!r})"

    # -- the protocol ------------------------------------------------------------------------------------

    def issue(self, request: IssueRequest) -> IssueResult:
        prior = self.journal.prior(request.idempotency_key)
        if prior.ca_order_id is not None:
            return self.status(prior.ca_order_id)
        names = csr_names(request.csr_pem)
        txn: str | None = None
        if prior.request_ref and prior.request_ref.startswith("txn:"):  # the last call's outcome is unknown
            found = self.find_order(request.idempotency_key)
            if found is not None:
                self.journal.placed(request.idempotency_key, found)
                return self.status(found)
            txn = prior.request_ref[len("txn:") :]  # the same transaction: emSign takes it at most once
        txn = txn or str(next(self._txn))
        smime = request.profile is Profile.SMIME
        if smime and not names.emails:
            raise PermanentConnectorError("an S/MIME CSR names its mailbox as an rfc822Name subject alternative name")
        order = {
            "productCode": self.settings.smime_product_code if smime else self.settings.product_code,
            "accountingModel": "2",
            "saveAndHold": "0",
            "emailNotifications": "0",
            "csr": request.csr_pem,
            "requestorInformation": {"requestorName": self.settings.full_name, "requestorEmail": self.settings.email},
            "subscriptionDetails": {"validity": str(self.settings.validity_years), "autoRenew": "0"},
            "certificateInformation": (
                {"emailAddress": names.emails[0]}
                if smime
                else {
                    "domainName": names.common_name,
                    "additionalDomains": [n for n in names.sans if n != names.common_name],
                    "autoSecureWWW": "0",
                }
            ),
            "additionalInformation": {"remarks": REFERENCE_PREFIX + request.idempotency_key, "tags": "certfleet"},
        }
        endpoint = "GenerateOrderSMIME" if smime else "GenerateOrderSSL"
        self.journal.sending(request.idempotency_key, f"txn:{txn}")
        try:
            reply = self._call(endpoint, {"orderDetails": order}, txn=txn)
        except DuplicateTransaction as exc:
            raise TransientConnectorError(
                f"emSign already received this order (transaction {txn}) but does not list it yet; will look again"
            ) from exc
        except (PermanentConnectorError, RateLimited):
            self.journal.sending(request.idempotency_key, f"answered:{txn}")  # emSign answered: no order
            raise
        details = reply.get("orderDetails") or {}
        order_number = str(details.get("orderNumber") or "")
        if not order_number:
            raise PermanentConnectorError("emSign accepted the order but returned no order number")
        self.journal.placed(request.idempotency_key, order_number)
        return self.status(order_number)

    def status(self, ca_order_id: str) -> IssueResult:
        tracked = self._call("TrackOrder", {"orderNumber": ca_order_id})
        details = tracked.get("orderDetails") or tracked
        order_status = _int(details.get("orderStatusId"))
        cert_status = _int(details.get("certificateStatusId"))
        dcv = _dcv_status(details.get("domainVerification"))
        if order_status in _ORDER_FAILED:
            reason = details.get("remarks") or details.get("orderStatus") or ""
            raise PermanentConnectorError(
                f"emSign order {ca_order_id} was {_ORDER_FAILED[order_status]}" + (f": {reason}" if reason else "")
            )
        if cert_status == 22:
            raise PermanentConnectorError(f"emSign order {ca_order_id} holds a revoked certificate")
        if order_status == _ORDER_FULFILLED or cert_status in _CERT_AVAILABLE:
            got = self._call("GetCertificate", {"orderNumber": ca_order_id, "requestorEmail": self.settings.email})
            cert = got.get("certificateDetails") or {}
            chain = join_pem(cert.get("endEntityCertificate"), cert.get("caCertificate"), cert.get("rootCertificate"))
            if not chain:
                raise PermanentConnectorError(f"emSign order {ca_order_id} is fulfilled but sent no certificate")
            return IssueResult(
                ca_order_id=ca_order_id, pem_chain=chain, dcv_status=dcv or "Verified", validation_status="Fulfilled"
            )
        state = _ORDER_STATE.get(order_status or 0, f"Order status {order_status}")
        return IssueResult(ca_order_id=ca_order_id, dcv_status=dcv, validation_status=state)

    def revoke(self, serial_number: int, reason: x509.ReasonFlags) -> None:
        known = self.journal.issued(serial_number)
        if known is None or not known.ca_order_id:
            raise PermanentConnectorError(
                f"certfleet has no emSign order for serial {serial_hex(serial_number)}; revoke it in the emSign portal"
            )
        self._call(
            "RevokeOrder",
            {
                "revocationDetails": {
                    "orderNumber": known.ca_order_id,
                    "requestorEmail": self.settings.email,
                    "revokeReasonId": str(_REVOKE_REASON.get(reason, 4)),
                    "revokeRemarks": f"revoked by certfleet ({reason.value})",
                }
            },
        )

    def find_order(self, idempotency_key: str) -> str | None:
        """The order an earlier attempt placed, found in GetOrderReport (newest first) by its remarks."""
        reference = REFERENCE_PREFIX + idempotency_key
        for page in range(1, REPORT_PAGES + 1):
            reply = self._call(
                "GetOrderReport", {"reportDetails": {"pageNumber": str(page), "pageSize": str(REPORT_PAGE_SIZE)}}
            )
            orders = reply.get("orderDetails") or []
            for entry in orders:
                if isinstance(entry, dict) and entry.get("remarks") == reference and entry.get("orderNumber"):
                    return str(entry["orderNumber"])
            if len(orders) < REPORT_PAGE_SIZE:
                return None
        return None

    def check_credentials(self) -> str:
        """Authenticate without ordering (ValidateCredentials)."""
        self._call("ValidateCredentials", {})
        return f"authenticated as emSign account {self.settings.account_number}"

    # -- CERTInext plumbing ------------------------------------------------------------------------------

    def meta(self, now: datetime | None = None, txn: str | None = None) -> dict[str, str]:
        ts = (now or datetime.now().astimezone()).isoformat(timespec="seconds")
        txn = txn or str(next(self._txn))
        auth_key = hashlib.sha256((self._access_key + ts + txn).encode()).hexdigest()
        return {"ver": "1.0", "ts": ts, "txn": txn, "accountNumber": self.settings.account_number, "authKey": auth_key}

    def _call(self, endpoint: str, payload: dict[str, Any], txn: str | None = None) -> dict[str, Any]:
        reply = self.http.request("POST", endpoint, json={"meta": self.meta(txn=txn), **payload}).json()
        meta = reply.get("meta") or {}
        if str(meta.get("status", "")) != "1":
            code = meta.get("errorCode") or "no code"
            message = meta.get("errorMessage") or "no message"
            text = f"emSign {endpoint} failed: {code} {message}"
            if any(marker in str(message).lower() for marker in _BURST_LIMIT_MARKERS):
                raise RateLimited(text + " (emSign's burst limit; will retry)")
            if any(marker in str(message).lower() for marker in _DUPLICATE_TXN_MARKERS):
                raise DuplicateTransaction(text)
            raise PermanentConnectorError(text)
        return dict(reply)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _dcv_status(verification: Any) -> str | None:
    """One status for the certificate from per-domain DCV states: Failed beats Pending beats Verified."""
    if not isinstance(verification, dict) or not verification:
        return None
    states = {_DCV.get(_int((v or {}).get("dcvStatus")) or 0, "Pending") for v in verification.values()}
    for state in ("Failed", "Pending", "Verified"):
        if state in states:
            return state
    return None
