"""The explanations shown by the info icons (ℹ) next to each tile and metric.

They follow the manual's wording where the manual is true of certfleet, and say what certfleet really does where
it is not (tests/dashboard/test_help_claims.py checks each claim against the code).
"""

from __future__ import annotations

HELP: dict[str, str] = {
    "bots_total": (
        "All provisioning bots, in every status. Each server is mapped to a bot, and the runs that change a server "
        "(deploy-certificate, rollback-deployment) run on that bot's Prefect queue: local-bot on the central host, "
        "or a certfleet bot agent in the server's network."
    ),
    "bots_active": (
        "Bots that checked in within the silence limit and have servers mapped (or a Discovery purpose): their worker "
        "runs the deployments and rollbacks queued for their servers."
    ),
    "bots_pending": (
        "Bots that are Pending Activation (created, their agent never checked in) or Pending (checked in, but no "
        "server is mapped to them and their purpose has no Discovery). Start the agent with the bot's token, or map "
        "servers to the bot."
    ),
    "bots_stopped": (
        "Provisioning agents that have been paused. Their Prefect queue is paused: deployments to their servers wait "
        "there until the bot is started again. Review this list to ensure critical systems maintain active automation "
        "coverage."
    ),
    "bots_create": (
        "Create a provisioning bot: its token is shown once, for `certfleet bot run` on a host in the network of the "
        "servers you then map to it."
    ),
    "certs_total": (
        "Every certificate in the inventory, in any status: those found by discovery scans, imported from files, and "
        "requested in certfleet (+ New certificate, or POST /api/v1/certificates)."
    ),
    "certs_bot_unassigned": (
        "Certificates with no provisioning bot. Choose one with Configure: a certificate is provisioned only with a "
        "provisioning bot, a CA connector and at least one deployment target."
    ),
    "certs_configuration_pending": (
        "Certificates with a provisioning bot but no CA connector or no deployment target (a server and port to serve "
        "it on). Configure adds both; until then nothing issues or deploys them."
    ),
    "certs_deployment_pending": (
        "Certificates fully configured (bot, CA connector, deployment target) that their targets do not serve yet. "
        "Nothing starts a Discovered or Initiated one by itself: start Provision (issue + deploy) on the certificate's "
        "page, `certfleet provision ID` or POST /api/v1/certificates/ID/provision (a renewal that did not issue is "
        "the exception: the hourly renew-expiring run starts it again after 1, 2, 4 ... at most 24 hours). "
        "An Issued or Rolled Back one is "
        "deployed by the hourly renew-expiring run once 6 hours have passed since it was issued or last deployed "
        "(Deploy on its page does it at once)."
    ),
    "certs_deployment_failed": (
        "Certificates whose last deployment failed; the certificate's status reason says why (an unreachable server, "
        "a permission problem, a config test that failed, a serial not served). For a certificate issued through a "
        "CA connector the hourly renew-expiring run tries again, at most every 6 hours; fix the cause, then Deploy "
        "on the certificate's page to try at once."
    ),
    "servers_total": (
        "All registered servers: an address, credentials (password or SSH key) and a server type. certfleet deploys "
        "to them over SSH from their bot; nothing is installed on the server itself."
    ),
    "servers_mapped": (
        "Servers that have been successfully associated with a provisioning bot. Mapping ensures that the selected bot "
        "is responsible for handling certificate deployment to those specific systems."
    ),
    "servers_windows": (
        "Windows servers reached over SMB: certfleet writes the certificate files through the share (C$ or a named "
        "share) and restarts the Service Name through the Windows Service Control Manager."
    ),
    "servers_active": (
        "Servers that are reachable and ready for certificate deployment. These systems are available for "
        "provisioning actions such as installation, renewal, rotation and updates."
    ),
    "smime_total": (
        "All S/MIME users in certfleet: those read from Azure Active Directory profiles by the sync-directory run "
        "(when a profile is saved, with Sync now, and every 6 hours) and those imported with Import Manually. Users "
        "disabled in or gone from the directory are flagged, never deleted."
    ),
    "smime_awaiting": (
        "S/MIME users whose certificate has not been ordered from a CA yet (status Awaiting Order). Order certificates "
        "starts an smime-rollout run: the built-in CA issues each user's certificate and a PKCS#12 with its password "
        "is delivered as the S/MIME delivery setting says: to the user's folder in a local folder or on an SMB share, "
        "or by e-mail (the file and the password in two separate messages)."
    ),
    "smime_delivery": (
        "Where Order certificates delivers each user's PKCS#12 and its password: a local or NFS folder (the default: "
        "the data directory's smime-delivery folder), a per-user folder on an SMB share, or two e-mails to the user "
        "(the PKCS#12 in one, its password in the other). A directory profile may have its own target (Connect to "
        "Azure AD, Delivery) for its users; a rollout may name one target for all its users. A failed delivery "
        "leaves the user at Certificate Issued with the reason in Last Error; Order certificates again retries it "
        "without a new order."
    ),
    "smime_provisioned": "S/MIME users whose status is Certificate Issued or Certificate Installed.",
    "smime_orders": "Every S/MIME certificate order certfleet wrote (TLS orders are on the Orders page).",
    "smime_orders_csr_pending": (
        "S/MIME orders whose key and CSR are made but whose certificate the CA has not issued yet."
    ),
    "smime_orders_issued": (
        "S/MIME orders the CA has issued: delivered or not yet, replaced by a renewal, or since revoked."
    ),
    "smime_revoked": (
        "S/MIME users whose certificate was revoked at its CA (status Revoked, with the RFC 5280 reason and time). "
        "They stay listed; renewal and rollout leave them alone."
    ),
    "smime_leavers": (
        "Users the directory sync flagged (disabled in Azure AD, or no longer listed) who still hold a valid "
        "certificate: open one and Revoke it (revoke-smime-user asks the issuing CA; the built-in CA's CRL then "
        "lists the serial)."
    ),
    "smime_connect": (
        "Azure Active Directory application profiles (tenant, client ID, encrypted secret). certfleet reads each "
        "profile's users through Microsoft Graph (application permission User.Read.All) when the profile is saved, "
        "with Sync now, and every 6 hours."
    ),
    "orders_total": (
        "Every order certfleet wrote for a CA, in every state: Created, Submitted, Pending (the CA issues later and "
        "is polled), Issued and Failed. The order is written before the CA is called, so it is never placed twice."
    ),
    "orders_csr_pending": (
        "Orders in state Created: the key and Certificate Signing Request (CSR) are made and recorded, but the CA "
        "has not been called yet. The issue run that wrote the order sends it next; if that run stopped, the next "
        "issue or provision run of the certificate sends the same order."
    ),
    "orders_issued": (
        "Orders the CA has issued: the certificate is recorded in the inventory (and checked against the CSR's key)."
    ),
}
