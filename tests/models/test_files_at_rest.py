"""The data directory is 0700 and the SQLite database 0600 from the moment they are created."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from certfleet.models import db
from certfleet.models.bootstrap import initialize
from certfleet.models.db import session_scope
from certfleet.models.orm import Bot
from tests.conftest import use_settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The default umask of many systems: files 0644 and directories 0755 unless the code says otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_first_start_makes_a_private_data_directory_and_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loose_umask: None
) -> None:
    data = tmp_path / "fresh" / "data"
    use_settings(monkeypatch, data, None)
    initialize()
    with session_scope() as s:  # a write makes SQLite create its -wal and -shm files
        s.add(Bot(name="files-at-rest", work_queue="q"))
    try:
        assert _mode(data) == 0o700
        files = {p.name: _mode(p) for p in data.iterdir() if p.name.startswith("certfleet.db")}
        assert files == {"certfleet.db": 0o600, "certfleet.db-wal": 0o600, "certfleet.db-shm": 0o600}
        assert _mode(data / "secret.key") == 0o600
    finally:
        db.dispose_engines()


def test_a_database_url_in_a_new_directory_is_private_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loose_umask: None
) -> None:
    path = tmp_path / "elsewhere" / "fleet.db"
    use_settings(monkeypatch, tmp_path / "data", f"sqlite:///{path}")
    try:
        db.migrate()
        assert (_mode(path.parent), _mode(path)) == (0o700, 0o600)
    finally:
        db.dispose_engines()


def test_an_existing_data_directory_keeps_the_mode_its_owner_chose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loose_umask: None
) -> None:
    data = tmp_path / "shared"
    data.mkdir(mode=0o750)
    data.chmod(0o750)
    use_settings(monkeypatch, data, None)
    try:
        initialize()
        assert _mode(data) == 0o750
        assert _mode(data / "certfleet.db") == 0o600
    finally:
        db.dispose_engines()
