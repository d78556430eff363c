"""A group's audit events written together (repo.audits_together): the same rows as one by one, on SQLite and
PostgreSQL; nested blocks write once; an exception out of the block writes none of its events."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, Bot

pytestmark = pytest.mark.usefixtures("database")


def events() -> list[tuple[str, str, str | None, str, str | None]]:
    with session_scope() as s:
        rows = s.execute(
            select(
                AuditEvent.action, AuditEvent.object_type, AuditEvent.object_id, AuditEvent.outcome, AuditEvent.detail
            )
            .where(AuditEvent.actor == "test")
            .order_by(AuditEvent.id)
        )
        return [tuple(row) for row in rows]


def test_events_of_a_block_are_the_rows_one_by_one_would_write_in_order_with_their_own_times() -> None:
    a, b = 7, 8
    one, two = Bot(id=a), Bot(id=b)  # what an event names: the object's type and id
    with session_scope() as s:
        repo.audit(s, actor="test", action="alone", obj=one)
        with repo.audits_together(s):
            repo.audit(s, actor="test", action="first", obj=one, detail="d1")
            with repo.audits_together(s):  # nested: the outer block writes it
                repo.audit(s, actor="test", action="second", obj=two, outcome="failure")
            assert s.scalar(select(AuditEvent.id).where(AuditEvent.action == "first")) is None  # not yet written
    assert events() == [
        ("alone", "Bot", str(a), "success", None),
        ("first", "Bot", str(a), "success", "d1"),
        ("second", "Bot", str(b), "failure", None),
    ]
    with session_scope() as s:
        times = list(s.scalars(select(AuditEvent.at).where(AuditEvent.actor == "test").order_by(AuditEvent.id)))
    assert times == sorted(times)
    assert all(t.tzinfo is not None for t in times)


def test_an_exception_out_of_the_block_writes_none_of_its_events_and_closes_the_block() -> None:
    def failing_step(s: Session) -> None:
        with repo.audits_together(s):
            repo.audit(s, actor="test", action="lost", obj=Bot(id=7))
            raise RuntimeError("the step failed")

    with session_scope() as s:
        with pytest.raises(RuntimeError, match="the step failed"):
            failing_step(s)
        # The caller went on and commits: the failed block's event is not written, the next one is (no block open).
        repo.audit(s, actor="test", action="after", obj=Bot(id=7))
    assert [e[0] for e in events()] == ["after"]
