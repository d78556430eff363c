"""The tests' own PostgreSQL: started from the packaged binaries in a temp directory, gone afterwards."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import EXISTING_POSTGRES_URL
from tests.postgres_cluster import running_cluster


def test_a_cluster_runs_on_its_own_port_from_its_own_directory_and_is_removed_after() -> None:
    with running_cluster() as url:
        assert make_url(url).port != 5432
        engine = create_engine(url)
        with engine.connect() as conn:
            data_directory = Path(conn.scalar(text("SHOW data_directory")))
            assert conn.scalar(text("SHOW listen_addresses")) == "127.0.0.1"
            assert conn.scalar(text("SELECT current_user")) == "postgres"
        engine.dispose()
        assert data_directory.is_dir()
        assert data_directory.parent.name.startswith("certfleet-pg-")
    assert not data_directory.parent.exists()


def test_the_session_uses_its_own_cluster_unless_told_otherwise(postgres_admin_url: str) -> None:
    if EXISTING_POSTGRES_URL:
        assert postgres_admin_url == os.environ["CERTFLEET_TEST_POSTGRES_URL"]
    else:
        assert make_url(postgres_admin_url).port != 5432
    engine = create_engine(postgres_admin_url)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT 1")) == 1
    engine.dispose()
