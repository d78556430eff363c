"""Can this certificate be deployed to a TLS server? One check for Configure (targets) and for the deploy path.

assert_servable(pem, server="nginx") -> None        raises NotServable (a ValueError) with the reason
target_problem(cert, server_type) -> str | None      the same for an inventory row, issued or not yet
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certfleet.models.orm import Certificate
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.parse import load_material, stored_chain
from certfleet.pki.usage import NotServable, profile_problem, servable_problem

__all__ = ["NotServable", "assert_servable", "target_problem", "usage_counts"]

# What a row is for: its certificate's usage, or before the first issue the profile it will be ordered with.
USAGE = func.coalesce(Certificate.usage, Certificate.profile)


def assert_servable(pem: str | bytes, server: str = "a TLS server") -> None:
    """Raise NotServable when the leaf of `pem` (PEM or DER, leaf first) cannot be served by `server`
    ("this is an S/MIME certificate: it cannot be served by nginx"). Call it before installing anything."""
    try:
        leaf = stored_chain(pem)[0] if isinstance(pem, str) else load_material(pem).leaf
    except CertificateFormatError as exc:
        raise NotServable(f"the certificate to deploy cannot be read: {exc}") from exc
    problem = servable_problem(leaf, server)
    if problem is not None:
        raise NotServable(problem)


def target_problem(cert: Certificate, server_type: str) -> str | None:
    """Why a target of this server type cannot work for the row: by its current certificate, or, before the
    first issue, by the profile it will be ordered with."""
    if cert.pem_chain:
        try:
            assert_servable(cert.pem_chain, server_type)
        except NotServable as exc:
            return str(exc)
        return None
    return profile_problem(cert.profile, server_type)


def usage_counts(session: Session) -> dict[str, int]:
    """How many inventory certificates there are of each usage ("smime": 3, "tls-server": 120, ...)."""
    rows = session.execute(select(USAGE, func.count(Certificate.id)).group_by(USAGE)).all()
    return {str(usage): int(count) for usage, count in rows}
