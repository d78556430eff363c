"""Revoking a certificate: the reasons a user may give (RFC 5280 names) and the checks before a revoke starts.

The dashboard, the API and the CLI refuse here with the reason, so a revoke that cannot work never becomes a red
flow run; the `revoke-certificate` flow (certfleet.flows.revocation) calls the issuing CA connector.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet.connectors.base import RFC5280_REASON_CODES
from certfleet.fields import InputError
from certfleet.models import repo
from certfleet.models.orm import Certificate, CertificateStatus, Order, OrderState

FLOW = "revoke-certificate"
_SERIAL = re.compile(r"[0-9A-F]{1,80}")  # as certfleet.pki.parse.serial_hex writes serials

# CRLReason names exactly as RFC 5280 section 5.3.1 spells them (x509.ReasonFlags values are those names).
# removeFromCRL is left out: it only un-lists a held certificate in a delta CRL, it revokes nothing.
REASONS: tuple[str, ...] = tuple(reason.value for reason in RFC5280_REASON_CODES)


def parse_reason(value: str, field: str = "reason") -> x509.ReasonFlags:
    """The reason as sent (case and spelling exact), or a 422 naming `field` with the accepted names."""
    if value == x509.ReasonFlags.remove_from_crl.value:
        raise InputError("removeFromCRL only takes a held certificate off a delta CRL; it does not revoke", field)
    if value not in REASONS:
        raise InputError(f"{field} must be one of the RFC 5280 reason names: {', '.join(REASONS)}", field)
    return x509.ReasonFlags(value)


@dataclass(frozen=True)
class Revocable:
    certificate_id: int
    common_name: str
    serial_number: str
    current: bool  # the certificate's current serial (it becomes Revoked) or one it replaced
    served_on: list[str]  # "host:port" of the targets the current serial was deployed to


def issuing_order(session: Session, cert: Certificate, serial: str | None = None) -> Order | None:
    """certfleet's own order that issued `serial` (default: the certificate's current serial)."""
    serial = serial or cert.serial_number
    if not serial:
        return None
    return session.scalar(
        select(Order)
        .where(Order.certificate_id == cert.id, Order.serial_number == serial, Order.state == OrderState.ISSUED)
        .order_by(Order.id.desc())
        .limit(1)
    )


def issued_serials(session: Session, cert: Certificate) -> list[str]:
    """Every serial certfleet issued for the certificate, newest first (after a rotation, the old ones)."""
    rows = session.scalars(
        select(Order.serial_number)
        .where(Order.certificate_id == cert.id, Order.state == OrderState.ISSUED, Order.serial_number.is_not(None))
        .order_by(Order.id.desc())
    )
    return [serial for serial in rows if serial]


def check_revocable(session: Session, cert_id: int, serial: str | None = None) -> Revocable:
    """Refuses (422 with the reason) what is already revoked, not issued, or not issued through certfleet.

    `serial` (hex, as the certificate lists it) names a serial the certificate had before a rotation; by default
    the current one is revoked."""
    if serial is not None and not _SERIAL.fullmatch(serial):
        raise InputError("serial_number must be a serial as certfleet lists it: 1 to 80 upper-case hex digits",
                         "serial_number")  # fmt: skip
    cert = repo.get(session, Certificate, cert_id)
    current = serial is None or serial == cert.serial_number
    if current and cert.status is CertificateStatus.REVOKED:
        when = f" on {cert.revoked_at:%Y-%m-%d %H:%M} UTC" if cert.revoked_at else ""
        raise InputError(f"{cert.common_name} is already revoked ({cert.revocation_reason or 'unspecified'}){when}")
    if current and (not cert.pem_chain or not cert.serial_number):
        raise InputError(f"{cert.common_name} is not issued (status {cert.status.value}): there is nothing to revoke")
    if current and cert.status is CertificateStatus.EXPIRED:
        raise InputError(f"{cert.common_name} has expired: a CA no longer revokes or lists it")
    wanted = cert.serial_number if current else serial
    if issuing_order(session, cert, wanted) is None:
        raise InputError(
            f"serial {wanted} of {cert.common_name} was not issued through certfleet: "
            "revoke it at the CA that issued it",
            "serial_number" if serial is not None else None,
        )
    served = [f"{t.server.host}:{t.port}" for t in cert.targets] if current and cert.last_provisioned_on else []
    return Revocable(cert.id, cert.common_name, str(wanted), current, served)


def record_start(session: Session, revocable: Revocable, reason: x509.ReasonFlags, actor: str, run: str) -> None:
    cert = repo.get(session, Certificate, revocable.certificate_id)
    detail = f"serial {revocable.serial_number}; {reason.value}; {run}"
    repo.audit(session, actor=actor, action=f"start-{FLOW}", obj=cert, detail=detail)
