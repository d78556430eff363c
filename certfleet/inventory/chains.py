"""Complete the chains the inventory holds when the missing issuers turn up later.

A leaf imported alone keeps a chain that verifies to no known root and stops below its root
(`Certificate.awaiting_issuer` holds the SHA-256 of the issuer name it waits for). Any later material that
carries CA certificates (a fullchain
PEM, a PKCS#7 or PKCS#12 of the same leaf, an intermediate imported on its own, a keystore's trusted
entries, a TLS server that sends its chain) completes every chain waiting for them; a new leaf whose file
lacks its intermediates takes them from CA certificates the inventory holds already. A completed chain is
classified again (CA type, trust anchor, vulnerable, usage), so the trust anchor becomes known.

Every link is checked by name and signature, so a CA that merely has the right name is never appended.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet.inventory.analysis import CertificateFacts, analyze, issuer_key
from certfleet.inventory.trust import TrustStore
from certfleet.models.orm import Certificate
from certfleet.pki.parse import issued_by, load_material
from certfleet.pki.usage import Usage, classify

MAX_CHAIN = 10  # deeper than any real PKI: stops a loop of cross-signed CAs


def extend(chain: Sequence[x509.Certificate], cas: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """`chain` with its missing intermediates appended from `cas`, as far as they go. Roots are not appended:
    servers do not send them, and the trust store, not the chain, decides whether a root is trusted."""
    out = list(chain)
    while len(out) < MAX_CHAIN and out[-1].issuer != out[-1].subject:
        issuer = next((ca for ca in cas if ca not in out and ca.issuer != ca.subject and issued_by(out[-1], ca)), None)
        if issuer is None:
            break
        out.append(issuer)
    return out


def ca_certificates(certificates: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The CA certificates among `certificates`, each once."""
    out: list[x509.Certificate] = []
    for cert in certificates:
        try:
            is_ca = classify(cert) is Usage.CA
        except ValueError:
            continue
        if is_ca and cert not in out:
            out.append(cert)
    return out


def held_issuers(session: Session, chain: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """CA certificates the inventory holds (imported on their own) that may issue the chain's top certificate."""
    top = chain[-1]
    names = top.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if top.issuer == top.subject or not names:
        return []
    found: list[x509.Certificate] = []
    pems = session.scalars(
        select(Certificate.pem_chain).where(
            Certificate.usage == Usage.CA.value, Certificate.common_name == str(names[0].value)
        )
    )
    for pem in pems:
        if pem:
            found.extend(load_material(pem.encode("ascii")).certificates)
    return found


def complete_new(session: Session, facts: CertificateFacts, trust: TrustStore, now: datetime) -> CertificateFacts:
    """A new row's facts with its chain completed from the CA certificates the inventory holds."""
    if facts.awaiting_issuer is None:
        return facts
    chain = load_material(facts.pem_chain.encode("ascii")).certificates
    longer = extend(chain, held_issuers(session, chain))
    return analyze(longer, trust, now) if len(longer) > len(chain) else facts


def complete_waiting(session: Session, cas: Sequence[x509.Certificate], trust: TrustStore, now: datetime) -> list[int]:
    """Complete every stored chain that waits for one of `cas`; returns the ids of the rows completed."""
    keys = {issuer_key(ca.subject) for ca in cas}
    if not keys:
        return []
    rows = session.scalars(select(Certificate).where(Certificate.awaiting_issuer.in_(sorted(keys)))).all()
    completed: list[int] = []
    for cert in rows:
        assert cert.pem_chain is not None  # awaiting_issuer is only set from a chain
        chain = load_material(cert.pem_chain.encode("ascii")).certificates
        longer = extend(chain, cas)
        if len(longer) == len(chain):
            continue  # the right name, not the right key
        store_facts(cert, analyze(longer, trust, now), now)
        completed.append(cert.id)
    session.flush()
    return completed


def store_facts(cert: Certificate, facts: CertificateFacts, now: datetime) -> None:
    """A row's chain and the verdicts derived from it (the CA type of a certificate issued through a connector
    stays the connector's)."""
    issued_here = cert.ca_connector_id is not None and cert.order_generation > 0 and cert.ca_type is not None
    cert.pem_chain = facts.pem_chain
    if not issued_here:
        cert.ca_type = facts.verdict.ca_type
    cert.trust_anchor = facts.verdict.anchor[:255] if facts.verdict.anchor else None
    cert.vulnerable = bool(facts.reasons)
    cert.vulnerability_reasons = facts.reasons
    cert.usage = facts.usage.value
    cert.awaiting_issuer = facts.awaiting_issuer
    cert.updated_at = now
