"""revoke-certificate: the issuing CA connector revokes a serial; the certificate becomes Revoked."""

from __future__ import annotations

from prefect import flow

from certfleet.tasks.revocation import record_revoked, revoke_at_ca


@flow(name="revoke-certificate", flow_run_name="revoke-certificate-{certificate_id}")
def revoke_certificate(certificate_id: int, reason: str = "unspecified", serial_number: str | None = None) -> str:
    """`reason`: an RFC 5280 reason name (keyCompromise, superseded, ...). `serial_number`: one the certificate
    had before a rotation (default: the current one, and the certificate becomes Revoked). Returns the serial.

    Re-running is safe: a certificate already Revoked, or a serial the CA already revoked, counts as done.
    """
    serial = revoke_at_ca(certificate_id, reason, serial_number)
    record_revoked(certificate_id, serial, reason)
    return serial
