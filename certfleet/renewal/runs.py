"""When renew-expiring last ran to its end: written by the flow, read by /metrics (and alerts built on it)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certfleet.models.db import session_scope
from certfleet.models.orm import CompletedRun, utcnow

RENEW_EXPIRING = "renew-expiring"


def record_completed(flow_name: str = RENEW_EXPIRING, at: datetime | None = None) -> None:
    """Upsert the flow's completion time (portable: update, else insert; a racing insert means the other won)."""
    at = at or utcnow()
    with session_scope() as s:
        if s.execute(update(CompletedRun).where(CompletedRun.flow_name == flow_name).values(completed_at=at)).rowcount:  # type: ignore[attr-defined]
            return
    try:
        with session_scope() as s:
            s.add(CompletedRun(flow_name=flow_name, completed_at=at))
    except IntegrityError:
        record_completed(flow_name, at)


def last_completed(session: Session | Connection, flow_name: str = RENEW_EXPIRING) -> datetime | None:
    return session.execute(select(CompletedRun.completed_at).where(CompletedRun.flow_name == flow_name)).scalar()
