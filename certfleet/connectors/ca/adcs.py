"""Microsoft AD CS web enrollment (certsrv): submit a CSR, poll a pending request, download the chain.

Protocol: reference/ca-apis.md §2. Authentication is Basic or NTLM, whichever IIS offers (WindowsAuth on
the injected client). An Enterprise CA issues from a certificate template (the `CertificateTemplate`
attribute); a Standalone CA usually marks requests pending until a CA manager approves them, and certfleet
polls the request id. A denied request carries the CA's own disposition message.
Web enrollment offers no revocation: `revoke` says how to revoke on the CA instead.

Crash between "AD CS accepted" and "recorded": certsrv has no search, but request ids are dense and
increasing. Before the submission the newest request id certfleet knows for this connector is written
through the journal (`after:<id>`), and replaced by `answered:<id>` when AD CS answers without a request
id certfleet could record (`after:0` before the connector's first request). A retry that finds
`after:<id>` walks the request ids above it up to the first unknown one (AD CS numbers requests from 1,
without gaps): an issued request whose certificate holds the CSR's public key is this order's (the key is
new for every order) and is recorded; a pending request might be it, so the retry waits (a transient
error) until a CA manager approves or denies it rather than submit again.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from cryptography import x509

from certfleet.connectors.base import IssueRequest, IssueResult
from certfleet.connectors.ca.common import csr_names, pem_chain_from
from certfleet.connectors.ca.http import CAHttp, RateLimited
from certfleet.connectors.ca.journal import MemoryOrderJournal, OrderJournal
from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError
from certfleet.pki.parse import serial_hex

CA_NAME = "AD CS"
# certsrv serves a usable certificate only to browser-like agents (see the certsrv client's notes).
BROWSER_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) certfleet"

_ISSUED = re.compile(r"certnew\.cer\?ReqID=(\d+)&")
_PENDING_ID = re.compile(r"Your Request Id is (\d+)\.")
ISSUED = "Issued"
AWAITING_APPROVAL = "Pending CA manager approval"  # "Taken Under Submission": a CA manager must approve it
_DISPOSITION = re.compile(r'The disposition message is "([^"]+)')
_DISPOSITION_PAGE = re.compile(r"Disposition message:[^\t]*\t\t([^\r\n]+)")
_ERROR_PAGE = re.compile(r"(?:LastStatus|Error):?[^\t]*\t\t([^\r\n]+)")
MAX_RECONCILE_REQUESTS = 200  # request ids walked when an earlier submission's answer was lost


@dataclass(frozen=True)
class ADCSSettings:
    setup: Literal["enterprise", "standalone"] = "enterprise"
    template: str | None = None


class ADCSCA:
    kind: ClassVar[str] = "adcs"

    def __init__(self, http: CAHttp, settings: ADCSSettings, journal: OrderJournal | None = None) -> None:
        if settings.setup == "enterprise" and not settings.template:
            raise PermanentConnectorError("an Enterprise CA issues from a certificate template: set the template")
        self.http = http
        self.settings = settings
        self.journal: OrderJournal = journal or MemoryOrderJournal()

    def issue(self, request: IssueRequest) -> IssueResult:
        prior = self.journal.prior(request.idempotency_key)
        if prior.ca_order_id is not None:
            return self.status(prior.ca_order_id)
        csr_names(request.csr_pem)  # a broken CSR is our problem, not the CA's: say so before sending it
        if prior.request_ref and prior.request_ref.startswith("after:"):  # the last submission's outcome is unknown
            found = self.find_request(request.csr_pem, int(prior.request_ref[len("after:") :]))
            if found is not None:
                self.journal.placed(request.idempotency_key, found)
                return self.status(found)
        latest = self.journal.latest()
        floor = int(latest) if latest and latest.isdigit() else 0
        self.journal.sending(request.idempotency_key, f"after:{floor}")
        attributes = [f"UserAgent:{BROWSER_UA}"]
        if self.settings.setup == "enterprise":
            attributes.insert(0, f"CertificateTemplate:{self.settings.template}")
        try:
            page = self._submit(request, attributes)
        except (PermanentConnectorError, RateLimited):  # an HTTP 4xx/429: refused, no request was created
            self.journal.sending(request.idempotency_key, f"answered:{floor}")
            raise
        if issued := _ISSUED.search(page):
            request_id = issued.group(1)
            self.journal.placed(request.idempotency_key, request_id)
            return IssueResult(ca_order_id=request_id, pem_chain=self._download(request_id), validation_status=ISSUED)
        if "Certificate Pending" in page and (pending := _PENDING_ID.search(page)):
            request_id = pending.group(1)
            self.journal.placed(request.idempotency_key, request_id)
            return IssueResult(ca_order_id=request_id, validation_status=AWAITING_APPROVAL)
        self.journal.sending(request.idempotency_key, f"answered:{floor}")
        raise PermanentConnectorError(f"AD CS denied the request: {_disposition(page)}")

    def _submit(self, request: IssueRequest, attributes: list[str]) -> str:
        return self.http.request(
            "POST",
            "certfnsh.asp",
            data={
                "Mode": "newreq",
                "CertRequest": request.csr_pem,
                "CertAttrib": "\r\n".join(attributes),
                "FriendlyType": "Saved-Request Certificate",
                "TargetStoreFlags": "0",
                "SaveCert": "yes",
            },
            headers={"User-Agent": BROWSER_UA},
        ).text

    def find_request(self, csr_pem: str, floor: int) -> str | None:
        """The request an earlier submission of this CSR created after request `floor`, if it was issued.

        Raises a transient error while a pending request above `floor` might be it, and a permanent one when
        more than MAX_RECONCILE_REQUESTS requests were made since (certfleet cannot tell which is its own).
        """
        public_key = x509.load_pem_x509_csr(csr_pem.encode()).public_key()
        pending: list[str] = []
        for number in range(floor + 1, floor + 1 + MAX_RECONCILE_REQUESTS):
            request_id = str(number)
            response = self.http.request(
                "GET", "certnew.cer", params={"ReqID": request_id, "Enc": "b64"}, headers={"User-Agent": BROWSER_UA}
            )
            if response.headers.get("Content-Type", "").split(";")[0].strip() == "application/pkix-cert":
                leaf = x509.load_pem_x509_certificate(pem_chain_from(response.text, ca=CA_NAME).encode())
                if leaf.public_key() == public_key:
                    return request_id
                continue
            page = response.text
            message = _disposition(page).lower()
            if "not found" in message or "cannot be found" in message:
                break  # past the newest request (a CA numbers its requests from 1, without gaps)
            if "Taken Under Submission" in page or "Certificate Pending" in page:
                pending.append(request_id)
        else:
            raise PermanentConnectorError(
                f"an earlier submission's answer was lost and AD CS holds more than {MAX_RECONCILE_REQUESTS} "
                f"requests after request {floor}; find this CSR's request at the CA (or deny it) before ordering"
            )
        if pending:
            raise TransientConnectorError(
                f"an earlier submission's answer was lost; AD CS requests {', '.join(pending)} are pending and one "
                "may be this order's: waiting for a CA manager to approve or deny them"
            )
        return None

    def status(self, ca_order_id: str) -> IssueResult:
        if not ca_order_id.isdigit():
            raise PermanentConnectorError(f"{ca_order_id!r} is not an AD CS request id")
        response = self.http.request(
            "GET", "certnew.cer", params={"ReqID": ca_order_id, "Enc": "b64"}, headers={"User-Agent": BROWSER_UA}
        )
        if response.headers.get("Content-Type", "").split(";")[0].strip() == "application/pkix-cert":
            chain = self._chain(ca_order_id, response.text)
            return IssueResult(ca_order_id=ca_order_id, pem_chain=chain, validation_status=ISSUED)
        page = response.text
        if "Taken Under Submission" in page or "Certificate Pending" in page:
            return IssueResult(ca_order_id=ca_order_id, validation_status=AWAITING_APPROVAL)
        message = _disposition(page)
        if "Denied" in page or "denied" in message:
            raise PermanentConnectorError(f"AD CS denied request {ca_order_id}: {message}")
        if "not found" in message.lower() or "cannot be found" in message.lower():
            raise PermanentConnectorError(f"AD CS has no request {ca_order_id}: {message}")
        raise TransientConnectorError(f"AD CS request {ca_order_id} is not available yet: {message}")

    def revoke(self, serial_number: int, reason: x509.ReasonFlags) -> None:
        serial = serial_hex(serial_number)
        raise PermanentConnectorError(
            f"AD CS web enrollment cannot revoke certificates; revoke serial {serial} on the CA with "
            f"`certutil -revoke {serial} <reason>` or in the Certification Authority console"
        )

    def check_credentials(self) -> str:
        """Authenticate without requesting: the certsrv home page answers 200 only to a valid login."""
        self.http.request("GET", "", headers={"User-Agent": BROWSER_UA})
        page = self.http.request("GET", "certcarc.asp", headers={"User-Agent": BROWSER_UA}).text
        if "nRenewals" not in page:
            raise PermanentConnectorError(
                "the base URL answers but is not AD CS web enrollment; it should end in /certsrv"
            )
        return "authenticated to AD CS web enrollment"

    def _download(self, request_id: str) -> str:
        leaf = self.http.request(
            "GET", "certnew.cer", params={"ReqID": request_id, "Enc": "b64"}, headers={"User-Agent": BROWSER_UA}
        )
        if leaf.headers.get("Content-Type", "").split(";")[0].strip() != "application/pkix-cert":
            raise TransientConnectorError(f"AD CS issued request {request_id} but did not serve the certificate yet")
        return self._chain(request_id, leaf.text)

    def _chain(self, request_id: str, leaf_pem: str) -> str:
        p7b = self.http.request(
            "GET", "certnew.p7b", params={"ReqID": request_id, "Enc": "bin"}, headers={"User-Agent": BROWSER_UA}
        )
        leaf = pem_chain_from(leaf_pem, ca=CA_NAME)
        if p7b.headers.get("Content-Type", "").split(";")[0].strip() != "application/x-pkcs7-certificates":
            return leaf  # no chain offered: the leaf alone still deploys
        return pem_chain_from(leaf.encode() + pem_chain_from(p7b.content, ca=CA_NAME).encode(), ca=CA_NAME)


def _disposition(page: str) -> str:
    for pattern in (_DISPOSITION, _DISPOSITION_PAGE, _ERROR_PAGE):
        if found := pattern.search(page):
            return html.unescape(found.group(1).strip())
    return "AD CS gave no reason (an unknown error page)"
