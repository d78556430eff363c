"""Tasks of smime-rollout: one per step (order + key + CSR, submit, poll, deliver) and chunk of users.

A task per user and step cost the rollout more than the certificate work itself (a Prefect task run costs
milliseconds, a P-256 certificate a fraction of one), so each step works on a chunk of users, with one database
transaction per phase of the chunk, and is retried on its own, as a whole. Every step is idempotent per user (the
order row is found again, the CSR kept, a placed order polled rather than placed again, the sealed PKCS#12 sent
again), so a retried chunk only redoes what its users still lack.

Per user, inside a chunk: a permanent error (the CA refused, a 5xx from the mail server) fails that user and the
others go on; a transient one (the CA or the share unreachable, an order the CA still holds) makes the whole step
retried after its other users are done, and on the step's last attempt fails only the users it still concerns.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet.connectors.base import CertificateAuthority, IssueResult
from certfleet.connectors.errors import (
    ConnectorError,
    OrderStillPending,
    PermanentConnectorError,
    TransientConnectorError,
)
from certfleet.models.db import session_scope
from certfleet.models.orm import SmimeOrder, SmimeUser
from certfleet.pki.keys import KeySpec
from certfleet.settings import get_settings
from certfleet.smime import delivery, delivery_targets, rollout, senders
from certfleet.smime.selection import UserFilter
from certfleet.tasks.retry import backoff_with_jitter, retry_if_transient

_BASE_DELAY = get_settings().retry_base_delay_s


class Chunk(BaseModel):
    """Where a chunk of users stands after a step: ids only, never key material."""

    users: list[int]  # the chunk, in order
    orders: dict[int, int] = Field(default_factory=dict)  # user id -> order id, for the users still going
    failed: dict[int, str] = Field(default_factory=dict)  # user id -> why, over every step so far
    delivered: dict[int, str] = Field(default_factory=dict)  # user id -> where the PKCS#12 went (last step)


def failure_message(exc: BaseException) -> str:
    """Connector errors are written for the user; anything else is named with its type."""
    if isinstance(exc, ConnectorError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _preload(session: Session, order_ids: Collection[int] = (), user_ids: Collection[int] = ()) -> None:
    """The chunk's orders and users in two queries, so the per-user steps find them in the session's identity map
    instead of asking the database once per user and step."""
    orders = list(session.scalars(select(SmimeOrder).where(SmimeOrder.id.in_(order_ids)))) if order_ids else []
    wanted = set(user_ids) | {o.user_id for o in orders}
    if wanted:
        list(session.scalars(select(SmimeUser).where(SmimeUser.id.in_(wanted))))


def _last_attempt() -> bool:
    """True on a task's last attempt (or outside a task run): nothing is left to retry, so report instead."""
    context = TaskRunContext.get()
    return context is None or context.task_run.run_count > context.task.retries


def _settle(chunk: Chunk, going: dict[int, int], failed: dict[int, str], retry: dict[int, str], what: str) -> Chunk:
    """The chunk after a step; raises (so Prefect retries the step) while users are left with a transient error."""
    if retry and not _last_attempt():
        user_id, message = next(iter(retry.items()))
        error = OrderStillPending if what == "still pending" else TransientConnectorError
        raise error(f"{len(retry)} of the chunk's users {what} (user {user_id}: {message}); the step is retried")
    return chunk.model_copy(
        update={"orders": going, "failed": {**chunk.failed, **failed, **retry}, "delivered": dict(chunk.delivered)}
    )


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


@task(
    cache_policy=NO_CACHE,
    task_run_name="smime-order-users-{user_ids[0]}-and-on",
    retries=2,
    retry_delay_seconds=[1, 5],
)
def order_and_csr(user_ids: list[int], ca_connector_id: int | None, key: str, renewal: bool = False) -> Chunk:
    """The order rows of the chunk, committed before any key exists; then, in a second transaction, the keys and
    CSRs (CSR Pending). A retry or re-run finds the open orders and only adds what is missing."""
    chunk = Chunk(users=list(user_ids))
    going: dict[int, int] = {}
    failed: dict[int, str] = {}
    with session_scope() as s:
        _preload(s, user_ids=user_ids)
        for user_id in user_ids:
            try:  # a refused connector is refused before the user's order row is added
                going[user_id] = rollout.open_order(s, user_id, ca_connector_id, renewal=renewal)
            except ConnectorError as exc:
                failed[user_id] = failure_message(exc)
    spec = KeySpec.parse(key)
    with session_scope() as s:
        _preload(s, going.values())
        for order_id in going.values():
            rollout.make_csr(s, order_id, spec, renewal=renewal)
    return _settle(chunk, going, failed, {}, "")


