"""Tasks of revoke-smime-user: the serials to revoke, each revoked at its issuing connector and recorded, then the
user's status. Every step is idempotent: a re-run skips what is recorded, a CA's "already revoked" counts as done."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from certfleet.models.db import session_scope
from certfleet.revocation import parse_reason
from certfleet.settings import get_settings
from certfleet.smime import revocation
from certfleet.tasks.retry import backoff_with_jitter, retry_if_transient
from certfleet.tasks.revocation import revoke_serial

_BASE_DELAY = get_settings().retry_base_delay_s


@task(cache_policy=NO_CACHE, task_run_name="smime-serials-to-revoke-user-{user_id}")
def serials_to_revoke(user_id: int, serial_number: str | None) -> list[tuple[int, int, str]]:
    with session_scope() as s:
        return revocation.orders_to_revoke(s, user_id, serial_number)


@task(
    cache_policy=NO_CACHE,
    task_run_name="revoke-smime-serial-{serial}",
    retries=4,
    retry_delay_seconds=backoff_with_jitter(_BASE_DELAY, 4),
    retry_condition_fn=retry_if_transient,
)
def revoke_order(order_id: int, connector_id: int, serial: str, reason: str) -> str:
    revoke_serial(connector_id, serial, parse_reason(reason))
    with session_scope() as s:
        revocation.record_order_revoked(s, order_id, reason)
    return serial


@task(cache_policy=NO_CACHE, task_run_name="record-smime-revoked-user-{user_id}")
def record_user_revoked(user_id: int, reason: str) -> bool:
    with session_scope() as s:
        return revocation.finish(s, user_id, reason)
