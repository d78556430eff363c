"""Alembic environment: certfleet's own schema (Prefect migrates its database itself)."""

from __future__ import annotations

from alembic import context

from certfleet.models.db import get_engine
from certfleet.models.orm import Base

config = context.config
engine = get_engine(config.attributes["url"])

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=engine.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    context.run_migrations()
