"""S/MIME rollout steps for one user, each its own unit of work so each can be retried on its own:

1. `open_order`: the order row is written first (idempotency key), then the key and the CSR (the address as
   rfc822Name SAN; the CA adds emailProtection and digitalSignature + keyEncipherment for RSA keys): CSR Pending.
2. `issue`: the CA connector issues with its S/MIME profile: Certificate Issued, Expiry Date filled.
3. `package`: a PKCS#12 (leaf, chain, key) under a generated password, sealed on the order (the key column is
   emptied), so a retried delivery sends the same file and password.
4. delivery (certfleet.smime.senders) to the configured target (a folder, an SMB share or two e-mails), then
   `delivered`: Certificate Installed; the sealed PKCS#12 and password are dropped. A failed delivery leaves the
   user at Certificate Issued with the reason on the order; a re-run delivers without ordering again.
A re-run finds the user's open order and carries on from its state; it never orders twice.
"""

from __future__ import annotations

import secrets
from datetime import UTC

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certfleet.connectors.base import IssueRequest, Profile
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.models import repo
from certfleet.models.orm import CAConnector, DirectoryProfile, SmimeOrder, SmimeStatus, SmimeUser, utcnow
from certfleet.pki.bundle import to_pkcs12
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.keys import DEFAULT_KEY_SPEC, KeySpec, generate_private_key, load_private_key, private_key_to_pem
from certfleet.pki.parse import load_material, serial_hex
from certfleet.smime.senders import Parcel

FAILED = "Failed"
OPEN_STATES = (SmimeStatus.CSR_PENDING.value, SmimeStatus.CERTIFICATE_ISSUED.value)
CN_MAX = 64  # X.509 upper bound for a common name


def users_to_order(session: Session, user_ids: list[int] | None) -> list[int]:
    """Users awaiting an order (or with an order left open by an earlier run), not ignored, still in the directory."""
    query = select(SmimeUser.id).where(
        SmimeUser.status.in_([SmimeStatus.AWAITING_ORDER, SmimeStatus.CSR_PENDING, SmimeStatus.CERTIFICATE_ISSUED]),
        SmimeUser.directory_state.is_(None),
    )
    if user_ids is not None:
        query = query.where(SmimeUser.id.in_(user_ids))
    return list(session.scalars(query.order_by(SmimeUser.id)))


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


def make_csr(session: Session, order_id: int, key_spec: KeySpec | None = None) -> None:
    """Key and CSR for an order that has none yet: the address as rfc822Name SAN (and CN when it fits)."""
    order = repo.get(session, SmimeOrder, order_id)
    user = repo.get(session, SmimeUser, order.user_id)
    if not order.csr_pem:
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
    order.state = SmimeStatus.CERTIFICATE_ISSUED.value
    user = repo.get(session, SmimeUser, order.user_id)
    user.status = SmimeStatus.CERTIFICATE_ISSUED
    user.expires_on = order.expires_on


def package(session: Session, order_id: int) -> Parcel | None:
    """The order's PKCS#12 (leaf, chain, key) under a generated password, built on the first delivery attempt and
    kept sealed on the order (the key column is emptied: the sealed file replaces it), so every retry delivers the
    same file and password. None when the order is delivered already."""
    order = repo.get(session, SmimeOrder, order_id)
    user = repo.get(session, SmimeUser, order.user_id)
    if order.state == SmimeStatus.CERTIFICATE_INSTALLED.value and order.delivered_to:
        return None
    if order.pkcs12 is None or order.pkcs12_password is None:
        if not order.pem_chain or order.private_key is None:
            raise PermanentConnectorError(f"S/MIME order {order_id} has no certificate and key to deliver")
        certs: list[x509.Certificate] = load_material(order.pem_chain.encode()).certificates
        key = load_private_key(order.private_key, trusted=True)
        password = secrets.token_urlsafe(18)
        order.pkcs12 = to_pkcs12(key, certs, password.encode(), friendly_name=user.email)
        order.pkcs12_password = password
        order.private_key = None
    mailed = order.pkcs12_mailed_at is not None
    return Parcel(user.email, user.name, order.pkcs12, order.pkcs12_password, mailed=mailed)


def mark_mailed(session: Session, order_id: int) -> None:
    """The PKCS#12 mail went out: a retry sends only the password mail."""
    repo.get(session, SmimeOrder, order_id).pkcs12_mailed_at = utcnow()


def delivered_to(session: Session, order_id: int) -> str:
    return repo.get(session, SmimeOrder, order_id).delivered_to or ""


def delivered(session: Session, order_id: int, where: str) -> None:
    """Certificate Installed; the sealed PKCS#12 and its password are dropped: certfleet keeps no copy of the key."""
    order = repo.get(session, SmimeOrder, order_id)
    user = repo.get(session, SmimeUser, order.user_id)
    order.delivered_to = where
    order.pkcs12 = None
    order.pkcs12_password = None
    order.error = None
    order.state = SmimeStatus.CERTIFICATE_INSTALLED.value
    user.status = SmimeStatus.CERTIFICATE_INSTALLED
    user.expires_on = order.expires_on
    repo.audit(session, actor="flow:smime-rollout", action="deliver-smime", obj=user, detail=where)


def fail(session: Session, user_id: int, message: str) -> None:
    order = session.scalar(select(SmimeOrder).where(SmimeOrder.user_id == user_id, SmimeOrder.state.in_(OPEN_STATES)))
    if order is not None:
        order.error = message
    user = repo.get(session, SmimeUser, user_id)
    repo.audit(session, actor="flow:smime-rollout", action="smime-rollout", obj=user, outcome="failure",
               detail=message[:500])  # fmt: skip
