"""issue-certificate: order a certificate from its CA connector and record it."""

from __future__ import annotations

from prefect import flow

from certfleet.tasks.issuance import create_order, poll_order, record_issued, submit_order


@flow(name="issue-certificate", flow_run_name="issue-certificate-{certificate_id}")
def issue_certificate(certificate_id: int) -> str:
    """Returns the serial number (hex) of the certificate issued.

    Re-running after a crash reuses the order still under way, so a certificate is never ordered twice.
    """
    order_id = create_order(certificate_id)
    if not submit_order(order_id):
        poll_order(order_id)
    return record_issued(order_id)
