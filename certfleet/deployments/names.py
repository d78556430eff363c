"""Where each flow runs: its Prefect work pool and deployment name. Imports nothing heavy (no Prefect).

Two process work pools. `certfleet` holds the flows that run on the central host, where the database is
(issuing, renewal, starting the nightly discovery, liveness of bots); `certfleet up` runs its worker.
`certfleet-bots` holds the flows that reach into a network (deploy, roll back, check connectivity, TLS scans,
file scans); every bot, the central host's own `local-bot` included, runs a worker on its own queue `bot-<id>`
of that pool, and each run is put on the queue of the bot its server is mapped to (or the bot chosen for a scan).
Deployment names say which: `issue-certificate/central`, `deploy-certificate/on-bots`.
"""

from __future__ import annotations

CENTRAL_POOL = "certfleet"
BOT_POOL = "certfleet-bots"
CENTRAL_QUEUE = "default"
CENTRAL = "central"  # deployment name of the flows on the central pool
ON_BOTS = "on-bots"  # deployment name of the flows on the bots' pool

CENTRAL_FLOWS = (
    "issue-certificate",
    "provision-certificate",
    "renew-expiring",
    "discover-fleet",
    "check-bots",
    "revoke-certificate",
    "sync-directory",
    "smime-rollout",
    "revoke-smime-user",
    "rotate-batch",
    "check-notifications",
)
BOT_FLOWS = (
    "deploy-certificate",
    "rollback-deployment",
    "check-server",
    "discover-endpoints",
    "discover-server-files",
    "rotate-on-bot",
)

# Entrypoints are module paths of the installed package: nothing to pull. The one step only fixes the working
# directory; without any, Prefect's workers copy the registering directory into each run's workspace.
PULL_STEPS = [{"prefect.deployments.steps.set_working_directory": {"directory": "/"}}]

# Flow name -> cron schedule (UTC). prefect.yaml declares the same schedules (a test keeps them in step).
SCHEDULES = {
    "renew-expiring": "17 * * * *",
    "discover-fleet": "41 2 * * *",
    "check-bots": "*/5 * * * *",
    "sync-directory": "23 */6 * * *",
    "check-notifications": "*/5 * * * *",
}

# What each deployment does, as the Prefect UI lists it (prefect.yaml says the same).
DESCRIPTIONS = {
    "issue-certificate": "Order a certificate from its CA connector and record it.",
    "deploy-certificate": "Install a certificate on its targets, prove it is served, or roll back.",
    "provision-certificate": "Issue a certificate centrally, then deploy it on the bots that reach its servers.",
    "rollback-deployment": "Undo a deployment from its journal; re-runnable.",
    "renew-expiring": "Renew certificates inside their renewal window; re-deploy issued ones not served yet.",
    "discover-endpoints": "On a bot: TLS-scan its servers' ports (or given hosts, ranges, ports) into the inventory.",
    "discover-server-files": "On a bot: find PEM, DER, PKCS#7, PKCS#12 and Java keystores in its servers' folders.",
    "discover-fleet": "Start discover-endpoints and discover-server-files on every bot that has servers.",
    "check-server": "On the server's bot: log in and set the server Active, or Unreachable with the reason.",
    "check-bots": "Mark bots silent for CERTFLEET_BOT_SILENCE_MINUTES Inactive; keep Stopped bots' queues paused.",
    "revoke-certificate": "Revoke a certificate at the CA connector that issued it, with an RFC 5280 reason.",
    "smime-rollout": "Order S/MIME certificates from the built-in CA and deliver each as PKCS#12 to a user folder.",
    "revoke-smime-user": "Revoke an S/MIME user's valid certificates at the CA that issued them (leavers, requests).",
    "sync-directory": "Read S/MIME users from Azure AD profiles through Microsoft Graph; flag disabled and gone ones.",
    "rotate-on-bot": "On a bot: deploy a rotate-batch's issued certificates to its servers, or roll them back.",
    "rotate-batch": "Re-key, re-issue and deploy a batch (ids, Batch Name or filter): canaries first, failure budget.",
    "check-notifications": "Notify of failed renewals and deployments, expiry thresholds, inactive bots and a stale "
    "renewal schedule; send the outbox.",
}


def bot_queue(bot_id: int) -> str:
    return f"bot-{bot_id}"


def pool_of(flow_name: str) -> str:
    if flow_name in BOT_FLOWS:
        return BOT_POOL
    if flow_name in CENTRAL_FLOWS:
        return CENTRAL_POOL
    raise KeyError(f"{flow_name} is not one of certfleet's deployed flows")


def deployment_name(flow_name: str) -> str:
    """The `flow/deployment` name `run_deployment` takes."""
    return f"{flow_name}/{ON_BOTS if pool_of(flow_name) == BOT_POOL else CENTRAL}"
