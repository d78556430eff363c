"""One harness per CA kind: builds the connector the way certfleet stores it, and drives its CA's behaviour.

Each harness answers the same questions, so the contract suite is one set of tests for every connector:
which roots a chain must verify to, how to make the CA refuse credentials, leave an order pending and
release it, deny a request, and whether the CA knows (and has revoked) a serial.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from cryptography import x509
from pydantic import SecretStr

from certfleet.ca_admin.forms import AcmeForm, ADCSForm, AdvancedOptions, DigiCertForm, EmCAForm, EmSignForm
from certfleet.ca_admin.runtime import RemoteCA, RuntimeHooks, build_remote_ca
from certfleet.connectors.base import IssueRequest, IssueResult
from certfleet.connectors.ca.acme import MemoryAccountStore
from certfleet.connectors.ca.journal import MemoryOrderJournal
from tests.emulators.adcs import ADCSEmulator
from tests.emulators.digicert import DigiCertEmulator
from tests.emulators.emca import EmCAEmulator
from tests.emulators.emsign import EmSignEmulator
from tests.emulators.fixtures import EAB_KID, EMCA_PFX_PASSWORD, AcmeStack, stored
from tests.emulators.pki import TlsIdentity
from tests.emulators.server import Faults

TIMEOUT_S = 1.0  # the connectors' timeout in these tests; emulated timeouts hang longer


def advanced(tls: TlsIdentity) -> AdvancedOptions:
    return AdvancedOptions(tls_ca_bundle=tls.ca_pem, timeout_s=TIMEOUT_S)


class Harness:
    kind: ClassVar[str]
    revokes: ClassVar[bool] = True
    honours_validity: ClassVar[bool] = False
    denied_text: ClassVar[str]

    def __init__(self, tls: TlsIdentity) -> None:
        self.tls = tls

    def form(self, *, bad_credentials: bool = False) -> Any:
        raise NotImplementedError

    def connector(self, *, bad_credentials: bool = False) -> RemoteCA:
        hooks = RuntimeHooks(journal=MemoryOrderJournal(), acme_accounts=MemoryAccountStore())
        return build_remote_ca(stored(self.form(bad_credentials=bad_credentials)), hooks)

    @property
    def faults(self) -> Faults:
        raise NotImplementedError

    def roots(self) -> list[x509.Certificate]:
        raise NotImplementedError

    def placed(self) -> int:
        raise NotImplementedError

    def knows(self, serial: int) -> bool:
        raise NotImplementedError

    def is_revoked(self, serial: int) -> bool:
        raise NotImplementedError

    def hold_pending(self) -> None:
        raise NotImplementedError

    def release_pending(self, ca_order_id: str) -> None:
        raise NotImplementedError

    def deny(self, ca: RemoteCA, request: IssueRequest) -> IssueResult:
        """Make the CA deny this request; issue (and poll) until the connector raises."""
        raise NotImplementedError

    def aim_faults_at_orders(self) -> None:
        """Faults hit only the request that places an order (for the lost-answer test)."""
        raise NotImplementedError


class DigiCertHarness(Harness):
    kind = "digicert"
    honours_validity = True
    denied_text = "Organization validation failed"

    def __init__(self, tls: TlsIdentity, emulator: DigiCertEmulator) -> None:
        super().__init__(tls)
        self.emulator = emulator

    def form(self, *, bad_credentials: bool = False) -> DigiCertForm:
        return DigiCertForm(
            name="DigiCert contract",
            api_base_url=self.emulator.base_url,
            api_key=SecretStr("wrong-key" if bad_credentials else self.emulator.api_key),
            organization_id=self.emulator.organization_id,
            server_platform_id=45,
            certificate_validity=200,
            payment_type="Balance",
            advanced=advanced(self.tls),
        )

    @property
    def faults(self) -> Faults:
        return self.emulator.faults

    def roots(self) -> list[x509.Certificate]:
        return [self.emulator.ca.root]

    def placed(self) -> int:
        return self.emulator.placed

    def knows(self, serial: int) -> bool:
        return serial in self.emulator.ca.issued

    def is_revoked(self, serial: int) -> bool:
        return serial in self.emulator.ca.revoked

    def hold_pending(self) -> None:
        self.emulator.mode = "pending"

    def release_pending(self, ca_order_id: str) -> None:
        self.emulator.approve(int(ca_order_id))

    def deny(self, ca: RemoteCA, request: IssueRequest) -> IssueResult:
        self.emulator.mode = "reject"
        return ca.issue(request)

    def aim_faults_at_orders(self) -> None:
        self.faults.applies_to = lambda r: r.method == "POST"


class ADCSHarness(Harness):
    kind = "adcs"
    revokes = False
    denied_text = "0x80094800"

    def __init__(self, tls: TlsIdentity, emulator: ADCSEmulator, template: str = "WebServer") -> None:
        super().__init__(tls)
        self.emulator = emulator
        self.template = template

    def form(self, *, bad_credentials: bool = False) -> ADCSForm:
        return ADCSForm(
            name="AD CS contract",
            base_url=self.emulator.base_url,
            ca_setup_type="Enterprise CA",
            username=self.emulator.login,
            password=SecretStr("wrong-password" if bad_credentials else self.emulator.password),
            template=self.template,
            advanced=advanced(self.tls),
        )

    @property
    def faults(self) -> Faults:
        return self.emulator.faults

    def roots(self) -> list[x509.Certificate]:
        return [self.emulator.ca.root]

    def placed(self) -> int:
        return self.emulator.placed

    def knows(self, serial: int) -> bool:
        return serial in self.emulator.ca.issued

    def is_revoked(self, serial: int) -> bool:
        return serial in self.emulator.ca.revoked

    def hold_pending(self) -> None:
        self.emulator.approval_templates = (*self.emulator.approval_templates, self.template)

    def release_pending(self, ca_order_id: str) -> None:
        self.emulator.approve(int(ca_order_id))

    def deny(self, ca: RemoteCA, request: IssueRequest) -> IssueResult:
        self.template = "NoSuchTemplate"
        return self.connector().issue(request)

    def aim_faults_at_orders(self) -> None:
        self.faults.applies_to = lambda r: r.path.endswith("certfnsh.asp")


class EmSignHarness(Harness):
    kind = "emsign"
    denied_text = "Domain ownership could not be established"

    def __init__(self, tls: TlsIdentity, emulator: EmSignEmulator) -> None:
        super().__init__(tls)
        self.emulator = emulator

    def form(self, *, bad_credentials: bool = False) -> EmSignForm:
        return EmSignForm(
            name="emSign contract",
            api_base_url=self.emulator.base_url,
            account_number=self.emulator.account_number,
            access_key=SecretStr("wrong-access-key" if bad_credentials else self.emulator.access_key),
            full_name="certfleet Operations",
            email="pki-ops@example.test",
            advanced=advanced(self.tls),
        )

    @property
    def faults(self) -> Faults:
        return self.emulator.faults

    def roots(self) -> list[x509.Certificate]:
        return [self.emulator.ca.root]

    def placed(self) -> int:
        return self.emulator.placed

    def knows(self, serial: int) -> bool:
        return serial in self.emulator.ca.issued

    def is_revoked(self, serial: int) -> bool:
        return serial in self.emulator.ca.revoked

    def hold_pending(self) -> None:
        self.emulator.mode = "pending"

    def release_pending(self, ca_order_id: str) -> None:
        self.emulator.verify(ca_order_id)

    def deny(self, ca: RemoteCA, request: IssueRequest) -> IssueResult:
        self.emulator.mode = "reject"
        return ca.issue(request)

    def aim_faults_at_orders(self) -> None:
        self.faults.applies_to = lambda r: r.path.endswith("GenerateOrderSSL")


class EmCAHarness(Harness):
    kind = "emca"
    honours_validity = True
    denied_text = "Not approved by the RA officer"

    def __init__(self, tls: TlsIdentity, emulator: EmCAEmulator, client_file: bytes) -> None:
        super().__init__(tls)
        self.emulator = emulator
        self.client_file = client_file

    def form(self, *, bad_credentials: bool = False) -> EmCAForm:
        return EmCAForm(
            name="emCA contract",
            version=self.emulator.version,
            base_url=self.emulator.base_url,
            username=self.emulator.username,
            issuing_ca=self.emulator.issuing_ca,
            subscriber_id=self.emulator.subscriber_id,
            # The PKCS#12 is protected with the service account password; a wrong password must fail at login,
            # so the bad-credentials form keeps the file readable and changes the user name instead.
            password=SecretStr(EMCA_PFX_PASSWORD),
            uploaded_file=self.client_file,
            advanced=advanced(self.tls),
        ).model_copy(update={"username": "intruder"} if bad_credentials else {})

    @property
    def faults(self) -> Faults:
        return self.emulator.faults

    def roots(self) -> list[x509.Certificate]:
        return [self.emulator.ca.root]

    def placed(self) -> int:
        return self.emulator.placed

    def knows(self, serial: int) -> bool:
        return serial in self.emulator.ca.issued

    def is_revoked(self, serial: int) -> bool:
        return serial in self.emulator.ca.revoked

    def hold_pending(self) -> None:
        self.emulator.manual_authorization = True

    def release_pending(self, ca_order_id: str) -> None:
        self.emulator.authorize(ca_order_id)

    def deny(self, ca: RemoteCA, request: IssueRequest) -> IssueResult:
        self.emulator.manual_authorization = True
        pending = ca.issue(request)
        assert pending.ca_order_id is not None
        assert not pending.issued
        self.emulator.reject(pending.ca_order_id, "Not approved by the RA officer")
        return ca.status(pending.ca_order_id)

    def aim_faults_at_orders(self) -> None:
        self.faults.applies_to = lambda r: r.path.endswith("createCertificates")


class AcmeHarness(Harness):
    kind = "acme"
    denied_text = "rejectedIdentifier"

    def __init__(self, tls: TlsIdentity, stack: AcmeStack) -> None:
        super().__init__(tls)
        self.stack = stack
        stack.reset()
        self._root: x509.Certificate | None = None

    def form(self, *, bad_credentials: bool = False) -> AcmeForm:
        return AcmeForm(
            name="ACME contract",
            directory_url=self.stack.proxy.directory_url,
            contact_email="pki-ops@example.test",
            eab_key_id=EAB_KID,
            eab_hmac_key=SecretStr("A" * 43 if bad_credentials else self.stack.eab_hmac),
            challenge_type="http-01",
            http01_mode="bot",
            http01_listen=f"127.0.0.1:{self.stack.http_port}",
            advanced=advanced(self.tls),
        )

    @property
    def faults(self) -> Faults:
        return self.stack.proxy.faults

    def roots(self) -> list[x509.Certificate]:
        if self._root is None:
            self._root = x509.load_pem_x509_certificate(self.stack.pebble.root_pem().encode())
        return [self._root]

    def placed(self) -> int:
        return self.stack.proxy.orders_placed

    def knows(self, serial: int) -> bool:
        return self.stack.pebble.cert_status(serial).get("Status") == "Valid"

    def is_revoked(self, serial: int) -> bool:
        return self.stack.pebble.cert_status(serial).get("Status") == "Revoked"

    def hold_pending(self) -> None:
        self.stack.proxy.hold_processing = True

    @staticmethod
    def short_deadline(ca: RemoteCA) -> None:
        """ "Pending" for ACME is an order the CA is still processing at the deadline: make that come soon."""
        ca.settings = dataclasses.replace(ca.settings, order_deadline_s=0.5)  # type: ignore[attr-defined]

    def release_pending(self, ca_order_id: str) -> None:
        self.stack.proxy.hold_processing = False

    def deny(self, ca: RemoteCA, request: IssueRequest) -> IssueResult:
        from certfleet.pki.csr import build_csr, csr_to_pem
        from certfleet.pki.keys import KeySpec, generate_private_key

        csr = csr_to_pem(build_csr(generate_private_key(KeySpec.parse("ec-p256")), "blocked.example.test"))
        return ca.issue(request.model_copy(update={"csr_pem": csr}))

    def aim_faults_at_orders(self) -> None:
        self.faults.applies_to = lambda r: r.method == "POST" and r.path.startswith("/order-plz")
