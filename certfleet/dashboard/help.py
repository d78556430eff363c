"""The manual's explanations, shown by the info icons (ℹ) next to each tile and metric."""

from __future__ import annotations

HELP: dict[str, str] = {
    "bots_total": (
        "All provisioning agents deployed to automate certificate deployment. These intelligent agents automatically "
        "install, update and manage certificates on your servers and applications, reducing manual work and human "
        "error."
    ),
    "bots_active": (
        "Provisioning agents currently working on certificate deployments. These bots are actively installing "
        "certificates, monitoring for updates, and ensuring systems maintain secure, up-to-date encryption."
    ),
    "bots_pending": (
        "Provisioning agents awaiting setup or configuration. These bots are registered but need to be configured "
        "with deployment targets and policies before they can begin automating certificate management."
    ),
    "bots_stopped": (
        "Provisioning agents that have been paused. Their Prefect queue is paused: deployments to their servers wait "
        "there until the bot is started again. Review this list to ensure critical systems maintain active automation "
        "coverage."
    ),
    "bots_create": (
        "Create and register a new provisioning bot. Provisioning bots automate certificate deployment, renewal, and "
        "installation across servers, applications, and load balancers."
    ),
    "certs_total": "Total certificates available for provisioning. This list is directly populated from discovery.",
    "certs_bot_unassigned": (
        "Certificates ready for deployment but not yet assigned to an automation agent. These certificates have been "
        "ordered or generated but need to be assigned to a provisioning bot to automate their installation on target "
        "systems."
    ),
    "certs_configuration_pending": (
        "Certificates that are awaiting further deployment configuration details. These certificates need additional "
        "information (like target servers, installation paths, or binding configurations) before they can be "
        "automatically deployed."
    ),
    "certs_deployment_pending": (
        "Certificates fully configured and queued for installation. These are ready to be deployed to your servers. "
        "The provisioning bot will install them according to the scheduled deployment plan."
    ),
    "certs_deployment_failed": (
        "Certificate deployments that encountered errors during installation. These failed deployments need "
        "investigation. Common issues include permission problems, connectivity issues, or incompatible certificate "
        "formats. Action required to resolve."
    ),
    "servers_total": (
        "Total number of servers added for agentless provisioning. These are the servers configured using IP address, "
        "credentials, and server type details for remote deployment."
    ),
    "servers_mapped": (
        "Servers that have been successfully associated with a provisioning bot. Mapping ensures that the selected bot "
        "is responsible for handling certificate deployment to those specific systems."
    ),
    "servers_active": (
        "Servers that are reachable and ready for certificate deployment. These systems are available for "
        "provisioning actions such as installation, renewal, rotation and updates."
    ),
    "smime_total": "All employees in your Azure Active Directory eligible for email security certificates.",
    "smime_awaiting": (
        "Employees ready for S/MIME certificates but orders not yet submitted. These users have been identified for "
        "email security but their certificates haven't been requested from the Certificate Authority yet. Initiate "
        "orders to enable secure email for these users."
    ),
    "smime_provisioned": "Employees successfully equipped with S/MIME email security certificates.",
    "smime_connect": "Establish or manage the Azure Active Directory integration required for S/MIME provisioning.",
    "orders_total": (
        "All certificate requests submitted to the Certificate Authority, from initial request through final "
        "issuance, providing complete visibility into the provisioning process."
    ),
    "orders_csr_pending": (
        "Certificate orders awaiting Certificate Signing Request (CSR) submission. The CSR contains the user's public "
        "key and identity information. These orders need CSR creation and submission to the Certificate Authority "
        "before certificates can be issued."
    ),
    "orders_issued": (
        "Successfully issued certificates ready for distribution. The Certificate Authority has approved and issued "
        "these certificates."
    ),
}
