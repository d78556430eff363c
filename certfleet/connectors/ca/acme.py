"""ACME (RFC 8555) with certbot's `acme` library: one account per connector, http-01 or dns-01, EAB.

- The account key (EC P-256) is created on first use and handed to an `AccountStore`, which keeps it
  encrypted with the connector; the account URL is kept with it, so every order signs as the same account.
- External account binding (key id + base64url HMAC key) is sent when the connector has one; a CA that
  requires it and gets none says so, and that message is passed on.
- `issue` runs the whole order in one call: new order -> the solver presents every pending challenge ->
  answer -> poll the authorizations (50 ms loop, not the library's 1 s sleeps) -> finalize -> download.
  The order URL is recorded through the journal right after newOrder; a retry resumes that order
  (answering what is still pending) instead of placing another. Past its deadlines it raises a
  transient error and the retry resumes (an order whose validation was cut short usually ends invalid
  at the CA; the retry then places a new order, which costs nothing in ACME).
- The CA may create the order and the answer be lost (or the worker die) before the order URL is
  recorded. A retry whose earlier outcome is unknown first looks through the account's orders (RFC 8555
  section 7.1.2.1, the account's `orders` list) for an order still usable for the same identifiers:
  pending or ready (certfleet's CSR goes in at finalize), or valid with a certificate for the CSR's key.
  It adopts that order instead of placing another. A CA that lists no orders gets a new order.
- ACME Renewal Information (RFC 9773): where the directory has `renewalInfo`, `renewal_info` fetches the
  suggested window of a certificate (certfleet.renewal.ari), and a new order that renews a certificate names it
  in `replaces`; a CA that refuses the replacement (`alreadyReplaced`) gets the order without it.
- Transport: the library's requests session with `trust_env=False`, verified against the connector's
  CA bundle (REQUESTS_CA_BUNDLE would otherwise override it), throttled before every request.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

import requests
from acme import challenges, crypto_util, messages
from acme import client as acme_client
from acme import errors as acme_errors
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.errors import DeserializationError
from josepy.json_util import field as jose_field
from josepy.jwa import ES256
from josepy.jwk import JWK, JWKEC

from certfleet.connectors.base import RFC5280_REASON_CODES, IssueRequest, IssueResult
from certfleet.connectors.ca.acme_challenges import ChallengeSolver
from certfleet.connectors.ca.common import csr_names, pem_chain_from
from certfleet.connectors.ca.http import RateLimited, retry_after_seconds
from certfleet.connectors.ca.journal import MemoryOrderJournal, OrderJournal
from certfleet.connectors.errors import (
    AlreadyRevoked,
    ConnectorError,
    PermanentConnectorError,
    TransientConnectorError,
)
from certfleet.pki.parse import serial_hex
from certfleet.renewal import ari

CA_NAME = "ACME CA"
USER_AGENT = "certfleet-acme"

_TRANSIENT_CODES = {"rateLimited", "serverInternal", "badNonce"}
MAX_ORDER_LIST_PAGES = 10  # pages of the account's orders list read when reconciling
MAX_ORDERS_LOOKED_AT = 50  # the newest orders of that list fetched one by one


@dataclass(frozen=True)
class AcmeAccount:
    key_pem: str
    uri: str

    def __repr__(self) -> str:
        return f"AcmeAccount(uri={self.uri!r})"


class AccountStore(Protocol):
    def load(self) -> AcmeAccount | None: ...

    def save(self, account: AcmeAccount) -> None: ...


@dataclass
class MemoryAccountStore:
    account: AcmeAccount | None = None

    def load(self) -> AcmeAccount | None:
        return self.account

    def save(self, account: AcmeAccount) -> None:
        self.account = account


@dataclass(frozen=True)
class AcmeSettings:
    directory_url: str
    contact_email: str | None = None
    eab_kid: str | None = None
    eab_hmac_key: str | None = None
    timeout_s: float = 30.0
    validation_deadline_s: float = 90.0  # how long the CA may take to validate the challenges
    order_deadline_s: float = 90.0  # then, how long it may take to issue
    poll_interval_s: float = 0.05

    def __repr__(self) -> str:  # the HMAC key is a secret
        return f"AcmeSettings(directory_url={self.directory_url!r}, eab_kid={self.eab_kid!r})"


class _ThrottledNetwork(acme_client.ClientNetwork):
    """The library's network layer, calling our throttle before each request."""

    def __init__(self, key: JWK, throttle: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(key, **kwargs)
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE must not override our verify=
        self._throttle = throttle

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        self._throttle()
        return super()._send_request(method, url, *args, **kwargs)


_bundle_lock = threading.Lock()
_bundle_files: dict[str, str] = {}


def _bundle_path(ca_bundle_pem: str) -> str:
    """requests verifies against a file: one temp file per distinct bundle, removed at exit."""
    digest = hashlib.sha256(ca_bundle_pem.encode()).hexdigest()
    with _bundle_lock:
        path = _bundle_files.get(digest)
        if path is None or not os.path.exists(path):
            fd, path = tempfile.mkstemp(prefix="certfleet-acme-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as fh:
                fh.write(ca_bundle_pem)
            _bundle_files[digest] = path
            atexit.register(Path(path).unlink, missing_ok=True)
        return path


# One lock per account store key, so concurrent first orders of a connector register one account.
_account_locks: dict[str, threading.Lock] = {}
_account_locks_guard = threading.Lock()


def _account_lock(name: str) -> threading.Lock:
    with _account_locks_guard:
        return _account_locks.setdefault(name, threading.Lock())


class AcmeCA:
    kind: ClassVar[str] = "acme"

    def __init__(
        self,
        settings: AcmeSettings,
        solver: ChallengeSolver,
        accounts: AccountStore,
        journal: OrderJournal | None = None,
        *,
        ca_bundle_pem: str | None = None,
        throttle: Callable[[], None] | None = None,
        lock_name: str | None = None,
    ) -> None:
        self.settings = settings
        self.solver = solver
        self.accounts = accounts
        self.journal: OrderJournal = journal or MemoryOrderJournal()
        self.verify: bool | str = _bundle_path(ca_bundle_pem) if ca_bundle_pem and ca_bundle_pem.strip() else True
        self.throttle = throttle or (lambda: None)
        self._lock_name = lock_name or settings.directory_url
        self._client: acme_client.ClientV2 | None = None

    # -- the protocol ------------------------------------------------------------------------------------

    def issue(self, request: IssueRequest) -> IssueResult:
        csr_names(request.csr_pem)  # a broken CSR is reported as ours before the CA sees it
        prior = self.journal.prior(request.idempotency_key)
        with _acme_errors():
            client = self.client()
            orderr = self._resume(client, prior.ca_order_id, request.csr_pem) if prior.ca_order_id else None
            if orderr is None and prior.unknown:
                found = self.find_order(client, request.csr_pem)
                if found is not None:
                    self.journal.placed(request.idempotency_key, found)
                    orderr = self._resume(client, found, request.csr_pem)
            if orderr is None:
                orderr = self._new_order(client, request.csr_pem, request.replaces)
                if not orderr.uri:
                    raise PermanentConnectorError("the ACME CA created an order without telling its URL")
                self.journal.placed(request.idempotency_key, orderr.uri)
            validation_deadline = time.monotonic() + self.settings.validation_deadline_s
            orderr = self._authorize(client, orderr, request.idempotency_key, validation_deadline)
            pem = self._finalize(client, orderr, time.monotonic() + self.settings.order_deadline_s)
        return IssueResult(ca_order_id=orderr.uri, pem_chain=pem, validation_status="Order valid", dcv_status="Valid")

    def status(self, ca_order_id: str) -> IssueResult:
        with _acme_errors():
            client = self.client()
            body = messages.Order.from_json(_post_as_get(client, ca_order_id).json())
            if body.status == messages.STATUS_VALID and body.certificate:
                pem = self._download(client, body.certificate)
                return IssueResult(ca_order_id=ca_order_id, pem_chain=pem, validation_status="Order valid",
                                   dcv_status="Valid")  # fmt: skip
            if body.status == messages.STATUS_INVALID:
                raise PermanentConnectorError(f"ACME order {ca_order_id} is invalid: {_problem(body.error)}")
            # pending: authorizations not all valid yet; ready/processing: they are, finalization is under way
            pending = body.status == messages.STATUS_PENDING
            return IssueResult(ca_order_id=ca_order_id, validation_status=f"Order {body.status}",
                               dcv_status="Pending" if pending else "Valid")  # fmt: skip

    def revoke(self, serial_number: int, reason: x509.ReasonFlags) -> None:
        known = self.journal.issued(serial_number)
        if known is None or not known.pem_chain:
            raise PermanentConnectorError(
                f"certfleet holds no certificate with serial {serial_hex(serial_number)} from this ACME CA"
            )
        leaf = x509.load_pem_x509_certificate(known.pem_chain.encode())
        with _acme_errors():
            try:
                self.client().revoke(leaf, RFC5280_REASON_CODES.get(reason, 0))  # takes every RFC 5280 code
            except messages.Error as exc:
                if exc.code == "alreadyRevoked":  # RFC 8555 section 7.6: a retry after the CA revoked it
                    raise AlreadyRevoked(f"{CA_NAME}: {_problem(exc)}") from exc
                raise

    def renewal_info(self, pem_chain: str, now: datetime) -> ari.RenewalInfo | None:
        """The CA's suggested renewal window for the chain's leaf; None when the directory has no renewalInfo.
        AriError, or a connector error, when the CA answers something unusable."""
        leaf = x509.load_pem_x509_certificate(pem_chain.encode())
        certificate_id = ari.cert_id(leaf)
        with _acme_errors():
            client = self.client()
            base = _renewal_info_url(client)
            if base is None:
                return None
            self.throttle()
            # An unauthenticated GET (RFC 9773 section 4.3); the library's session verifies against our bundle.
            response = client.net.session.get(
                f"{base.rstrip('/')}/{certificate_id}", verify=self.verify, timeout=self.settings.timeout_s
            )
            if response.status_code != 200:
                raise ari.AriError(f"{CA_NAME} answered HTTP {response.status_code} for renewalInfo {certificate_id}")
            try:
                body = response.json()
            except ValueError:
                raise ari.AriError(f"{CA_NAME} sent renewalInfo that is not JSON") from None
            return ari.parse(body, response.headers.get("Retry-After"), now)

    def check_credentials(self) -> str:
        """Fetch the directory and log in with the account (registering it on first use); orders nothing."""
        with _acme_errors():
            client = self.client()
            assert client.net.account is not None
            client.query_registration(client.net.account)
            return f"authenticated to the ACME CA as account {client.net.account.uri}"

    # -- account -----------------------------------------------------------------------------------------

    def client(self) -> acme_client.ClientV2:
        if self._client is not None:
            return self._client
        with _account_lock(self._lock_name):
            account = self.accounts.load()
            key = (
                JWKEC(key=serialization.load_pem_private_key(account.key_pem.encode(), None))
                if account
                else JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
            )
            net = _ThrottledNetwork(
                key,
                self.throttle,
                alg=ES256,
                verify_ssl=self.verify,  # type: ignore[arg-type]  # requests takes a CA file path too
                user_agent=USER_AGENT,
                timeout=int(max(1, self.settings.timeout_s)),
            )
            directory = acme_client.ClientV2.get_directory(self.settings.directory_url, net)
            client = acme_client.ClientV2(directory, net)
            if account is not None:
                uri = account.uri
            else:
                uri = self._register(client, key)
                self.accounts.save(AcmeAccount(_key_pem(key), uri))
            # Only the account URL is needed to sign (kid); the registration body is not kept, as
            # re-sending one with an external account binding in it fails in the library.
            net.account = messages.RegistrationResource(body=messages.Registration(), uri=uri)
        self._client = client
        return client

    def _register(self, client: acme_client.ClientV2, key: JWK) -> str:
        eab = None
        if self.settings.eab_kid and self.settings.eab_hmac_key:
            try:
                eab = messages.ExternalAccountBinding.from_data(
                    key.public_key(), self.settings.eab_kid, self.settings.eab_hmac_key, client.directory
                )
            except (ValueError, TypeError) as exc:
                raise PermanentConnectorError(
                    "the external account binding HMAC key is not valid base64url; paste it as the CA gave it"
                ) from exc
        elif client.external_account_required():
            raise PermanentConnectorError(
                "this ACME CA requires external account binding: set the EAB key id and HMAC key the CA issued"
            )
        registration = messages.NewRegistration.from_data(
            email=self.settings.contact_email or None,
            terms_of_service_agreed=True,
            external_account_binding=eab,
        )
        try:
            regr = client.new_account(registration)
        except acme_errors.ConflictError as exc:  # the key already has an account: use it
            client.net.account = messages.RegistrationResource(body=messages.Registration(), uri=str(exc))
            return str(exc)
        return str(regr.uri)

    # -- order steps -------------------------------------------------------------------------------------

    def find_order(self, client: acme_client.ClientV2, csr_pem: str) -> str | None:
        """An order of this account an attempt whose answer was lost placed for the CSR's names, newest first."""
        assert client.net.account is not None
        account = _post_as_get(client, client.net.account.uri).json()
        url = account.get("orders") if isinstance(account, dict) else None
        wanted = _identifiers(csr_pem)
        public_key = x509.load_pem_x509_csr(csr_pem.encode()).public_key()
        urls: list[str] = []
        for _ in range(MAX_ORDER_LIST_PAGES):
            if not url:
                break
            response = _post_as_get(client, str(url))
            urls.extend(str(u) for u in response.json().get("orders") or [])
            url = response.links.get("next", {}).get("url")
        for order_url in reversed(urls[-MAX_ORDERS_LOOKED_AT:]):
            body = messages.Order.from_json(_post_as_get(client, order_url).json())
            if {(i.typ.name, i.value.lower()) for i in body.identifiers} != wanted:
                continue
            if body.status in (messages.STATUS_PENDING, messages.STATUS_READY):
                return order_url
            if body.status == messages.STATUS_VALID and body.certificate:
                leaf = x509.load_pem_x509_certificate(self._download(client, body.certificate).encode())
                if leaf.public_key() == public_key:
                    return order_url
        return None

    def _resume(self, client: acme_client.ClientV2, order_url: str, csr_pem: str) -> messages.OrderResource | None:
        """The order an earlier attempt placed, with its authorizations; None if it can no longer issue."""
        try:
            body = messages.Order.from_json(_post_as_get(client, order_url).json())
        except (messages.Error, acme_errors.ClientError) as exc:
            response = exc.args[0] if exc.args and isinstance(exc.args[0], requests.Response) else None
            gone = (response is not None and response.status_code == 404) or (
                isinstance(exc, messages.Error) and exc.code == "malformed" and "not found" in str(exc).lower()
            )
            if gone:
                return None  # the CA purged the order (orders expire): place a new one
            raise
        if body.status == messages.STATUS_INVALID:
            return None  # e.g. expired or failed validation: a new order is the only way on (ACME orders are free)
        authorizations = [
            messages.AuthorizationResource(
                body=messages.Authorization.from_json(_post_as_get(client, url).json()), uri=url
            )
            for url in body.authorizations
        ]
        return messages.OrderResource(body=body, uri=order_url, authorizations=authorizations, csr_pem=csr_pem.encode())

    def _authorize(
        self,
        client: acme_client.ClientV2,
        orderr: messages.OrderResource,
        order_key: str,
        deadline: float,
    ) -> messages.OrderResource:
        account_key = client.net.key
        assert account_key is not None
        pending = [a for a in orderr.authorizations if a.body.status == messages.STATUS_PENDING]
        presented: list[tuple[str, challenges.KeyAuthorizationChallenge]] = []
        try:
            for authzr in pending:
                domain = authzr.body.identifier.value
                challb = self._pick(authzr, domain)
                chall = challb.chall
                assert isinstance(chall, challenges.KeyAuthorizationChallenge)
                self.solver.present(order_key, domain, chall, account_key)
                presented.append((domain, chall))
            for authzr in pending:
                challb = self._pick(authzr, authzr.body.identifier.value)
                if challb.status == messages.STATUS_PENDING:
                    client.answer_challenge(challb, challb.chall.response(account_key))
            done = [self._wait(client, authzr, deadline) for authzr in orderr.authorizations]
        finally:
            for domain, chall in presented:
                with contextlib.suppress(ConnectorError):
                    self.solver.cleanup(order_key, domain, chall, account_key)
        failed = [a for a in done if a.body.status != messages.STATUS_VALID]
        if failed:
            raise PermanentConnectorError(
                "the ACME CA could not validate "
                + "; ".join(f"{a.body.identifier.value}: {_authz_problem(a)}" for a in failed)
            )
        updated: messages.OrderResource = orderr.update(authorizations=done)
        return updated

    def _pick(self, authzr: messages.AuthorizationResource, domain: str) -> messages.ChallengeBody:
        wanted = self.solver.challenge_type
        for challb in authzr.body.challenges:
            if challb.chall.typ == wanted:
                return challb
        offered = ", ".join(str(c.chall.typ) for c in authzr.body.challenges) or "none"
        hint = " (wildcard names need dns-01)" if authzr.body.wildcard else ""
        domain = f"*.{domain}" if authzr.body.wildcard else domain
        raise PermanentConnectorError(
            f"the ACME CA offers no {wanted} challenge for {domain}{hint}; it offers {offered}"
        )

    def _wait(
        self, client: acme_client.ClientV2, authzr: messages.AuthorizationResource, deadline: float
    ) -> messages.AuthorizationResource:
        while authzr.body.status in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
            if time.monotonic() > deadline:
                raise TransientConnectorError(
                    f"the ACME CA has not validated {authzr.body.identifier.value} yet; the order is kept and resumed"
                )
            time.sleep(self.settings.poll_interval_s)
            authzr, _ = client.poll(authzr)
        return authzr

    def _finalize(self, client: acme_client.ClientV2, orderr: messages.OrderResource, deadline: float) -> str:
        body = orderr.body
        finalized = False
        delay = self.settings.poll_interval_s
        while True:
            if body.status == messages.STATUS_VALID and body.certificate:
                return self._download(client, body.certificate)
            if body.status == messages.STATUS_INVALID:
                raise PermanentConnectorError(f"the ACME CA refused order {orderr.uri}: {_problem(body.error)}")
            if body.status == messages.STATUS_READY and not finalized:
                body = client.begin_finalization(orderr).body
                finalized = True
                continue
            if time.monotonic() > deadline:
                raise TransientConnectorError(
                    f"the ACME CA has not issued order {orderr.uri} yet; the order is kept and resumed"
                )
            time.sleep(delay)
            response = _post_as_get(client, str(orderr.uri))
            body = messages.Order.from_json(response.json())
            hint = retry_after_seconds(response.headers.get("Retry-After"))
            # Honour Retry-After while processing, but never sleep past a second: the deadline is ours.
            delay = min(hint, 1.0) if hint is not None else self.settings.poll_interval_s

    def _new_order(self, client: acme_client.ClientV2, csr_pem: str, replaces: str | None) -> messages.OrderResource:
        """newOrder; with `replaces` (RFC 9773 section 5) only where the CA offers renewalInfo."""
        if replaces is None or _renewal_info_url(client) is None:
            return client.new_order(csr_pem.encode())
        try:
            return _new_order_replacing(client, csr_pem, replaces)
        except messages.Error as exc:
            if exc.code != "alreadyReplaced":
                raise
            return client.new_order(csr_pem.encode())  # another order replaced it already: order plainly

    def _download(self, client: acme_client.ClientV2, url: str) -> str:
        return pem_chain_from(_post_as_get(client, url).text, ca=CA_NAME)


class _NewOrderReplacing(messages.NewOrder):
    """newOrder with RFC 9773's `replaces`: the CertID of the certificate this order renews."""

    replaces: str = jose_field("replaces", omitempty=True)


def _new_order_replacing(client: acme_client.ClientV2, csr_pem: str, replaces: str) -> messages.OrderResource:
    """The library's `new_order` (same identifiers from the CSR, same resource back) with `replaces` in it."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    dns_names, ip_addresses = crypto_util.get_identifiers_from_x509(csr.subject, csr.extensions)
    identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in dns_names] + [
        messages.Identifier(typ=messages.IDENTIFIER_IP, value=str(ip)) for ip in ip_addresses
    ]
    order = _NewOrderReplacing(identifiers=identifiers, replaces=replaces)
    response = client.net.post(client.directory["newOrder"], order, new_nonce_url=client.directory["newNonce"])
    body = messages.Order.from_json(response.json())
    authorizations = [
        messages.AuthorizationResource(body=messages.Authorization.from_json(_post_as_get(client, url).json()), uri=url)
        for url in body.authorizations
    ]
    return messages.OrderResource(
        body=body, uri=response.headers.get("Location"), authorizations=authorizations, csr_pem=csr_pem.encode()
    )


def _renewal_info_url(client: acme_client.ClientV2) -> str | None:
    try:
        url = client.directory["renewalInfo"]
    except KeyError:
        return None
    return url if isinstance(url, str) and url else None


def _post_as_get(client: acme_client.ClientV2, url: str) -> requests.Response:
    return client.net.post(url, None, new_nonce_url=client.directory["newNonce"])


def _identifiers(csr_pem: str) -> set[tuple[str, str]]:
    """The ACME identifiers `new_order` sends for this CSR (the library's own reading of it), lower case."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    dns_names, ip_addresses = crypto_util.get_identifiers_from_x509(csr.subject, csr.extensions)
    return {("dns", n.lower()) for n in dns_names} | {("ip", str(ip)) for ip in ip_addresses}


def _key_pem(key: JWK) -> str:
    private: Any = key.key  # josepy wraps the cryptography key; attribute access is delegated
    pem: bytes = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


def _problem(error: messages.Error | None) -> str:
    if error is None:
        return "no reason given"
    return f"{error.code or error.typ}: {error.detail or error.description or ''}".strip()


def _authz_problem(authzr: messages.AuthorizationResource) -> str:
    errors = [c.error for c in authzr.body.challenges if c.error is not None]
    return "; ".join(_problem(e) for e in errors) if errors else f"authorization {authzr.body.status}"


@contextlib.contextmanager
def _acme_errors() -> Iterator[None]:
    """Map the library's and requests' exceptions to certfleet's two kinds, keeping the CA's words."""
    try:
        yield
    except ConnectorError:
        raise
    except messages.Error as exc:
        text = f"{CA_NAME}: {_problem(exc)}"
        if exc.code == "rateLimited":
            raise RateLimited(text + "; will retry") from exc
        if exc.code in _TRANSIENT_CODES:
            raise TransientConnectorError(text + "; will retry") from exc
        if exc.code in ("unauthorized", "accountDoesNotExist", "externalAccountRequired"):
            raise PermanentConnectorError(text + "; check the account and external account binding") from exc
        raise PermanentConnectorError(text) from exc
    except acme_errors.TimeoutError as exc:
        raise TransientConnectorError(f"{CA_NAME} did not finish in time; will retry") from exc
    except acme_errors.ClientError as exc:
        response = exc.args[0] if exc.args and isinstance(exc.args[0], requests.Response) else None
        if response is not None:
            code = response.status_code
            text = f"{CA_NAME} answered HTTP {code} without an ACME problem document"
            if code == 429:
                raise RateLimited(text, retry_after_seconds(response.headers.get("Retry-After"))) from exc
            if code >= 500 or code == 408:
                raise TransientConnectorError(text + "; will retry") from exc
            raise PermanentConnectorError(text) from exc
        raise PermanentConnectorError(f"{CA_NAME}: {exc}") from exc
    except requests.exceptions.SSLError as exc:
        raise PermanentConnectorError(
            f"{CA_NAME}: the HTTPS certificate of the ACME server is not trusted ({exc.__class__.__name__}); "
            "set the connector's TLS CA bundle"
        ) from exc
    except requests.exceptions.Timeout as exc:
        raise TransientConnectorError(f"{CA_NAME} did not answer in time; will retry") from exc
    except requests.exceptions.RequestException as exc:
        raise TransientConnectorError(f"{CA_NAME} could not be reached: {exc.__class__.__name__}") from exc
    except acme_errors.Error as exc:
        raise PermanentConnectorError(f"{CA_NAME}: {exc}") from exc
    except DeserializationError as exc:
        raise TransientConnectorError(f"{CA_NAME} sent an answer certfleet cannot read: {exc}") from exc
