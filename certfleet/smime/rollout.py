"""S/MIME rollout steps for one user, each its own unit of work so each can be retried on its own:

1. `open_order`: the order row is written first (idempotency key), then the key and the CSR (the address as
   rfc822Name SAN; the CA adds emailProtection and digitalSignature + keyEncipherment for RSA keys): CSR Pending.
2. `issue`: the CA connector issues with its S/MIME profile: Certificate Issued, Expiry Date filled.
3. `deliver`: a PKCS#12 (leaf, chain, key) under a generated password is written to a per-user folder of the
   delivery directory (`<dir>/<address>/<address>.p12`, the password beside it in `password.txt`, both mode
   0600, written to a temporary name and renamed): Certificate Installed; the stored key is dropped.
A re-run finds the user's open order and carries on from its state; it never orders twice.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC
from pathlib import Path

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certfleet.connectors.base import IssueRequest, Profile
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.models import repo
from certfleet.models.orm import CAConnector, DirectoryProfile, SmimeOrder, SmimeStatus, SmimeUser
from certfleet.pki.bundle import to_pkcs12
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.keys import (
    DEFAULT_KEY_SPEC,
    KeySpec,
    generate_private_key,
    key_spec_of,
    load_private_key,
    private_key_to_pem,
)
from certfleet.pki.parse import load_material, serial_hex
from certfleet.smime.selection import UserFilter, users_query

FAILED = "Failed"
OPEN_STATES = (SmimeStatus.CSR_PENDING.value, SmimeStatus.CERTIFICATE_ISSUED.value)
CN_MAX = 64  # X.509 upper bound for a common name


def users_to_order(
    session: Session, user_ids: list[int] | None, user_filter: UserFilter | None = None, *, renewal: bool = False
) -> list[int]:
    """Users awaiting an order (or with an order left open by an earlier run), not ignored, still in the directory;
    narrowed to `user_ids` and the filter. A renewal also takes the named users whose certificate is installed."""
    return list(session.scalars(users_query(user_ids, user_filter, renewal=renewal)))


def connector_for(session: Session, user: SmimeUser, ca_connector_id: int | None) -> CAConnector:
    """The chosen connector, else the user's profile's, else the built-in CA."""
    if ca_connector_id is None and user.profile_id is not None:
        ca_connector_id = session.scalar(
            select(DirectoryProfile.ca_connector_id).where(DirectoryProfile.id == user.profile_id)
        )
    if ca_connector_id is not None:
        connector = repo.get(session, CAConnector, ca_connector_id)
    else:
        found = session.scalar(select(CAConnector).where(CAConnector.kind == "local").order_by(CAConnector.id))
        if found is None:
            raise PermanentConnectorError("no CA connector is chosen and there is no built-in CA")
        connector = found
    if connector.kind != "local":
        raise PermanentConnectorError(
            f"CA connector {connector.name} ({connector.kind}): this version orders S/MIME certificates only from "
            "the built-in CA"
        )
    return connector


def open_order(session: Session, user_id: int, ca_connector_id: int | None) -> int:
    """The user's open order, or a new order row (committed by the caller before any key exists)."""
    user = repo.get(session, SmimeUser, user_id)
    existing = session.scalar(
        select(SmimeOrder).where(SmimeOrder.user_id == user_id, SmimeOrder.state.in_(OPEN_STATES))
    )
    if existing is not None:
        return existing.id
    connector = connector_for(session, user, ca_connector_id)
    generation = session.scalar(select(func.count(SmimeOrder.id)).where(SmimeOrder.user_id == user_id)) or 0
    order = SmimeOrder(
        user_id=user_id,
        ca_connector_id=connector.id,
        idempotency_key=f"smime-{user_id}-gen-{generation + 1}",
        state=SmimeStatus.CSR_PENDING.value,
    )
    session.add(order)
    session.flush()
    return order.id


def previous_key_spec(session: Session, order: SmimeOrder) -> KeySpec | None:
    """The key type of the user's newest certificate before this order (what a renewal keeps)."""
    pem = session.scalar(
        select(SmimeOrder.pem_chain)
        .where(SmimeOrder.user_id == order.user_id, SmimeOrder.id < order.id, SmimeOrder.pem_chain.is_not(None))
        .order_by(SmimeOrder.id.desc())
        .limit(1)
    )
    return key_spec_of(load_material(pem.encode()).certificates[0].public_key()) if pem else None


