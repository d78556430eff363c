"""Which certificate the servers serve: one story with the newest issued serial and the status.

A renewal makes a new certificate the row's current one before it is deployed. Until a deployment proves it on
a server, the previous one is what is served: it stays recorded here (serial and SHA-256 thumbprint) so the
inventory keeps showing it and discovery, which matches by thumbprint, finds it on this row instead of adding
it again as an unmanaged certificate.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from certfleet.inventory.analysis import thumbprint
from certfleet.models.orm import Certificate, CertificateLocation, Order
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.parse import load_material


def keep_served_before_reissue(s: Session, cert: Certificate) -> None:
    """Called before a newly issued certificate replaces the current one on the row."""
    if cert.served_sha256_thumbprint is not None or cert.sha256_thumbprint is None:
        return  # a proven one is recorded already (it stays the live one), or there was nothing before
    on_a_server = cert.last_provisioned_on is not None or bool(
        s.scalar(select(exists().where(CertificateLocation.certificate_id == cert.id)))
    )
    if on_a_server:
        cert.served_serial_number = cert.serial_number
        cert.served_sha256_thumbprint = cert.sha256_thumbprint


def mark_served(s: Session, cert: Certificate, serial: str | None) -> None:
    """A deployment proved `serial` on a server (or a rollback brought it back): it is the served one now."""
    if serial is None:
        return
    cert.served_serial_number = serial
    cert.served_sha256_thumbprint = (
        cert.sha256_thumbprint if serial == cert.serial_number else _thumbprint_of(s, cert.id, serial)
    )


def served_expires_on(s: Session, cert: Certificate) -> datetime | None:
    """When the certificate the servers serve runs out: an earlier serial's (from its order) while a newer one
    waits for its deployment, else the row's own expiry."""
    if cert.served_serial_number is None or cert.served_serial_number == cert.serial_number:
        return cert.expires_on
    leaf = _leaf_of(s, cert.id, cert.served_serial_number)
    return leaf.not_valid_after_utc if leaf is not None else cert.expires_on


def _thumbprint_of(s: Session, certificate_id: int, serial: str) -> str | None:
    """The thumbprint of an earlier certificate of the row, from the order that issued it."""
    leaf = _leaf_of(s, certificate_id, serial)
    return thumbprint(leaf.public_bytes(Encoding.DER)) if leaf is not None else None


def _leaf_of(s: Session, certificate_id: int, serial: str) -> x509.Certificate | None:
    """An earlier certificate of the row, from the order that issued it."""
    pem = s.scalar(
        select(Order.pem_chain)
        .where(Order.certificate_id == certificate_id, Order.serial_number == serial, Order.pem_chain.is_not(None))
        .order_by(Order.id.desc())
        .limit(1)
    )
    if pem is None:
        return None
    try:
        return load_material(pem.encode()).certificates[0]
    except (CertificateFormatError, IndexError):
        return None
