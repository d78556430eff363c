"""Ordering a certificate: write the order, call the CA, poll it, record what it issued."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cryptography import x509
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, defer, selectinload

from certfleet.connectors.base import CertificateAuthority, IssueRequest, IssueResult, Profile
from certfleet.connectors.ca.local import LocalCA
from certfleet.connectors.errors import OrderStillPending, PermanentConnectorError
from certfleet.inventory.record import trust_store
from certfleet.inventory.served import keep_served_before_reissue
from certfleet.inventory.trust import TrustStore
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector, CAType, Certificate, CertificateStatus, Order, OrderState, utcnow
from certfleet.pki.bundle import key_matches_certificate
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.keys import KeySpec, generate_private_key, load_private_key, private_key_to_pem
from certfleet.pki.parse import describe, load_material, stored_chain
from certfleet.pki.policy import vulnerability_reasons
from certfleet.renewal import ari
from certfleet.settings import get_settings
from certfleet.tasks.build import build_ca
from certfleet.tasks.retry import backoff_with_jitter, retry_if_transient

ACTOR = "flow:issue-certificate"
_BASE_DELAY = get_settings().retry_base_delay_s


@dataclass(frozen=True)
class OrderPlan:
    """What a new order of a certificate needs, read in one transaction; its key and CSR are made outside it."""

    certificate_id: int
    ca_connector_id: int
    common_name: str
    sans: list[str]
    organization: str | None
    spec: KeySpec


@dataclass(frozen=True)
class Draft:
    """A new order's key and CSR, made outside any transaction."""

    plan: OrderPlan
    csr_pem: str
    private_key: bytes


@task(cache_policy=NO_CACHE, task_run_name="create-order-cert-{certificate_id}")
def create_order(certificate_id: int) -> int:
    """Write the order (key, CSR, idempotency key) before any CA is called; reuse one still under way."""
    with session_scope() as s:
        cert = repo.get(s, Certificate, certificate_id)
        plan = _plan_order(s, cert, repo.open_order_for(s, certificate_id))
    if isinstance(plan, int):
        return plan
    draft = draft_order(plan)
    with session_scope() as s:
        return write_orders(s, [draft])[certificate_id]


def plan_orders(s: Session, certificate_ids: list[int]) -> dict[int, int | OrderPlan | Exception]:
    """`create_order`'s first step for many certificates, in three queries: by certificate, the open order to reuse,
    or what a new one needs, or why none may be placed."""
    certs = {
        c.id: c
        for c in s.scalars(
            select(Certificate).where(Certificate.id.in_(certificate_ids)).options(defer(Certificate.private_key))
        )
    }
    open_orders = repo.open_orders_for(s, certificate_ids)
    # Held here: the session's identity map keeps rows only while something refers to them, so each certificate
    # would read its connector again.
    connector_ids = {c.ca_connector_id for c in certs.values() if c.ca_connector_id is not None}
    _held = list(s.scalars(select(CAConnector).where(CAConnector.id.in_(connector_ids))))
    plans: dict[int, int | OrderPlan | Exception] = {}
    for certificate_id in certificate_ids:
        try:
            cert = certs.get(certificate_id)
            if cert is None:
                raise repo.NotFound(f"Certificate {certificate_id} does not exist")
            plans[certificate_id] = _plan_order(s, cert, open_orders.get(certificate_id))
        except Exception as exc:  # refused alone, as its create_order would be
            plans[certificate_id] = exc
    return plans


def _plan_order(s: Session, cert: Certificate, open_order: Order | None) -> int | OrderPlan:
    if open_order is not None:
        return open_order.id
    if cert.status is CertificateStatus.IGNORED:
        raise PermanentConnectorError(f"certificate {cert.id} is ignored; un-ignore it to order")
    connector = repo.active_connector(s, cert.ca_connector_id)
    return OrderPlan(
        cert.id, connector.id, cert.common_name, list(cert.sans), cert.organization, KeySpec.parse(cert.key_spec)
    )


def draft_order(plan: OrderPlan) -> Draft:
    """Key generation is CPU work (RSA-2048 ~40 ms): never inside an open transaction."""
    key = generate_private_key(plan.spec)
    try:
        csr = build_csr(key, plan.common_name, plan.sans, organization=plan.organization)
    except CertificateFormatError as exc:
        raise PermanentConnectorError(f"certificate {plan.certificate_id}: {exc}") from exc
    return Draft(plan, csr_to_pem(csr), private_key_to_pem(key))


