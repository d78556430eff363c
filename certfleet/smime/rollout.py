"""S/MIME rollout steps for one user, each its own unit of work so each can be retried on its own:

1. `open_order`: the order row is written first (idempotency key), then the key and the CSR (the address as
   rfc822Name SAN; the CA adds emailProtection and digitalSignature + keyEncipherment for RSA keys): CSR Pending.
2. `next_ca_call` / `call_ca` / `record_result`: the CA connector issues with its S/MIME profile (the built-in
   CA's, DigiCert's Secure Email product, emSign's S/MIME product): Certificate Issued, Expiry Date filled. A remote
   CA's order id is recorded on the order the moment the CA answers (`SmimeOrderJournal`); an order the CA holds
   pending (approval, validation) stays CSR Pending and is polled by that id, never placed again.
3. `package`: a PKCS#12 (leaf, chain, key) under a generated password, sealed on the order (the key column is
   emptied), so a retried delivery sends the same file and password.
4. delivery (certfleet.smime.senders) to the configured target (a folder, an SMB share or two e-mails), then
   `delivered`: Certificate Installed; the sealed PKCS#12 and password are dropped. A failed delivery leaves the
   user at Certificate Issued with the reason on the order; a re-run delivers without ordering again.
A re-run finds the user's open order and carries on from its state; it never orders twice.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certfleet.connectors.base import CertificateAuthority, IssueRequest, IssueResult, Profile
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.models import repo
from certfleet.models.orm import (
    CAConnector,
    ConnectorStatus,
    DirectoryProfile,
    SmimeOrder,
    SmimeStatus,
    SmimeUser,
    utcnow,
)
from certfleet.pki.bundle import key_matches_certificate, to_pkcs12
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
from certfleet.smime.order_journal import SmimeOrderJournal
from certfleet.smime.selection import UserFilter, users_query
from certfleet.smime.senders import Parcel

FAILED = "Failed"
OPEN_STATES = (SmimeStatus.CSR_PENDING.value, SmimeStatus.CERTIFICATE_ISSUED.value)
CN_MAX = 64  # X.509 upper bound for a common name


def users_to_order(
    session: Session, user_ids: list[int] | None, user_filter: UserFilter | None = None, *, renewal: bool = False
) -> list[int]:
    """Users awaiting an order (or with an order left open by an earlier run), not ignored, still in the directory;
    narrowed to `user_ids` and the filter. A renewal also takes the named users whose certificate is installed."""
    return list(session.scalars(users_query(user_ids, user_filter, renewal=renewal)))


# The connector kinds that issue S/MIME certificates, and what each orders (shown when another kind is refused).
SMIME_KINDS = {
    "local": "the built-in CA's S/MIME profile",
    "digicert": "DigiCert's Secure Email product",
    "emsign": "emSign's S/MIME product",
}


def smime_problem(connector: CAConnector) -> str | None:
    """Why this connector cannot issue S/MIME certificates, or None when it can."""
    if connector.kind in SMIME_KINDS:
        return None
    kinds = ", ".join(SMIME_KINDS.values())
    if connector.kind == "adcs":
        return (
            f"CA connector {connector.name} (AD CS) has one certificate template, for its TLS orders, and no S/MIME "
            f"template; choose a connector that issues S/MIME: {kinds}"
        )
    return f"CA connector {connector.name} ({connector.kind}) does not issue S/MIME certificates; choose {kinds}"


def connector_for(session: Session, user: SmimeUser, ca_connector_id: int | None) -> CAConnector:
    """The chosen connector, else the user's profile's, else the built-in CA; refused when disabled or not S/MIME."""
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
    problem = smime_problem(connector)
    if problem:
        raise PermanentConnectorError(problem)
    if connector.status is not ConnectorStatus.ACTIVE:
        raise PermanentConnectorError(f"CA connector {connector.name} is disabled: it places no new orders")
    return connector


def issuing_connector_id(session: Session, user_id: int) -> int | None:
    """The connector that issued the user's current (newest issued) certificate, as recorded on its order."""
    return session.scalar(
        select(SmimeOrder.ca_connector_id)
        .where(SmimeOrder.user_id == user_id, SmimeOrder.serial_number.is_not(None))
        .order_by(SmimeOrder.id.desc())
        .limit(1)
    )


def renewal_connector(session: Session, user: SmimeUser, ca_connector_id: int | None) -> tuple[CAConnector, str | None]:
    """A renewal orders from the connector that issued the certificate it replaces, whatever the profile's or the
    default connector is now (a connector with S/MIME orders cannot be deleted); only when that connector is
    disabled does it fall back to the chosen one (`connector_for`). Returns the connector and, on a fallback, why
    (recorded on the order and audited)."""
    issued_by = issuing_connector_id(session, user.id)
    if issued_by is None:
        return connector_for(session, user, ca_connector_id), None
    issuer = repo.get(session, CAConnector, issued_by)
    if issuer.status is ConnectorStatus.ACTIVE:
        return issuer, None
    fallback = connector_for(session, user, ca_connector_id)
    why = f"CA connector {issuer.name}, which issued the current certificate, is disabled"
    return fallback, f"{why}: renewed from {fallback.name} instead"


