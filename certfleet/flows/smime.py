"""sync-directory (S/MIME users of Azure AD profiles, read through Microsoft Graph) and smime-rollout (their
certificates from the built-in CA, DigiCert or emSign, delivered as PKCS#12 to a folder, an SMB share or by e-mail)."""

from __future__ import annotations

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
    check_delivery,
    deliver,
    order_and_csr,
    poll,
    submit,
    users_to_order,
)
from certfleet.tasks.smime_rollout import record_failure as record_rollout_failure


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


@flow(name="smime-rollout", flow_run_name="smime-rollout", task_runner=_threads(8))
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
    else the built-in CA. Users run side by side; each step is its own task, retried on its own; a user that fails
    is reported and the others go on (a failed delivery leaves the user at Certificate Issued, with the reason on
    the order; a re-run delivers without ordering again). Returns user id -> where the PKCS#12 went, or the error.
    """
    if renewal and user_ids is None:
        raise ValueError("a renewal names its users (user_ids): it never re-keys every installed certificate")
    if delivery is not None:
        check_delivery(delivery)  # a bad choice fails the run before anything is ordered
    users = users_to_order(user_ids, user_filter, renewal)
    progress = create_progress_artifact(progress=0.0, key="smime-rollout", description="S/MIME users done")
    assert isinstance(progress, UUID)  # called from a sync flow: not a coroutine
    chains = []
    for user_id in users:
        ordered = order_and_csr.submit(user_id, ca_connector_id, key, renewal)
        placed = submit.submit(ordered)  # type: ignore[call-overload]  # Prefect resolves the future
        issued = poll.submit(ordered, wait_for=[placed])  # type: ignore[call-overload]
        delivered = deliver.submit(ordered, delivery_dir, delivery, wait_for=[issued])  # type: ignore[call-overload]
        chains.append((user_id, (ordered, placed, issued, delivered)))
    outcome: dict[str, str] = {}
    failures = 0
    for done, (user_id, steps) in enumerate(chains, start=1):
        steps[-1].wait()
        if steps[-1].state.is_completed():
            outcome[str(user_id)] = steps[-1].result()
        else:
            failures += 1
            message = _first_failure(steps)
            record_rollout_failure(user_id, message)
            outcome[str(user_id)] = f"failed: {message}"
        if done % 10 == 0 or done == len(chains):
            update_progress_artifact(progress, progress=100.0 * done / len(chains))
    if not users:
        update_progress_artifact(progress, progress=100.0)
    if failures:
        raise RuntimeError(f"{failures} of {len(users)} S/MIME users failed; see the run's logs and their audit")
    return outcome


def _first_failure(steps: tuple[PrefectFuture[Any], ...]) -> str:
    """The error of the first step that failed (the later ones only say their upstream failed)."""
    for step in steps:
        step.wait()
        if step.state.is_failed() or step.state.is_crashed():
            try:
                step.result()
            except Exception as exc:
                return failure_message(exc)
    return "did not complete"