def write_orders(s: Session, drafts: list[Draft]) -> dict[int, int]:
    """New orders (one per certificate) in the caller's transaction, in one statement; their ids by certificate."""
    ids = [d.plan.certificate_id for d in drafts]
    certs = {
        c.id: c
        for c in s.scalars(select(Certificate).where(Certificate.id.in_(ids)).options(defer(Certificate.private_key)))
    }
    orders = [_new_order(certs[d.plan.certificate_id], d) for d in drafts]
    # The rows are the orders' columns that were set (the unit of work would insert them one at a time).
    columns = set(inspect(Order).column_attrs.keys())
    rows = [{key: value for key, value in inspect(order).dict.items() if key in columns} for order in orders]
    added = {
        certificate_id: i for (certificate_id,), i in repo.insert_ids(s, Order, rows, Order.certificate_id).items()
    }
    with repo.audits_together(s):
        for order in orders:
            order.id = added[order.certificate_id]  # the audit event names it
            _audit_created(s, order)
    return added


def _new_order(cert: Certificate, draft: Draft) -> Order:
    """The order of a draft, not in the session (`write_orders` inserts it); its certificate Initiated."""
    order = Order(
        certificate_id=cert.id,
        ca_connector_id=draft.plan.ca_connector_id,
        idempotency_key=f"cert-{cert.id}-gen-{cert.order_generation + 1}",
        csr_pem=draft.csr_pem,
        private_key=draft.private_key,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
    )
    repo.note_order(order, OrderState.CREATED, f"CSR for {cert.common_name} with {draft.plan.spec}")
    cert.status = CertificateStatus.INITIATED
    cert.status_reason = None
    return order


def _audit_created(s: Session, order: Order) -> None:
    repo.audit(s, actor=ACTOR, action="create-order", obj=order, detail=f"certificate {order.certificate_id}")


@task(
    cache_policy=NO_CACHE,
    task_run_name="submit-order-{order_id}",
    retries=4,
    retry_delay_seconds=backoff_with_jitter(_BASE_DELAY, 4),
    retry_condition_fn=retry_if_transient,
)
def submit_order(order_id: int) -> bool:
    """Send the order to the CA once. Returns True when issued at once, False when the CA will issue later."""
    with session_scope() as s:
        request = _submission(s, repo.get(s, Order, order_id))
    if isinstance(request, bool):
        return request
    try:
        with session_scope() as s:  # the local CA writes in the same unit of work
            ca = build_ca(s, repo.get(s, Order, order_id).ca_connector)
            result = ca.issue(request)
    except PermanentConnectorError as exc:
        _fail_order(order_id, str(exc))
        raise
    return _record_result(order_id, result)


def _submission(s: Session, order: Order) -> bool | IssueRequest:
    """The request to send, the order noted Submitted (committed before the CA is called); or True when it was
    issued already, False when the CA has it pending."""
    if order.state is OrderState.ISSUED:
        return True
    if order.state is OrderState.PENDING:
        return False
    cert = order.certificate
    request = IssueRequest(
        csr_pem=order.csr_pem,
        profile=Profile(cert.profile),
        validity_days=cert.validity_days,
        idempotency_key=order.idempotency_key,
        replaces=replaced_cert_id(s, order),
    )
    repo.note_order(order, OrderState.SUBMITTED, "sent to the CA")
    return request


@dataclass(frozen=True)
class Submitted:
    """An order of a group noted Submitted: what to send to which CA connector."""

    order_id: int
    ca_connector_id: int
    request: IssueRequest


def note_submitted(order_ids: list[int]) -> dict[int, bool | Submitted]:
    """`submit_order`'s first step for many orders in one transaction, committed before any CA is called."""
    with session_scope() as s:
        orders = _orders(s, order_ids, order_key=False)
        out: dict[int, bool | Submitted] = {}
        for order_id in order_ids:
            request = _submission(s, orders[order_id])
            if isinstance(request, bool):
                out[order_id] = request
            else:
                out[order_id] = Submitted(order_id, orders[order_id].ca_connector_id, request)
        return out