def _place_or_poll(
    chunk: Chunk, *, place: bool
) -> tuple[dict[int, int], dict[int, int], dict[int, str], dict[int, str]]:
    """(issued, pending, failed, retry) after one round of CA calls for the chunk's orders: `place` sends the
    orders never placed (the placement counted first, in its own transaction); else the pending ones are polled."""
    issued: dict[int, int] = {}
    pending: dict[int, int] = {}
    failed: dict[int, str] = {}
    retry: dict[int, str] = {}
    calls: dict[int, tuple[int, rollout.CaCall]] = {}
    with session_scope() as s:  # the placements are counted before the CA is called
        _preload(s, chunk.orders.values())
        for user_id, order_id in chunk.orders.items():
            try:
                call = rollout.next_ca_call(s, order_id)
            except PermanentConnectorError as exc:
                failed[user_id] = failure_message(exc)
                continue
            if call is None:
                issued[user_id] = order_id
            elif call.ca_order_id is not None and place:
                pending[user_id] = order_id  # placed by an earlier attempt: poll takes over
            elif call.ca_order_id is None and not place:
                failed[user_id] = f"S/MIME order {order_id} is pending but has no CA order id"
            else:
                calls[user_id] = (order_id, call)
    results: dict[int, IssueResult] = {}
    refused: dict[int, str] = {}
    with session_scope() as s:  # the CA calls; a remote CA's journal writes in its own transactions
        built: dict[int, CertificateAuthority] = {}
        for user_id, (_, call) in calls.items():
            try:
                results[user_id] = rollout.call_ca(s, call, built)
            except PermanentConnectorError as exc:
                refused[user_id] = str(exc)
            except TransientConnectorError as exc:
                retry[user_id] = failure_message(exc)
    with session_scope() as s:
        _preload(s, [order_id for order_id, _ in calls.values()])
        for user_id, message in refused.items():
            rollout.fail_order(s, calls[user_id][0], message)
            failed[user_id] = message
        for user_id, result in results.items():
            order_id = calls[user_id][0]
            try:
                (issued if rollout.record_result(s, order_id, result) else pending)[user_id] = order_id
            except PermanentConnectorError as exc:
                rollout.fail_order(s, order_id, str(exc))
                failed[user_id] = str(exc)
    return issued, pending, failed, retry


@task(
    cache_policy=NO_CACHE,
    task_run_name="smime-submit-users-{chunk.users[0]}-and-on",
    retries=4,
    retry_delay_seconds=backoff_with_jitter(_BASE_DELAY, 4),
    retry_condition_fn=retry_if_transient,
)
def submit(chunk: Chunk) -> Chunk:
    """Send each order to its CA once. An order the CA issues at once is Certificate Issued; one it holds pending
    (or an earlier attempt already placed) goes on to `poll`, by the CA's order id, as for TLS orders."""
    issued, pending, failed, retry = _place_or_poll(chunk, place=True)
    return _settle(chunk, {**issued, **pending}, failed, retry, "could not reach their CA")


@task(
    cache_policy=NO_CACHE,
    task_run_name="smime-poll-users-{chunk.users[0]}-and-on",
    retries=30,
    retry_delay_seconds=backoff_with_jitter(_BASE_DELAY, 30, cap=600),
    retry_condition_fn=retry_if_transient,
)
def poll(chunk: Chunk) -> Chunk:
    """Ask the CA about the pending orders; while any is still pending, Prefect asks again later (the issued ones
    are not asked again)."""
    issued, pending, failed, retry = _place_or_poll(chunk, place=False)
    for user_id, order_id in pending.items():
        retry[user_id] = f"S/MIME order {order_id} is still pending at the CA"
    if retry and any("still pending" not in m for m in retry.values()):
        return _settle(chunk, issued, failed, retry, "could not reach their CA")
    return _settle(chunk, issued, failed, retry, "still pending")


@task(
    cache_policy=NO_CACHE,
    task_run_name="smime-deliver-users-{chunk.users[0]}-and-on",
    retries=2,
    retry_delay_seconds=backoff_with_jitter(_BASE_DELAY, 2),
    retry_condition_fn=retry_if_transient,
)
def deliver(chunk: Chunk, delivery_dir: str | None, delivery_choice: str | None = None) -> Chunk:
    """Package (committed before anything leaves, so a retry sends the same file and password), deliver each order
    to its target (the folder `delivery_dir`, else the run's `delivery_choice`, else the user's profile's own
    target, else the S/MIME delivery setting's), then mark the orders delivered. No session is held while the
    share or the mail server is talked to. Never returns a password."""
    done: dict[int, str] = {}
    failed: dict[int, str] = {}
    retry: dict[int, str] = {}
    parcels: dict[int, tuple[int, senders.Parcel]] = {}
    with session_scope() as s:
        if delivery_dir:
            targets = dict.fromkeys(chunk.orders, delivery.folder_target(delivery_dir))
        else:
            targets = delivery_targets.chunk_targets(s, list(chunk.orders), delivery_choice)
        _preload(s, chunk.orders.values())
        for user_id, order_id in chunk.orders.items():
            try:
                parcel = rollout.package(s, order_id)
            except PermanentConnectorError as exc:
                failed[user_id] = failure_message(exc)
                continue
            if parcel is None:
                done[user_id] = rollout.delivered_to(s, order_id)
            else:
                parcels[user_id] = (order_id, parcel)
    sent: dict[int, tuple[int, str]] = {}
    for user_id, (order_id, parcel) in parcels.items():
        try:
            sent[user_id] = (order_id, senders.deliver(targets[user_id], parcel, _mailed(order_id)))
        except TransientConnectorError as exc:
            retry[user_id] = failure_message(exc)
        except (PermanentConnectorError, OSError) as exc:
            failed[user_id] = failure_message(exc)
    parcels.clear()  # the bundles and passwords leave memory before the chunk's result is returned
    if sent:
        with session_scope() as s:
            _preload(s, [order_id for order_id, _ in sent.values()])
            for user_id, (order_id, where) in sent.items():
                rollout.delivered(s, order_id, where)
                done[user_id] = where
    settled = _settle(chunk, {}, failed, retry, "could not be delivered")
    settled.delivered = done
    return settled


def _mailed(order_id: int) -> Callable[[], None]:
    def mailed() -> None:  # the PKCS#12 mail went out: a retry sends only the password mail
        with session_scope() as s:
            rollout.mark_mailed(s, order_id)

    return mailed


@task(cache_policy=NO_CACHE, task_run_name="smime-failed-users-{chunk.users[0]}-and-on")
def record_failures(chunk: Chunk) -> None:
    """The reason on each failed user's open order, and an audit event per user, in one transaction."""
    with session_scope() as s:
        for user_id, message in chunk.failed.items():
            rollout.fail(s, user_id, message)
