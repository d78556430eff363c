"""renew-expiring's S/MIME part: find the users whose certificate is due and start one smime-rollout run for them."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from certfleet.deployments.starts import start_flow_run
from certfleet.models.db import session_scope
from certfleet.models.orm import utcnow
from certfleet.smime import renewal
from certfleet.smime.renewal import DueUser
from certfleet.tasks.retry import backoff_with_jitter, retry_if_transient

ROLLOUT_FLOW = "smime-rollout"


@task(cache_policy=NO_CACHE, task_run_name="find-due-smime-users")
def find_due_smime_users(now: datetime | None = None) -> list[DueUser]:
    with session_scope() as s:
        return renewal.find_due(s, now or utcnow())


@task(
    cache_policy=NO_CACHE,
    task_run_name="start-smime-renewal-{count}-users",
    retries=3,
    retry_delay_seconds=backoff_with_jitter(2.0, 3),
    retry_condition_fn=retry_if_transient,
)
def start_smime_renewal(due: list[DueUser], count: int) -> str:
    """One smime-rollout run re-keys, re-issues and re-delivers every due user; the key makes a repeat a no-op."""
    run = start_flow_run(
        ROLLOUT_FLOW,
        {"user_ids": [d.user_id for d in due], "renewal": True},
        idempotency_key=renewal.idempotency_key(due),
        tags=["certfleet", "renewal", "smime"],
    )
    return str(run.id)
