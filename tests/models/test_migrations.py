"""The Alembic migrations build exactly the schema the ORM declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from certfleet.models import db
from certfleet.models.orm import Base


def test_migrated_schema_matches_the_models(database: str) -> None:
    with db.get_engine(database).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_downgrade_and_upgrade_again(database: str) -> None:
    cfg = db.alembic_config(database)
    command.downgrade(cfg, "base")
    assert set(inspect(db.get_engine(database)).get_table_names()) <= {"alembic_version"}
    db.migrate(database)
    tables = set(inspect(db.get_engine(database)).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables


def test_migrate_is_idempotent(database: str) -> None:
    db.migrate(database)
    db.migrate(database)
    with db.get_engine(database).connect() as conn:
        head = ScriptDirectory.from_config(db.alembic_config(database)).get_current_head()
        assert MigrationContext.configure(conn).get_current_revision() == head