def make_csr(session: Session, order_id: int, key_spec: KeySpec | None = None, *, renewal: bool = False) -> None:
    """Key and CSR for an order that has none yet: the address as rfc822Name SAN (and CN when it fits). A renewal
    keeps the key type of the certificate it replaces."""
    order = repo.get(session, SmimeOrder, order_id)
    user = repo.get(session, SmimeUser, order.user_id)
    if not order.csr_pem:
        if renewal:
            key_spec = previous_key_spec(session, order) or key_spec
        key = generate_private_key(key_spec or DEFAULT_KEY_SPEC)
        common_name = user.email if len(user.email) <= CN_MAX else ""
        order.csr_pem = csr_to_pem(build_csr(key, common_name, [user.email]))
        order.private_key = private_key_to_pem(key)
    if order.state == SmimeStatus.CSR_PENDING.value:
        user.status = SmimeStatus.CSR_PENDING


def issue(session: Session, order_id: int) -> None:
    from certfleet.tasks.build import build_ca  # the connector factory (the built-in CA reads its key from the DB)

    order = repo.get(session, SmimeOrder, order_id)
    if order.pem_chain:
        return
    if order.state not in OPEN_STATES:  # cancelled: the user was revoked while this run waited
        raise PermanentConnectorError(f"S/MIME order {order_id} is {order.state}: nothing to issue")
    if not order.csr_pem:
        raise PermanentConnectorError(f"S/MIME order {order_id} has no CSR")
    ca = build_ca(session, repo.get(session, CAConnector, order.ca_connector_id))
    result = ca.issue(IssueRequest(csr_pem=order.csr_pem, profile=Profile.SMIME, idempotency_key=order.idempotency_key))
    if result.pem_chain is None:
        raise PermanentConnectorError(f"the CA did not issue S/MIME order {order_id} at once")
    leaf = load_material(result.pem_chain.encode()).certificates[0]
    order.pem_chain = result.pem_chain
    order.serial_number = serial_hex(leaf.serial_number)
    order.expires_on = leaf.not_valid_after_utc.astimezone(UTC)
    order.not_before = leaf.not_valid_before_utc.astimezone(UTC)
    order.state = SmimeStatus.CERTIFICATE_ISSUED.value
    user = repo.get(session, SmimeUser, order.user_id)
    user.status = SmimeStatus.CERTIFICATE_ISSUED
    user.expires_on = order.expires_on


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def user_folder(delivery_dir: Path, email: str) -> Path:
    if "/" in email or "\\" in email or email.startswith("."):
        raise PermanentConnectorError(f"{email!r} cannot name a folder")
    return delivery_dir / email


def deliver(session: Session, order_id: int, delivery_dir: Path) -> str:
    """Write the PKCS#12 and its password to the user's folder; returns the PKCS#12's path."""
    order = repo.get(session, SmimeOrder, order_id)
    user = repo.get(session, SmimeUser, order.user_id)
    if order.state == SmimeStatus.CERTIFICATE_INSTALLED.value and order.delivered_to:
        return order.delivered_to
    if not order.pem_chain or order.private_key is None:
        raise PermanentConnectorError(f"S/MIME order {order_id} has no certificate and key to deliver")
    certs: list[x509.Certificate] = load_material(order.pem_chain.encode()).certificates
    key = load_private_key(order.private_key, trusted=True)
    password = secrets.token_urlsafe(18)
    bundle = to_pkcs12(key, certs, password.encode(), friendly_name=user.email)
    folder = user_folder(delivery_dir, user.email)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    p12 = folder / f"{user.email}.p12"
    _write_private(folder / "password.txt", password.encode() + b"\n")
    _write_private(p12, bundle)
    order.delivered_to = str(p12)
    order.private_key = None  # delivered: certfleet keeps no copy of the user's key
    order.state = SmimeStatus.CERTIFICATE_INSTALLED.value
    user.status = SmimeStatus.CERTIFICATE_INSTALLED
    user.expires_on = order.expires_on
    user.renewal_attempts, user.renewal_next_attempt_at = 0, None  # renewed (or first delivered): no retry pending
    repo.audit(session, actor="flow:smime-rollout", action="deliver-smime", obj=user, detail=str(p12))
    return str(p12)


def fail(session: Session, user_id: int, message: str) -> None:
    order = session.scalar(select(SmimeOrder).where(SmimeOrder.user_id == user_id, SmimeOrder.state.in_(OPEN_STATES)))
    if order is not None:
        order.error = message
    user = repo.get(session, SmimeUser, user_id)
    repo.audit(session, actor="flow:smime-rollout", action="smime-rollout", obj=user, outcome="failure",
               detail=message[:500])  # fmt: skip
