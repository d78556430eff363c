"""AD CS web enrollment (certsrv) emulator: the ASP pages certfleet uses, Basic or real NTLM (pyspnego acceptor).

`setup="enterprise"`: requests name a template; unknown templates are denied with the policy module's
message, templates in `approval_templates` stay pending. `setup="standalone"`: every request is pending
until `approve(id)` (or `deny(id, message)`), as a Standalone CA's default policy does.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import spnego
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from tests.emulators.pki import IssuingCA, TlsIdentity
from tests.emulators.server import Emulator, Request, Response

ISSUED_PAGE = """<HTML><Head><Title>Microsoft Active Directory Certificate Services</Title></Head><Body>
<P ID=locPageTitle> Certificate Issued </P>
<P>The certificate you requested was issued to you.</P>
<Script>location="certnew.cer?ReqID={id}&"+getEncoding();</Script>
<A Href="certnew.cer?ReqID={id}&amp;Enc=b64">Base 64 encoded</A></Body></HTML>"""

PENDING_PAGE = """<HTML><Head><Title>Microsoft Active Directory Certificate Services</Title></Head><Body>
<P ID=locPageTitle> Certificate Pending </P>
<P>Your certificate request has been received. However, you must wait for an administrator to issue
the certificate you requested.</P><P>Your Request Id is {id}.</P></Body></HTML>"""

DENIED_PAGE = """<HTML><Head><Title>Microsoft Active Directory Certificate Services</Title></Head><Body>
<P ID=locPageTitle> Certificate Request Denied </P>
<P>Your certificate request was denied.</P>
<P>Contact your administrator for further information.</P>
<!-- The disposition message is "{message}" --></Body></HTML>"""

ERROR_PAGE = (
    "<HTML><Body><P ID=locPageTitle> Error </P><DL><DT><B><Font Size=-1>Disposition message:</B></Font></DT>"
    "<DD>\r\n\t\t{message}\r\n</DD></DL></Body></HTML>"
)


@dataclass
class ADCSRequest:
    id: int
    csr_pem: str
    template: str | None
    status: str  # issued, pending, denied
    certificate: x509.Certificate | None = None
    message: str = ""
    polls: int = 0


@dataclass
class ADCSEmulator(Emulator):
    tls: TlsIdentity
    workdir: Path
    setup: str = "enterprise"
    auth: str = "ntlm"  # or "basic"
    domain: str = "CORP"
    username: str = "svc-certfleet"
    password: str = "S3cret-adcs!"
    templates: tuple[str, ...] = ("WebServer", "WebServerApproval")
    approval_templates: tuple[str, ...] = ("WebServerApproval",)
    auto_approve_after: int | None = None  # a CA manager who approves after this many status checks
    ca: IssuingCA = field(default_factory=lambda: IssuingCA("ADCS Emulator"))
    requests: dict[int, ADCSRequest] = field(default_factory=dict)
    lose_answers: int = 0  # the next submissions are taken, their answers lost (a 502 from a proxy in between)

    name = "adcs"

    def __post_init__(self) -> None:
        super().__init__(self.tls)
        self._ids = itertools.count(1)  # AD CS numbers requests from 1, without gaps
        self._lock = threading.Lock()
        users = self.workdir / "ntlm-users"
        self.workdir.mkdir(parents=True, exist_ok=True)
        users.write_text(f"{self.domain}:{self.username}:{self.password}\n")
        os.environ["NTLM_USER_FILE"] = str(users)  # pyspnego's NTLM acceptor reads its accounts from here

    @property
    def base_url(self) -> str:
        return f"{self.base}/certsrv"

    @property
    def login(self) -> str:
        return f"{self.domain}\\{self.username}"

    def fault_response(self, fault: str, request: Request) -> Response:
        if fault == "401":
            return self._challenge()
        return Response.text("<html><body><h1>Service Unavailable</h1></body></html>", int(fault))

    # -- authentication ----------------------------------------------------------------------------------

    def _challenge(self, token: str | None = None) -> Response:
        if self.auth == "basic":
            return Response(401, b"Unauthorized", {"WWW-Authenticate": 'Basic realm="certsrv"'})
        value = f"NTLM {token}" if token else "NTLM"
        return Response(401, b"Unauthorized", {"WWW-Authenticate": value})

    def _authenticated(self, request: Request) -> Response | None:
        """None when the request (or its connection) is authenticated, else the 401 to send."""
        if request.connection.get("user"):
            return None
        header = request.headers.get("Authorization") or ""
        if self.auth == "basic":
            if header.startswith("Basic "):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                if user.split("\\")[-1].lower() == self.username.lower() and password == self.password:
                    return None
            return self._challenge()
        if not header.startswith("NTLM "):
            return self._challenge()
        context = request.connection.get("ntlm")
        if context is None:
            context = request.connection["ntlm"] = spnego.server(protocol="ntlm")
        try:
            out = context.step(base64.b64decode(header[5:]))
        except Exception:
            request.connection.pop("ntlm", None)
            return Response(401, b"Unauthorized", {"WWW-Authenticate": "NTLM"})
        if context.complete:
            request.connection["user"] = context.client_principal
            return None
        return self._challenge(base64.b64encode(out or b"").decode())

    # -- certsrv pages -----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        refused = self._authenticated(request)
        if refused is not None:
            return refused
        path = request.path.rstrip("/")
        if path == "/certsrv":
            return Response.text("<HTML><Body>Welcome to AD CS web enrollment</Body></HTML>")
        if path == "/certsrv/certcarc.asp":
            return Response.text("<Script>var nRenewals=0;</Script>")
        if path == "/certsrv/certfnsh.asp" and request.method == "POST":
            answer = self._submit(request.form())
            if self.lose_answers > 0:
                self.lose_answers -= 1
                return Response.text("<html><body><h1>502 Bad Gateway</h1></body></html>", 502)
            return answer
        if path == "/certsrv/certnew.cer":
            return self._certificate(request.arg("ReqID") or "")
        if path == "/certsrv/certnew.p7b":
            return self._chain(request.arg("ReqID") or "")
        return Response.text("<HTML>Not found</HTML>", 404)

    def _submit(self, form: dict[str, str]) -> Response:
        attributes = dict(line.split(":", 1) for line in re.split(r"\r?\n", form.get("CertAttrib", "")) if ":" in line)
        template = attributes.get("CertificateTemplate")
        with self._lock:
            req = ADCSRequest(next(self._ids), form.get("CertRequest", ""), template, "pending")
            self.requests[req.id] = req
        try:
            x509.load_pem_x509_csr(req.csr_pem.encode())
        except ValueError:
            req.status, req.message = "denied", "Error Parsing Request  ASN1 bad tag value met. 0x8009310b"
            return Response.text(DENIED_PAGE.format(message=req.message))
        if self.setup == "enterprise":
            if template not in self.templates:
                req.status = "denied"
                req.message = (
                    "Denied by Policy Module  0x80094800, The request was for a certificate template that is "
                    f"not supported by the Active Directory Certificate Services policy: {template}."
                )
                return Response.text(DENIED_PAGE.format(message=req.message))
            if template not in self.approval_templates:
                self._issue(req)
                return Response.text(ISSUED_PAGE.format(id=req.id))
        return Response.text(PENDING_PAGE.format(id=req.id))

    def _issue(self, req: ADCSRequest) -> None:
        req.certificate = self.ca.sign(req.csr_pem, 365)
        req.status = "issued"

    def approve(self, request_id: int) -> None:
        self._issue(self.requests[request_id])

    def deny(self, request_id: int, message: str) -> None:
        req = self.requests[request_id]
        req.status, req.message = "denied", f"Denied by {message}"

    def _certificate(self, ident: str) -> Response:
        req = self.requests.get(int(ident)) if ident.isdigit() else None
        if req is None:
            return Response.text(ERROR_PAGE.format(message=f"The request ID {ident} is not found. 0x80094004"))
        if req.status == "pending":
            req.polls += 1
            if self.auto_approve_after is not None and req.polls > self.auto_approve_after:
                self._issue(req)
            else:
                return Response.text(ERROR_PAGE.format(message="Taken Under Submission"))
        if req.status == "denied" or req.certificate is None:
            return Response.text(ERROR_PAGE.format(message=req.message))
        pem = req.certificate.public_bytes(serialization.Encoding.PEM)
        return Response(200, pem.replace(b"\n", b"\r\n"), {"Content-Type": "application/pkix-cert"})

    def _chain(self, ident: str) -> Response:
        req = self.requests.get(int(ident)) if ident.isdigit() else None
        if req is None or req.certificate is None:
            return Response.text(ERROR_PAGE.format(message=f"The request ID {ident} is not found. 0x80094004"))
        der = pkcs7.serialize_certificates(
            [req.certificate, self.ca.intermediate, self.ca.root], serialization.Encoding.DER
        )
        return Response(200, der, {"Content-Type": "application/x-pkcs7-certificates"})

    @property
    def placed(self) -> int:
        return len(self.requests)
