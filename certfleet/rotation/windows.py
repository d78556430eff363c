"""rotate-batch and the servers' maintenance windows: the same plan and Scheduled runs as a single deploy.

After a certificate is issued, its targets are split by `plan_deploys` (certfleet.bots.routing): the targets whose
servers may be deployed to now (inside the window, no window, or past the deadline before the served certificate
expires) are deployed by the batch; the others get the deploy-certificate run `start_deploy_runs` schedules in
Prefect for their window, and the item waits (state Waiting For Window: not a failure). A stopped batch cancels
those runs, as it rolls back what it deployed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from certfleet.bots.routing import NoRoute, cancel_waiting_runs, plan_deploys, start_deploy_runs
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, Server, utcnow


@dataclass(frozen=True)
class Split:
    now: list[int] | None  # targets the batch deploys now (None: all of them, as without windows)
    later: list[int]  # targets that wait for their server's window
    at: datetime  # the clock the split was made with (the runs are scheduled with the same one)


def any_window() -> bool:
    """Whether any server has a maintenance window: read once per run, so a fleet without windows (the usual
    case, and the benchmarks) pays nothing per certificate."""
    with session_scope() as s:
        return s.scalar(select(Server.id).where(Server.maintenance_cron.is_not(None)).limit(1)) is not None


def split(certificate_id: int, *, ignore_windows: bool) -> Split:
    now = utcnow()
    if ignore_windows:
        return Split(None, [], now)
    try:
        with session_scope() as s:
            plans = plan_deploys(s, certificate_id, ignore_window=ignore_windows, now=now)
    except NoRoute:  # no targets or no bot: the deployment itself reports it, as without windows
        return Split(None, [], now)
    later = [t for plan in plans if plan.at is not None for t in plan.target_ids]
    if not later:
        return Split(None, [], now)
    return Split([t for plan in plans if plan.at is None for t in plan.target_ids], later, now)


def schedule(certificate_id: int, chosen: Split) -> str:
    """The waiting targets' deploy-certificate runs, Scheduled in Prefect for their windows (one per bot and
    window). Returns the certificate's status reason, which says what waits until when."""
    start_deploy_runs(certificate_id, chosen.later, as_subflow=False, now=chosen.at)  # outlive the batch's run
    with session_scope() as s:
        return repo.get(s, Certificate, certificate_id).status_reason or "waiting for maintenance window"


def withdraw(certificate_id: int, reason: str) -> list[str]:
    """A stopped batch takes back the runs waiting for a window (they would deploy what it rolled back); the
    certificate's targets wait for nothing any more. Returns the runs cancelled."""
    with session_scope() as s:
        targets = [t.id for t in repo.get(s, Certificate, certificate_id).targets]
    cancelled = cancel_waiting_runs(certificate_id, targets, reason=reason)
    with session_scope() as s:
        cert = repo.get(s, Certificate, certificate_id)
        for target in cert.targets:
            target.deploy_waits_until = None
        if cert.status_reason and "maintenance window" in cert.status_reason:
            cert.status_reason = f"{reason}: the deployment that waited for the maintenance window is cancelled"
    return cancelled