class CaCalls:
    """A group's calls to its CAs, from several threads. The built-in CA is built once (its keys are created and
    committed on first use; it writes nothing when it issues); a remote CA is built per call, as `submit_order`
    builds it (its order journal writes in sessions of its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: dict[int, CertificateAuthority] = {}

    def issue(self, submitted: Submitted) -> IssueResult:
        built = self._built.get(submitted.ca_connector_id)
        if built is not None:  # the built-in CA, built by an earlier call of the group
            return built.issue(submitted.request)
        with session_scope() as s:
            connector = repo.get(s, CAConnector, submitted.ca_connector_id)
            if connector.kind != LocalCA.kind:
                return build_ca(s, connector).issue(submitted.request)
            with self._lock:
                ca = self._built.get(connector.id)
                if ca is None:
                    ca = self._built[connector.id] = build_ca(s, connector)
        return ca.issue(submitted.request)


def record_results(results: dict[int, IssueResult | PermanentConnectorError]) -> dict[int, bool]:
    """What the CA answered for many orders, in one transaction: `_record_result`'s effects for an answer,
    `_fail_order`'s for a refusal. By order: issued (True), else pending or failed (False)."""
    if not results:
        return {}
    with session_scope() as s:
        orders = _orders(s, list(results), order_key=False)
        out: dict[int, bool] = {}
        for order_id, result in results.items():
            if isinstance(result, PermanentConnectorError):
                _mark_failed(s, orders[order_id], str(result))
                out[order_id] = False
            else:
                out[order_id] = _apply_result(orders[order_id], result)
        return out


def _orders(s: Session, order_ids: list[int], *, order_key: bool = True) -> dict[int, Order]:
    """Orders with their certificates. The certificates' private keys are not loaded (each one loaded is a
    decryption), nor the orders' unless `order_key`."""
    query = select(Order).where(Order.id.in_(order_ids))
    if not order_key:
        query = query.options(defer(Order.private_key))
    rows = s.scalars(query.options(selectinload(Order.certificate).defer(Certificate.private_key)))
    orders = {o.id: o for o in rows}
    missing = [i for i in order_ids if i not in orders]
    if missing:
        raise repo.NotFound(f"Order {missing[0]} does not exist")
    return orders


@task(
    cache_policy=NO_CACHE,
    task_run_name="poll-order-{order_id}",
    retries=30,
    retry_delay_seconds=backoff_with_jitter(_BASE_DELAY, 30, cap=600),
    retry_condition_fn=retry_if_transient,
)
def poll_order(order_id: int) -> None:
    """Ask the CA about a pending order; raising OrderStillPending makes Prefect ask again later."""
    with session_scope() as s:
        order = repo.get(s, Order, order_id)
        if order.state is OrderState.ISSUED:
            return
        if order.ca_order_id is None:
            raise PermanentConnectorError(f"order {order_id} is pending but has no CA order id")
        ca_order_id = order.ca_order_id
    try:
        with session_scope() as s:
            result = build_ca(s, repo.get(s, Order, order_id).ca_connector).status(ca_order_id)
    except PermanentConnectorError as exc:
        _fail_order(order_id, str(exc))
        raise
    if not _record_result(order_id, result):
        raise OrderStillPending(f"order {ca_order_id} is still pending at the CA")


def _record_result(order_id: int, result: IssueResult) -> bool:
    with session_scope() as s:
        return _apply_result(repo.get(s, Order, order_id), result)


def _apply_result(order: Order, result: IssueResult) -> bool:
    order.ca_order_id = result.ca_order_id or order.ca_order_id
    cert = order.certificate
    cert.ca_order_id = order.ca_order_id
    cert.dcv_status = result.dcv_status or cert.dcv_status
    cert.validation_status = result.validation_status or cert.validation_status
    if result.pem_chain is None:
        repo.note_order(order, OrderState.PENDING, f"CA order {order.ca_order_id}")
        cert.status = CertificateStatus.ORDER_PENDING
        return False
    order.pem_chain = result.pem_chain
    repo.note_order(order, OrderState.ISSUED, "certificate received")
    return True


def _fail_order(order_id: int, reason: str) -> None:
    with session_scope() as s:
        _mark_failed(s, repo.get(s, Order, order_id), reason)


def _mark_failed(s: Session, order: Order, reason: str) -> None:
    order.error = reason
    repo.note_order(order, OrderState.FAILED, reason)
    order.certificate.status_reason = f"order failed: {reason}"
    repo.audit(s, actor=ACTOR, action="order", obj=order, outcome="failure", detail=reason)


@task(cache_policy=NO_CACHE, task_run_name="record-issued-{order_id}")
def record_issued(order_id: int) -> str:
    """Check what the CA sent against the CSR, then make it the certificate's current one."""
    with session_scope() as s:
        order = repo.get(s, Order, order_id)
        return _take_issued(s, order, trust_store(s), _check_issued(order))


