"""Ordering a certificate: write the order, call the CA, poll it, record what it issued."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet.connectors.base import IssueRequest, IssueResult, Profile
from certfleet.connectors.errors import OrderStillPending, PermanentConnectorError
from certfleet.inventory.record import trust_store
from certfleet.inventory.served import keep_served_before_reissue
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import CAType, Certificate, CertificateStatus, Order, OrderState, utcnow
from certfleet.pki.bundle import key_matches_certificate
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.keys import KeySpec, generate_private_key, load_private_key, private_key_to_pem
from certfleet.pki.parse import describe, load_material
from certfleet.pki.policy import vulnerability_reasons
from certfleet.renewal import ari
from certfleet.settings import get_settings
from certfleet.tasks.build import build_ca
from certfleet.tasks.retry import backoff_with_jitter, retry_if_transient

ACTOR = "flow:issue-certificate"
_BASE_DELAY = get_settings().retry_base_delay_s


@task(cache_policy=NO_CACHE, task_run_name="create-order-cert-{certificate_id}")
def create_order(certificate_id: int) -> int:
    """Write the order (key, CSR, idempotency key) before any CA is called; reuse one still under way."""
    with session_scope() as s:
        cert = repo.get(s, Certificate, certificate_id)
        existing = repo.open_order_for(s, certificate_id)
        if existing is not None:
            return existing.id
        if cert.status is CertificateStatus.IGNORED:
            raise PermanentConnectorError(f"certificate {certificate_id} is ignored; un-ignore it to order")
        connector = repo.active_connector(s, cert.ca_connector_id)
        spec = KeySpec.parse(cert.key_spec)
    # Key generation is CPU work (RSA-2048 ~40 ms): keep it out of the open transaction.
    key = generate_private_key(spec)
    try:
        csr = build_csr(key, cert.common_name, cert.sans, organization=cert.organization)
    except CertificateFormatError as exc:
        raise PermanentConnectorError(f"certificate {certificate_id}: {exc}") from exc
    with session_scope() as s:
        cert = repo.get(s, Certificate, certificate_id)
        order = Order(
            certificate_id=certificate_id,
            ca_connector_id=connector.id,
            idempotency_key=f"cert-{certificate_id}-gen-{cert.order_generation + 1}",
            csr_pem=csr_to_pem(csr),
            private_key=private_key_to_pem(key),
            flow_run_id=str(flow_run.id) if flow_run.id else None,
        )
        repo.note_order(order, OrderState.CREATED, f"CSR for {cert.common_name} with {spec}")
        s.add(order)
        cert.status = CertificateStatus.INITIATED
        cert.status_reason = None
        s.flush()
        repo.audit(s, actor=ACTOR, action="create-order", obj=order, detail=f"certificate {certificate_id}")
        return order.id


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
        order = repo.get(s, Order, order_id)
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
    try:
        with session_scope() as s:  # the local CA writes in the same unit of work
            ca = build_ca(s, repo.get(s, Order, order_id).ca_connector)
            result = ca.issue(request)
    except PermanentConnectorError as exc:
        _fail_order(order_id, str(exc))
        raise
    return _record_result(order_id, result)


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
        order = repo.get(s, Order, order_id)
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
        order = repo.get(s, Order, order_id)
        order.error = reason
        repo.note_order(order, OrderState.FAILED, reason)
        order.certificate.status_reason = f"order failed: {reason}"
        repo.audit(s, actor=ACTOR, action="order", obj=order, outcome="failure", detail=reason)


@task(cache_policy=NO_CACHE, task_run_name="record-issued-{order_id}")
def record_issued(order_id: int) -> str:
    """Check what the CA sent against the CSR, then make it the certificate's current one."""
    with session_scope() as s:
        order = repo.get(s, Order, order_id)
        if order.pem_chain is None or order.private_key is None:
            raise PermanentConnectorError(f"order {order_id} holds no issued certificate")
        try:
            chain = load_material(order.pem_chain.encode()).certificates
        except CertificateFormatError as exc:
            raise PermanentConnectorError(f"the CA sent an unreadable certificate: {exc}") from exc
        leaf = chain[0]
        key = load_private_key(order.private_key, trusted=True)
        if not key_matches_certificate(key, leaf):
            raise PermanentConnectorError("the CA issued a certificate for another key than the CSR's")
        cert = order.certificate
        serial = make_current(s, cert, order.pem_chain, order.private_key)
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


def make_current(s: Session, cert: Certificate, pem_chain: str, private_key: bytes) -> str:
    """An issued chain (its key checked by the caller) becomes the certificate's current one, with every fact the
    inventory shows and discovery matches by (serial, thumbprints, dates, trust); returns the serial."""
    chain = load_material(pem_chain.encode()).certificates
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
    verdict = trust_store(s).classify(chain)
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
