"""sync-directory: S/MIME users of Azure AD profiles, read through Microsoft Graph (certfleet.smime)."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from certfleet.tasks.smime import (
    failure_message,
    mark_sync_started,
    profile_ids,
    record_sync_failure,
    sync_profile_users,
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