def record_issued_all(order_ids: list[int]) -> dict[int, str | PermanentConnectorError]:
    """`record_issued` for many orders in one transaction, the trust store read once: by order, its serial or why
    what the CA sent was refused (checked before anything is written, so a refusal changes nothing). Anything
    else raised rolls the whole transaction back: the caller then records each order on its own."""
    if not order_ids:
        return {}
    with session_scope() as s:
        orders = _orders(s, order_ids)
        store = trust_store(s)  # before any change: its query flushes nothing
        out: dict[int, str | PermanentConnectorError] = {}
        chains: dict[int, list[x509.Certificate]] = {}
        for order_id in order_ids:
            try:
                chains[order_id] = _check_issued(orders[order_id])
            except PermanentConnectorError as exc:
                out[order_id] = exc
        with repo.audits_together(s):
            for order_id, chain in chains.items():
                out[order_id] = _take_issued(s, orders[order_id], store, chain)
        return out


def _check_issued(order: Order) -> list[x509.Certificate]:
    """The CA's chain, readable and its leaf for the key of the order's CSR."""
    if order.pem_chain is None or order.private_key is None:
        raise PermanentConnectorError(f"order {order.id} holds no issued certificate")
    try:
        chain = list(stored_chain(order.pem_chain))
    except CertificateFormatError as exc:
        raise PermanentConnectorError(f"the CA sent an unreadable certificate: {exc}") from exc
    key = load_private_key(order.private_key, trusted=True)
    if not key_matches_certificate(key, chain[0]):
        raise PermanentConnectorError("the CA issued a certificate for another key than the CSR's")
    return chain


def _take_issued(s: Session, order: Order, store: TrustStore, chain: list[x509.Certificate]) -> str:
    assert order.pem_chain is not None  # _check_issued said so
    assert order.private_key is not None
    serial = make_current(s, order.certificate, order.pem_chain, order.private_key, store, chain)
    order.private_key = None  # one encrypted copy is enough
    order.serial_number = serial
    return serial


def replaced_cert_id(s: Session, order: Order) -> str | None:
    """The ARI CertID (RFC 9773) of the certificate this order renews: the row's current one, if this same CA
    connector issued it through certfleet (a CA refuses to replace another CA's certificate)."""
    cert = order.certificate
    if not cert.pem_chain or not cert.serial_number:
        return None
    ours = s.scalar(
        select(Order.id).where(
            Order.certificate_id == cert.id,
            Order.ca_connector_id == order.ca_connector_id,
            Order.serial_number == cert.serial_number,
            Order.id != order.id,
        )
    )
    if ours is None:
        return None
    try:
        return ari.cert_id(load_material(cert.pem_chain.encode()).certificates[0])
    except (ari.AriError, CertificateFormatError, IndexError):
        return None


def make_current(
    s: Session,
    cert: Certificate,
    pem_chain: str,
    private_key: bytes,
    store: TrustStore | None = None,
    chain: list[x509.Certificate] | None = None,
) -> str:
    """An issued chain (its key checked by the caller) becomes the certificate's current one, with every fact the
    inventory shows and discovery matches by (serial, thumbprints, dates, trust); returns the serial. `chain`:
    `pem_chain` parsed already by the caller."""
    if chain is None:
        chain = list(stored_chain(pem_chain))
    leaf = chain[0]
    info = describe(leaf)
    keep_served_before_reissue(s, cert)  # the previous one stays the live one until the new one is proven
    cert.pem_chain = pem_chain
    cert.private_key = private_key
    cert.serial_number = info.serial_number
    cert.sans = info.sans
    cert.issuer_ca = info.issuer_common_name or info.issuer
    # Public only when the chain verifies to a root the system trusts (AD CS, emCA, the built-in CA
    # and any CA under a private root are Private), the same rule discovery applies.
    verdict = (store or trust_store(s)).classify(chain)
    cert.ca_type = verdict.ca_type
    cert.trust_anchor = verdict.anchor[:255] if verdict.anchor else None
    cert.signature_algorithm = info.signature_algorithm
    cert.not_before = info.not_before
    cert.expires_on = info.not_after
    cert.key_type = info.key_type
    cert.key_size = info.key_size
    cert.sha1_thumbprint = info.sha1_thumbprint
    cert.sha256_thumbprint = info.sha256_thumbprint
    reasons = vulnerability_reasons(leaf, publicly_trusted=cert.ca_type is CAType.PUBLIC, info=info)
    cert.vulnerable = bool(reasons)
    cert.vulnerability_reasons = reasons
    cert.issued_on = utcnow()
    cert.order_generation += 1
    cert.renewal_attempts = 0  # a renewal that issued is done; its backoff starts over next time
    cert.renewal_next_attempt_at = None
    cert.status = CertificateStatus.ISSUED
    cert.status_reason = None
    cert.revocation_reason = cert.revoked_at = None  # a new serial: what was revoked was the previous one
    repo.audit(s, actor=ACTOR, action="issue", obj=cert, detail=f"serial {info.serial_number}")
    return info.serial_number
