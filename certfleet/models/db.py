"""The one place engines and sessions are made, and where the schema is migrated."""

from __future__ import annotations

import contextlib
import os
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from certfleet.settings import ensure_private_dir, get_settings

if TYPE_CHECKING:  # alembic is imported by what migrates, not by every flow-run process that opens a session
    from alembic.config import Config

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


def _create_private_file(path: Path) -> None:
    """An empty SQLite file, 0600 in a 0700 directory, before SQLite creates it with the umask's mode.

    SQLite gives its -wal and -shm files the database file's mode, so those are private too.
    """
    ensure_private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().sqlalchemy_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                path = make_url(url).database
                if path and path != ":memory:" and not path.startswith("file:"):
                    _create_private_file(Path(path))
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
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = url or get_settings().sqlalchemy_url
    return cfg


def migrate(url: str | None = None) -> None:
    """Bring the schema to the newest revision (idempotent; safe at every start)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _makers.clear()
