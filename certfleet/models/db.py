"""The one place engines and sessions are made, and where the schema is migrated."""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from certfleet.settings import get_settings

MIGRATIONS = Path(__file__).with_name("migrations")

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_makers: dict[str, sessionmaker[Session]] = {}


def _nfc(value: str | None) -> str | None:
    return None if value is None else unicodedata.normalize("NFC", value)


def _nfc_lower(value: str | None) -> str | None:
    return None if value is None else unicodedata.normalize("NFC", value).lower()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # PostgreSQL has normalize(x, NFC) and a Unicode lower(); SQLite gets them from Python (the Tags filter).
    dbapi_conn.create_function("certfleet_nfc", 1, _nfc, deterministic=True)
    dbapi_conn.create_function("certfleet_nfc_lower", 1, _nfc_lower, deterministic=True)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # flows write while the dashboard reads
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().sqlalchemy_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                path = url.split("///", 1)[-1]
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            _engines[url] = engine
            _makers[url] = sessionmaker(engine, expire_on_commit=False)
        return engine


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A unit of work: commits on success, rolls back on error. One per task, request or command."""
    url = url or get_settings().sqlalchemy_url
    get_engine(url)
    with _makers[url].begin() as session:
        yield session


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = url or get_settings().sqlalchemy_url
    return cfg


def migrate(url: str | None = None) -> None:
    """Bring the schema to the newest revision (idempotent; safe at every start)."""
    command.upgrade(alembic_config(url), "head")


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _makers.clear()
