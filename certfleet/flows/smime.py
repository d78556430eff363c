"""sync-directory (S/MIME users of Azure AD profiles, read through Microsoft Graph) and smime-rollout (their
certificates from the built-in CA, DigiCert or emSign, delivered as PKCS#12 to a folder, an SMB share or by e-mail)."""

from __future__ import annotations

from collections import deque
from typing import Any, cast
from uuid import UUID

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from certfleet.smime.selection import UserFilter
from certfleet.tasks.smime import (
    failure_message,
    mark_sync_started,
    profile_ids,
    record_sync_failure,
    sync_profile_users,
)
from certfleet.tasks.smime_rollout import (
    Chunk,
    check_delivery,
    deliver,
    order_and_csr,
    poll,
    record_failures,
    submit,
    users_to_order,
)


@flow(name="sync-directory", flow_run_name="sync-directory-{profile_id}")
def sync_directory(profile_id: int | None = None) -> dict[str, dict[str, object]]:
    """Sync one profile (`profile_id`), or every profile (the schedule). Users are upserted, disabled or vanished
    ones flagged, never deleted; the profile records when it synced, the counts and any error.

    Fails when any profile failed (after its retries); the other profiles are still synced.
    """
    results: dict[str, dict[str, object]] = {}
    failures: list[str] = []
    for pid in profile_ids(profile_id):
        mark_sync_started(pid)
        try:
            results[str(pid)] = sync_profile_users(pid)
        except Exception as exc:
            message = failure_message(exc)
            record_sync_failure(pid, message)
            failures.append(f"profile {pid}: {message}")
    lines = ["| profile | read | added | updated | disabled | vanished | reported |", "|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        cells: list[str] = [key, *(str(r[k]) for k in ("seen", "added", "updated", "disabled", "vanished", "reported"))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"\n**Failed**: {f}" for f in failures]
    create_markdown_artifact("\n".join(lines), key="sync-directory", description="S/MIME directory sync")
    if failures:
        get_run_logger().error("; ".join(failures))
        raise RuntimeError("; ".join(failures))
    return results


def _threads(workers: int) -> TaskRunner[PrefectFuture[Any]]:
    # Prefect's TaskRunner generic is invariant, so its own thread pool runner needs a cast to type-check.
    return cast(TaskRunner[PrefectFuture[Any]], ThreadPoolTaskRunner(max_workers=workers))


# Users per chunk: enough that a task run's own cost is small next to its users' work, few enough that the
# chunks of a run keep every worker thread busy; at most WINDOW chunks are in flight, so the flow holds futures
# for a bounded number of users however many it rolls out.
CHUNK_MAX = 100
WORKERS = 8
WINDOW = 2 * WORKERS


def chunk_size(users: int, workers: int = WORKERS) -> int:
    return max(1, min(CHUNK_MAX, -(-users // workers)))


@flow(name="smime-rollout", flow_run_name="smime-rollout", task_runner=_threads(WORKERS))
def smime_rollout(
    user_ids: list[int] | None = None,
    ca_connector_id: int | None = None,
    delivery_dir: str | None = None,
    key: str = "rsa2048",
    user_filter: UserFilter | None = None,
    renewal: bool = False,
    delivery: str | None = None,
) -> dict[str, str]:
    """Order, issue and deliver S/MIME certificates for the users awaiting an order (or the given `user_ids`):
    order row -> key + CSR (CSR Pending) -> the CA's S/MIME certificate (Certificate Issued, Expiry Date; an order
    the CA holds pending is polled by its CA order id, as TLS orders are) -> PKCS#12 with a generated password
    delivered to the user's directory profile's own target, else the S/MIME delivery setting's: a folder, an SMB
    share or two e-mails (Certificate Installed). `delivery` names one target for the whole run (no secret: a
    reference, certfleet.smime.delivery_targets): `setting`, `profile:<id>` or `folder:<absolute path>`;
    `delivery_dir` (a folder) does the same.

    `user_filter`: only the users awaiting an order that match it (certfleet.smime.selection). `renewal`
    (renew-expiring sets it): the named `user_ids` whose certificate is installed get a new key (of the replaced
    certificate's type, else `key`) and certificate through the same steps, from the CA connector that issued the
    certificate they replace (the chosen or default one only when that one is disabled, recorded on the order);
    ignored, revoked and disabled or vanished users are still left alone.

    `ca_connector_id`: the built-in CA, a DigiCert or an emSign connector; default the user's profile's connector,
    else the built-in CA. Users are taken in chunks (at most CHUNK_MAX) that run side by side; each step of a chunk
    is its own task, retried on its own (certfleet.tasks.smime_rollout); a user that fails is reported and the
    others go on (a failed delivery leaves the user at Certificate Issued, with the reason on the order; a re-run
    delivers without ordering again). Returns user id -> where the PKCS#12 went, or the error.
    """
    if renewal and user_ids is None:
        raise ValueError("a renewal names its users (user_ids): it never re-keys every installed certificate")
    if delivery is not None:
        check_delivery(delivery)  # a bad choice fails the run before anything is ordered
    users = users_to_order(user_ids, user_filter, renewal)
    progress = create_progress_artifact(progress=0.0, key="smime-rollout", description="S/MIME users done")
    assert isinstance(progress, UUID)  # called from a sync flow: not a coroutine
    size = chunk_size(len(users))
    in_flight: deque[tuple[list[int], tuple[PrefectFuture[Chunk], ...]]] = deque()
    outcome: dict[str, str] = {}
    done = failures = 0

    def settle() -> None:
        nonlocal done, failures
        chunk_users, steps = in_flight.popleft()
        chunk = _outcome(chunk_users, steps)
        if chunk.failed:
            record_failures(chunk)
        for user_id in chunk_users:
            if user_id in chunk.delivered:
                outcome[str(user_id)] = chunk.delivered[user_id]
            else:
                failures += 1
                outcome[str(user_id)] = f"failed: {chunk.failed.get(user_id, 'did not complete')}"
        done += len(chunk_users)
        update_progress_artifact(progress, progress=100.0 * done / len(users))

    for start in range(0, len(users), size):
        chunk_users = users[start : start + size]
        ordered = order_and_csr.submit(chunk_users, ca_connector_id, key, renewal)
        placed = submit.submit(ordered)  # type: ignore[call-overload]  # Prefect resolves the future
        issued = poll.submit(placed)  # type: ignore[call-overload]
        delivered = deliver.submit(issued, delivery_dir, delivery)  # type: ignore[call-overload]
        in_flight.append((chunk_users, (ordered, placed, issued, delivered)))
        if len(in_flight) >= WINDOW:
            settle()
    while in_flight:
        settle()
    if not users:
        update_progress_artifact(progress, progress=100.0)
    if failures:
        raise RuntimeError(f"{failures} of {len(users)} S/MIME users failed; see the run's logs and their audit")
    return outcome


def _outcome(users: list[int], steps: tuple[PrefectFuture[Chunk], ...]) -> Chunk:
    """The chunk after its last step; when a step failed as a whole (after its retries), its users still going
    fail with that step's error."""
    reached = Chunk(users=users)
    for step in steps:
        step.wait()
        if step.state.is_completed():
            reached = step.result()
            continue
        try:
            step.result()
            message = "did not complete"
        except Exception as exc:
            message = failure_message(exc)
        going = reached.orders if step is not steps[0] else dict.fromkeys(users, 0)
        failed = {**reached.failed, **dict.fromkeys(going, message)}
        return reached.model_copy(update={"orders": {}, "failed": failed, "delivered": {}})
    return reached