def open_order(session: Session, user_id: int, ca_connector_id: int | None, *, renewal: bool = False) -> int:
    """The user's open order, or a new order row (committed by the caller before any key exists). A renewal's order
    goes to the connector that issued the current certificate (`renewal_connector`)."""
    user = repo.get(session, SmimeUser, user_id)
    existing = session.scalar(
        select(SmimeOrder).where(SmimeOrder.user_id == user_id, SmimeOrder.state.in_(OPEN_STATES))
    )
    if existing is not None:
        return existing.id
    note = None
    if renewal:
        connector, note = renewal_connector(session, user, ca_connector_id)
    else:
        connector = connector_for(session, user, ca_connector_id)
    generation = session.scalar(select(func.count(SmimeOrder.id)).where(SmimeOrder.user_id == user_id)) or 0
    order = SmimeOrder(
        user_id=user_id,
        ca_connector_id=connector.id,
        idempotency_key=f"smime-{user_id}-gen-{generation + 1}",
        state=SmimeStatus.CSR_PENDING.value,
        connector_note=note,
    )
    session.add(order)
    session.flush()
    if note is not None:
        repo.audit(session, actor="flow:smime-rollout", action="smime-renewal-connector", obj=user,
                   outcome="warning", detail=f"{user.email}: {note}")  # fmt: skip
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


@dataclass(frozen=True)
class CaCall:
    """What to ask the CA for an order: place it (`request`), or poll the order the CA holds (`ca_order_id`)."""

    connector_id: int
    request: IssueRequest
    ca_order_id: str | None


def next_ca_call(session: Session, order_id: int) -> CaCall | None:
    """The CA call an order needs, or None when it holds its certificate. A placement is counted on the order
    (committed by the caller before the CA is called), so a retry knows an earlier outcome may be unknown."""
    order = repo.get(session, SmimeOrder, order_id)
    if order.pem_chain:
        return None
    if order.state == FAILED:
        raise PermanentConnectorError(f"S/MIME order {order_id} failed: {order.error}")
    if order.state not in OPEN_STATES:  # cancelled: the user was revoked while this run waited
        raise PermanentConnectorError(f"S/MIME order {order_id} is {order.state}: nothing to issue")
    if not order.csr_pem:
        raise PermanentConnectorError(f"S/MIME order {order_id} has no CSR")
    if order.ca_order_id is None:
        order.ca_submits += 1
    request = IssueRequest(csr_pem=order.csr_pem, profile=Profile.SMIME, idempotency_key=order.idempotency_key)
    return CaCall(order.ca_connector_id, request, order.ca_order_id)


def call_ca(session: Session, call: CaCall, built: dict[int, CertificateAuthority] | None = None) -> IssueResult:
    """Place or poll the order; a remote CA records its order id on `smime_orders` as soon as it answers.
    `built`: connectors already made by this caller, by connector id (the built-in CA decrypts and loads its keys
    when made: once per chunk of users, not once per user)."""
    from certfleet.tasks.build import build_ca  # the connector factory (the built-in CA reads its key from the DB)

    built = {} if built is None else built
    ca = built.get(call.connector_id)
    if ca is None:
        connector = repo.get(session, CAConnector, call.connector_id)
        ca = built[call.connector_id] = build_ca(session, connector, SmimeOrderJournal(connector.id))
    return ca.status(call.ca_order_id) if call.ca_order_id else ca.issue(call.request)


def record_result(session: Session, order_id: int, result: IssueResult) -> bool:
    """True when the certificate arrived (checked: the CSR's key, the user's address, emailProtection): Certificate
    Issued and Expiry Date filled. False while the CA holds the order pending (the order stays CSR Pending)."""
    order = repo.get(session, SmimeOrder, order_id)
    order.ca_order_id = result.ca_order_id or order.ca_order_id
    if result.pem_chain is None:
        return False
    user = repo.get(session, SmimeUser, order.user_id)
    leaf = load_material(result.pem_chain.encode()).certificates[0]
    problem = _not_smime_for(leaf, user.email, order.private_key)
    if problem:
        raise PermanentConnectorError(f"the CA sent a certificate certfleet cannot deliver for {user.email}: {problem}")
    order.pem_chain = result.pem_chain
    order.serial_number = serial_hex(leaf.serial_number)
    order.expires_on = leaf.not_valid_after_utc.astimezone(UTC)
    order.not_before = leaf.not_valid_before_utc.astimezone(UTC)
    order.state = SmimeStatus.CERTIFICATE_ISSUED.value
    order.error = None
    user.status = SmimeStatus.CERTIFICATE_ISSUED
    user.expires_on = order.expires_on
    return True


def _not_smime_for(leaf: x509.Certificate, email: str, private_key: bytes | None) -> str | None:
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        mailboxes = sans.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        mailboxes = []
    if email not in mailboxes:
        return f"its subject alternative names hold no rfc822Name {email} ({', '.join(mailboxes) or 'none'})"
    try:
        usages = list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = []
    if ExtendedKeyUsageOID.EMAIL_PROTECTION not in usages:
        return "it has no emailProtection extended key usage"
    if private_key is not None and not key_matches_certificate(load_private_key(private_key, trusted=True), leaf):
        return "it is for another key than the CSR's"
    return None


def fail_order(session: Session, order_id: int, message: str) -> None:
    """The CA refused or ended the order: Failed, so a later rollout opens a new order (new key) for the user."""
    order = repo.get(session, SmimeOrder, order_id)
    order.state = FAILED
    order.error = message


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
    user.renewal_attempts, user.renewal_next_attempt_at = 0, None  # renewed (or first delivered): no retry pending
    repo.audit(session, actor="flow:smime-rollout", action="deliver-smime", obj=user, detail=where)


def fail(session: Session, user_id: int, message: str) -> None:
    order = session.scalar(select(SmimeOrder).where(SmimeOrder.user_id == user_id, SmimeOrder.state.in_(OPEN_STATES)))
    if order is not None:
        order.error = message
    user = repo.get(session, SmimeUser, user_id)
    repo.audit(session, actor="flow:smime-rollout", action="smime-rollout", obj=user, outcome="failure",
               detail=message[:500])  # fmt: skip
