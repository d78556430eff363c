"""rotate-on-bot: rotate-batch's work for the servers of one bot, run by that bot's own worker on its queue.

rotate-batch (central) issues each certificate, then hands a bot's certificates to this flow on the bot's queue
`bot-<id>` (as deploy-certificate reaches bots); the bot deploys a server's certificates together, as
deploy_group does on the central host, and the others with the steps of deploy-certificate, reading its jobs and
journalling through certfleet's API. Before the group and before each other certificate it asks Prefect whether
the batch still wants it: the central run creates the variable `go_variable` with the value "go" before it starts
this run and deletes it when the batch stops, when it gives up waiting for the bot, or when the run is over, so
a run a bot takes late (or after a stop) starts nothing. Outcomes are not returned: the central run reads them
from the deployments this run recorded (their flow run id), which also holds when the bot dies mid-run.

With `roll_back_deployment_ids` the same flow puts back deployments of a stopped batch instead (a server's
together: certfleet.tasks.restore_group).
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import nullcontext

from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency

from certfleet.flows.deployment import deploy_steps
from certfleet.jobs.store import current_store
from certfleet.models.orm import DeploymentStatus
from certfleet.tasks.build import release_connections
from certfleet.tasks.deploy_group import deploy_group
from certfleet.tasks.deployment import restore_target
from certfleet.tasks.restore_group import roll_back_deployments
from certfleet.tasks.rotation import server_limit

GO = "go"


class NotDeployed(RuntimeError):
    """A certificate of the run was not deployed: the run ends Failed with the reason, which rotate-batch reads."""


def deploy_everywhere(
    certificate_id: int, holding: Collection[int] = (), only: list[int] | None = None
) -> tuple[list[int], str | None]:
    """All of the certificate's targets this process reaches (or those of them in `only`: the others wait for
    their servers' maintenance windows), holding a slot of each server's limit (but those of the servers whose
    slots the caller already holds). A certificate is served everywhere or nowhere new: when one target fails, the ones
    already done are put back. Returns the deployments done and the failure (None when all are Deployed)."""
    store = current_store()
    targets = store.certificate_targets(certificate_id)
    if only is not None:
        targets = [t for t in targets if t in set(only)]
    if not targets:
        return [], "the certificate has no deployment targets any more"
    servers = sorted({store.target_job(certificate_id, t).server.server_id for t in targets} - set(holding))
    done: list[int] = []
    failure = None
    with concurrency([server_limit(s) for s in servers], strict=True) if servers else nullcontext():
        for target_id in targets:
            try:
                status, deployment_id = deploy_steps(certificate_id, target_id)
            except Exception as exc:  # could not even start (another deployment running on the target)
                failure = f"target {target_id}: {exc}"
                break
            if status != DeploymentStatus.DEPLOYED.value:
                failure = f"target {target_id}: {status}"
                break
            done.append(deployment_id)
        if failure is not None:
            for deployment_id in reversed(done):
                restore_target(deployment_id, "rotate-batch: another target of the certificate failed")
            done = []
    return done, failure


def _roll_back(deployment_ids: list[int], reason: str) -> None:
    """A server's deployments put back together (one config check, one reload: certfleet.tasks.restore_group),
    the others one by one; a deployment the grouped rollback could not settle is tried alone (the journal marks
    what is back already). Refusals are not raised: rotate-batch reads each deployment's status."""
    logger = get_run_logger()
    try:
        outcomes = roll_back_deployments(deployment_ids, reason)
    except Exception as exc:
        logger.warning("grouped rollback failed (%s): rolling back one by one", exc)
        outcomes = {}
    for deployment_id in deployment_ids:
        if deployment_id in outcomes:
            continue
        try:
            restore_target(deployment_id, reason)
        except Exception as exc:  # a refusal is recorded by the central run from the deployment's status
            logger.warning("deployment %s not rolled back: %s", deployment_id, exc)


def batch_wants(go_variable: str) -> bool:
    from prefect.variables import Variable

    return Variable.get(go_variable, default=None) == GO


@flow(name="rotate-on-bot")  # the run keeps the name rotate-batch gives it (server, bot)
def rotate_on_bot(
    batch_key: str,
    certificate_ids: list[int] | None = None,
    go_variable: str | None = None,
    roll_back_deployment_ids: list[int] | None = None,
    reason: str = "",
    target_ids: dict[str, list[int]] | None = None,
    server_id: int | None = None,
) -> int:
    """Deploy the (already issued) certificates, stopping at the first failure or when the batch no longer wants
    more; or roll the given deployments back. With `server_id` (the server rotate-batch handed over), the
    certificates whose one target is on it are deployed together first, with one config test and one reload
    (certfleet.tasks.deploy_group, journalled through the bot API); the others one after another. `target_ids`
    (by certificate id) limits a certificate to those targets (its others wait for their maintenance windows): such
    a certificate is deployed alone. Returns how many were attempted."""
    logger = get_run_logger()
    attempted = 0
    try:
        if roll_back_deployment_ids:
            attempted += len(roll_back_deployment_ids)
            _roll_back(roll_back_deployment_ids, reason or f"rotate-batch {batch_key} stopped")
        alone = list(certificate_ids or [])
        together = [c for c in alone if str(c) not in (target_ids or {})]
        if server_id is not None and together and go_variable is not None and batch_wants(go_variable):
            attempted += len(together)
            with concurrency([server_limit(server_id)], strict=True):
                outcome = deploy_group(server_id, together[0], together)
            if outcome.failed:  # the rest waits for rotate-batch's decision, as after a failure one by one
                failures = "; ".join(f"certificate {c}: {why}" for c, why in outcome.failed.items())
                raise NotDeployed(f"not deployed: {failures}")
            attempted -= len(outcome.alone)
            alone = [c for c in alone if c not in together or c in outcome.alone]
        for certificate_id in alone:
            if go_variable is None or not batch_wants(go_variable):
                logger.info("batch %s wants no more certificates: stopping before %s", batch_key, certificate_id)
                break
            attempted += 1
            _done, failure = deploy_everywhere(certificate_id, only=(target_ids or {}).get(str(certificate_id)))
            if failure is not None:  # the rest of the run waits for rotate-batch's decision
                raise NotDeployed(f"certificate {certificate_id} not deployed: {failure}")
    finally:
        release_connections()
    return attempted
