"""Tasks of smime-rollout: one per user and step (order + key + CSR, issue, deliver), each retried on its own."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from certfleet.models.db import session_scope
from certfleet.pki.keys import KeySpec
from certfleet.settings import get_settings
from certfleet.smime import rollout
from certfleet.smime.selection import UserFilter
from certfleet.tasks.retry import backoff_with_jitter, retry_if_transient

_BASE_DELAY = get_settings().retry_base_delay_s


def default_delivery_dir() -> Path:
    return get_settings().home / "smime-delivery"


@task(cache_policy=NO_CACHE, task_run_name="smime-users-to-order")
def users_to_order(
    user_ids: list[int] | None, user_filter: UserFilter | None = None, renewal: bool = False
) -> list[int]:
    with session_scope() as s:
        return rollout.users_to_order(s, user_ids, user_filter, renewal=renewal)


@task(cache_policy=NO_CACHE, task_run_name="smime-order-user-{user_id}", retries=2, retry_delay_seconds=[1, 5])
def order_and_csr(user_id: int, ca_connector_id: int | None, key: str, renewal: bool = False) -> int:
    """The order row, committed before any key exists; then, in a second transaction, the key and the CSR
    (CSR Pending). A retry or re-run finds the open order and only adds what is missing. Returns the order id."""
    with session_scope() as s:
        order_id = rollout.open_order(s, user_id, ca_connector_id)
    with session_scope() as s:
        rollout.make_csr(s, order_id, KeySpec.parse(key), renewal=renewal)
    return order_id


@task(
    cache_policy=NO_CACHE,
    task_run_name="smime-issue-order-{order_id}",
    retries=3,
    retry_delay_seconds=backoff_with_jitter(_BASE_DELAY, 3),
    retry_condition_fn=retry_if_transient,
)
def issue(order_id: int) -> None:
    with session_scope() as s:
        rollout.issue(s, order_id)


@task(cache_policy=NO_CACHE, task_run_name="smime-deliver-order-{order_id}", retries=2, retry_delay_seconds=[1, 5])
def deliver(order_id: int, delivery_dir: str) -> str:
    with session_scope() as s:
        return rollout.deliver(s, order_id, Path(delivery_dir))


@task(cache_policy=NO_CACHE, task_run_name="smime-failed-user-{user_id}")
def record_failure(user_id: int, message: str) -> None:
    with session_scope() as s:
        rollout.fail(s, user_id, message)
