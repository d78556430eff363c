"""Tasks of sync-directory: read a profile's users from Azure AD / Microsoft Graph and upsert them.

A sync is one task (the Graph client and its token cannot cross task boundaries, and pages are applied as they
arrive so memory stays flat; the next page is read while one is written): each page is its own transaction, the
upsert is idempotent, and a retry (on a transient failure: Graph or Entra ID unreachable, throttling that did not
end) starts again from the first page.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from sqlalchemy import select

from certfleet.connectors.directory.azure_ad import AzureADDirectory, DirectoryUser
from certfleet.connectors.errors import ConnectorError
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import DirectoryProfile
from certfleet.settings import get_settings
from certfleet.smime import directory_sync
from certfleet.tasks.retry import backoff_with_jitter, retry_if_transient

_BASE_DELAY = get_settings().retry_base_delay_s


# Retried: a run started when a profile is saved can begin before the web request that saved it has committed.
@task(cache_policy=NO_CACHE, task_run_name="directory-profiles", retries=3, retry_delay_seconds=[1, 3, 10])
def profile_ids(profile_id: int | None) -> list[int]:
    with session_scope() as s:
        if profile_id is not None:
            return [repo.get(s, DirectoryProfile, profile_id).id]
        return list(s.scalars(select(DirectoryProfile.id).order_by(DirectoryProfile.id)))


@task(cache_policy=NO_CACHE, task_run_name="sync-started-profile-{profile_id}")
def mark_sync_started(profile_id: int) -> None:
    with session_scope() as s:
        directory_sync.mark_started(s, profile_id)


@task(
    cache_policy=NO_CACHE,
    task_run_name="sync-users-profile-{profile_id}",
    retries=3,
    retry_delay_seconds=backoff_with_jitter(_BASE_DELAY, 3),
    retry_condition_fn=retry_if_transient,
)
def sync_profile_users(profile_id: int) -> dict[str, object]:
    """Every page of /v1.0/users applied; then the profile's users Graph no longer lists are flagged."""
    with session_scope() as s:
        settings = directory_sync.directory_settings(repo.get(s, DirectoryProfile, profile_id))
    report = directory_sync.SyncReport()
    seen: set[str] = set()
    with AzureADDirectory(settings) as directory:
        for page in one_ahead(directory.pages()):
            with session_scope() as s:
                directory_sync.apply_page(s, profile_id, page, report)
            seen.update(u.user_principal_name for u in page if u.user_principal_name)
        get_run_logger().info(
            "profile %s: %d users read, %d throttled requests waited out, %d token refreshes",
            profile_id, report.seen, directory.throttled, directory.token_refreshes,
        )  # fmt: skip
    with session_scope() as s:
        directory_sync.finish(s, profile_id, seen, report)
    return report.as_json()


def one_ahead(pages: Iterator[list[DirectoryUser]]) -> Iterator[list[DirectoryUser]]:
    """The pages, each next one read from Graph (in one helper thread) while the caller writes this one to the
    database: the two waits overlap, and at most two pages are held. Errors surface where the page would have."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="graph-pages") as reader:
        ahead = reader.submit(next, pages, None)
        while (page := ahead.result()) is not None:
            ahead = reader.submit(next, pages, None)
            yield page


@task(cache_policy=NO_CACHE, task_run_name="sync-failed-profile-{profile_id}")
def record_sync_failure(profile_id: int, message: str) -> None:
    with session_scope() as s:
        directory_sync.mark_failed(s, profile_id, message, directory_sync.SyncReport())


def failure_message(exc: BaseException) -> str:
    """Connector errors are written for the user; anything else is named with its type."""
    if isinstance(exc, ConnectorError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
