"""Tasks of smime-rollout: one per user and step (order + key + CSR, submit, poll, deliver), each retried on its own."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from certfleet.connectors.errors import OrderStillPending, PermanentConnectorError
from certfleet.models.db import session_scope
from certfleet.pki.keys import KeySpec
from certfleet.settings import get_settings
from certfleet.smime import delivery, delivery_targets, rollout, senders
from certfleet.smime.selection import UserFilter
from certfleet.tasks.retry import backoff_with_jitter, retry_if_transient

_BASE_DELAY = get_settings().retry_base_delay_s


@task(cache_policy=NO_CACHE, task_run_name="smime-users-to-order")
def users_to_order(
    user_ids: list[int] | None, user_filter: UserFilter | None = None, renewal: bool = False
) -> list[int]:
    with session_scope() as s:
        return rollout.users_to_order(s, user_ids, user_filter, renewal=renewal)


@task(cache_policy=NO_CACHE, task_run_name="smime-check-delivery")
def check_delivery(choice: str) -> str:
    """The run's delivery choice names a target (certfleet.smime.delivery_targets); returns its description."""
    with session_scope() as s:
        return delivery.describe(delivery_targets.run_target(s, choice))


@task(cache_policy=NO_CACHE, task_run_name="smime-order-user-{user_id}", retries=2, retry_delay_seconds=[1, 5])
def order_and_csr(user_id: int, ca_connector_id: int | None, key: str, renewal: bool = False) -> int:
    """The order row, committed before any key exists; then, in a second transaction, the key and the CSR
    (CSR Pending). A retry or re-run finds the open order and only adds what is missing. Returns the order id."""
    with session_scope() as s:
        order_id = rollout.open_order(s, user_id, ca_connector_id, renewal=renewal)
    with session_scope() as s:
        rollout.make_csr(s, order_id, KeySpec.parse(key), renewal=renewal)
    return order_id


@task(
    cache_policy=NO_CACHE,
    task_run_name="smime-submit-order-{order_id}",
    retries=4,
    retry_delay_seconds=backoff_with_jitter(_BASE_DELAY, 4),
    retry_condition_fn=retry_if_transient,
)
def submit(order_id: int) -> bool:
    """Send the order to its CA once. True when issued at once, False when the CA holds it pending (or an earlier
    attempt already placed it): `poll` takes over, by the CA's order id, as for TLS orders."""
    with session_scope() as s:  # the placement is counted before the CA call
        call = rollout.next_ca_call(s, order_id)
    if call is None:
        return True
    if call.ca_order_id is not None:
        return False
    return _call_and_record(order_id, call)


@task(
    cache_policy=NO_CACHE,
    task_run_name="smime-poll-order-{order_id}",
    retries=30,
    retry_delay_seconds=backoff_with_jitter(_BASE_DELAY, 30, cap=600),
    retry_condition_fn=retry_if_transient,
)
def poll(order_id: int) -> None:
    """Ask the CA about a pending order; OrderStillPending makes Prefect ask again later."""
    with session_scope() as s:
        call = rollout.next_ca_call(s, order_id)
    if call is None:
        return
    if call.ca_order_id is None:
        raise PermanentConnectorError(f"S/MIME order {order_id} is pending but has no CA order id")
    if not _call_and_record(order_id, call):
        raise OrderStillPending(f"S/MIME order {order_id} (CA order {call.ca_order_id}) is still pending at the CA")


def _call_and_record(order_id: int, call: rollout.CaCall) -> bool:
    try:
        with session_scope() as s:  # the CA call; a remote CA's journal writes in its own transactions
            result = rollout.call_ca(s, call)
        with session_scope() as s:
            return rollout.record_result(s, order_id, result)
    except PermanentConnectorError as exc:
        with session_scope() as s:
            rollout.fail_order(s, order_id, str(exc))
        raise


@task(
    cache_policy=NO_CACHE,
    task_run_name="smime-deliver-order-{order_id}",
    retries=2,
    retry_delay_seconds=backoff_with_jitter(_BASE_DELAY, 2),
    retry_condition_fn=retry_if_transient,
)
def deliver(order_id: int, delivery_dir: str | None, delivery_choice: str | None = None) -> str:
    """Package (committed before anything leaves, so a retry sends the same file and password), deliver to the
    target (the folder `delivery_dir`, else the run's `delivery_choice`, else the user's profile's own target, else
    the S/MIME delivery setting's), then mark the order delivered. No session is held while the share or the mail
    server is talked to. Returns where it went; never the password."""
    with session_scope() as s:
        parcel = rollout.package(s, order_id)
        if delivery_dir:
            target = delivery.folder_target(delivery_dir)
        else:
            target = delivery_targets.order_target(s, order_id, delivery_choice)
        if parcel is None:
            return rollout.delivered_to(s, order_id)

    def mailed() -> None:
        with session_scope() as s:
            rollout.mark_mailed(s, order_id)

    where = senders.deliver(target, parcel, mailed)
    with session_scope() as s:
        rollout.delivered(s, order_id, where)
    return where


@task(cache_policy=NO_CACHE, task_run_name="smime-failed-user-{user_id}")
def record_failure(user_id: int, message: str) -> None:
    with session_scope() as s:
        rollout.fail(s, user_id, message)
