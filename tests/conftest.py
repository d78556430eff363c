"""Shared fixtures: a fresh certfleet database (SQLite and PostgreSQL), Prefect's test harness, listeners."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before any certfleet module reads its settings: retries in tests wait milliseconds, not minutes.
os.environ["CERTFLEET_RETRY_BASE_DELAY_S"] = "0.01"
os.environ["CERTFLEET_VERIFY_TIMEOUT_S"] = "3"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # no network here: telemetry only logs errors
os.environ.pop("CERTFLEET_DATABASE_URL", None)
os.environ.pop("CERTFLEET_SECRET_KEY", None)

from prefect.events.clients import NullEventsClient
from prefect.events.worker import EventsWorker
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from certfleet.deployments.api import skip_unused_trust_file
from certfleet.models import db, encryption
from certfleet.models.orm import Base
from certfleet.settings import get_settings

skip_unused_trust_file()  # Prefect's test server is plain HTTP, as certfleet's embedded one

# Flows run in this process against several Prefect servers in turn (the harness, servers a test starts and
# stops). Prefect's one events worker keeps the API URL of the first event and, once that server is gone,
# queues every later event and waits for them without end at exit (a CI run hung ~50 minutes after the last
# test). No test reads Prefect events: this process sends none.
EventsWorker.set_client_override(NullEventsClient)

# CA emulators, Pebble and BIND: session fixtures shared by every module that uses them (one Pebble per run).
pytest_plugins = ["tests.emulators.fixtures"]

# An existing server to use instead of the cluster the tests start (an admin URL: it creates databases).
EXISTING_POSTGRES_URL = os.environ.get("CERTFLEET_TEST_POSTGRES_URL")


def use_settings(monkeypatch: pytest.MonkeyPatch, data_dir: Path, database_url: str | None) -> None:
    monkeypatch.setenv("CERTFLEET_DATA_DIR", str(data_dir))
    if database_url:
        monkeypatch.setenv("CERTFLEET_DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("CERTFLEET_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    encryption.reset_sealer()
    db.dispose_engines()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """The PostgreSQL server of this test run: `CERTFLEET_TEST_POSTGRES_URL`, else a cluster started here
    (one per run, in a temp directory on a free port); a missing PostgreSQL fails, never skips."""
    if EXISTING_POSTGRES_URL:
        yield EXISTING_POSTGRES_URL
        return
    from tests.postgres_cluster import ClusterError, running_cluster

    try:
        with running_cluster() as url:
            yield url
    except ClusterError as exc:
        pytest.fail(f"cannot start the tests' PostgreSQL: {exc}")


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """One throwaway database on the test run's PostgreSQL server for the whole session."""
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    name = f"certfleet_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {make_url(postgres_admin_url)!r} is needed by the database tests: {exc}")
    url = make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    db.migrate(url)
    yield url
    db.dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated, empty certfleet database and data directory; yields its URL."""
    if request.param == "sqlite":
        use_settings(monkeypatch, tmp_path / "data", None)
        url = get_settings().sqlalchemy_url
        db.migrate(url)
        yield url
        db.dispose_engines()
        return
    url = request.getfixturevalue("postgres_url")
    use_settings(monkeypatch, tmp_path / "data", url)
    yield url
    engine = db.get_engine(url)
    with engine.begin() as conn:
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    db.dispose_engines()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
