"""provision-certificate: issue a certificate, then deploy it to all of its targets."""

from __future__ import annotations

from prefect import flow

from certfleet.flows.deployment import deploy_certificate
from certfleet.flows.issuance import issue_certificate


@flow(name="provision-certificate", flow_run_name="provision-certificate-{certificate_id}")
def provision_certificate(certificate_id: int) -> dict[int, str]:
    issue_certificate(certificate_id)
    return deploy_certificate(certificate_id)
