"""Secrets at rest: sealed with a key kept outside the database, never stored in plain text."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from certfleet.models import db, encryption, repo
from certfleet.models.bootstrap import initialize
from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector, Server, ServerConnection
from certfleet.settings import get_settings
from certfleet.tasks.build import local_ca_material

PASSWORD = "correct-horse-battery-staple-7731"
API_KEY = "apikey-SECRET-5f1e2d3c4b5a"


def _store_secrets() -> tuple[int, int]:
    with session_scope() as s:
        server = Server(
            description="web",
            host="10.0.0.5",
            connection=ServerConnection.SSH,
            server_type="nginx",
            username="deploy",
            password=PASSWORD,
        )
        connector = CAConnector(kind="digicert", name="DigiCert", settings={})
        repo.set_connector_credentials(connector, {"api_key": API_KEY})
        s.add_all([server, connector])
        s.flush()
        return server.id, connector.id


def test_no_secret_in_plain_text_in_the_database(database: str) -> None:
    boot = initialize()
    server_id, connector_id = _store_secrets()
    with session_scope() as s:
        material = local_ca_material(s, repo.get(s, CAConnector, boot.ca_connector_id))
        ca_key_pem = material.secret_part()["issuing_key_pem"]

    if database.startswith("sqlite"):
        with db.get_engine(database).connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        raw = Path(database.split("///", 1)[1]).read_bytes()
    else:
        with db.get_engine(database).connect() as conn:
            rows = conn.execute(text("SELECT password FROM servers UNION ALL SELECT credentials FROM ca_connectors"))
            raw = "\n".join(r[0] or "" for r in rows).encode()
    for secret in (PASSWORD, API_KEY, ca_key_pem.splitlines()[1], "PRIVATE KEY"):
        assert secret.encode() not in raw, f"{secret[:12]}... is stored in plain text"

    with session_scope() as s:  # and the application still reads them back
        assert repo.get(s, Server, server_id).password == PASSWORD
        assert repo.connector_credentials(repo.get(s, CAConnector, connector_id)) == {"api_key": API_KEY}


def test_stored_value_is_a_fernet_token_under_the_key_file(database: str) -> None:
    server_id, _ = _store_secrets()
    with db.get_engine(database).connect() as conn:
        token = conn.execute(text("SELECT password FROM servers WHERE id = :i"), {"i": server_id}).scalar_one()
    key = get_settings().key_file.read_text().strip()
    assert Fernet(key).decrypt(token.encode()).decode() == PASSWORD


def test_key_file_is_created_0600_outside_the_database(database: str) -> None:
    encryption.get_sealer()
    path = get_settings().key_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.parent == get_settings().home


def test_key_from_environment_variable(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("CERTFLEET_SECRET_KEY", key)
    get_settings.cache_clear()
    encryption.reset_sealer()
    server_id, _ = _store_secrets()
    with db.get_engine(database).connect() as conn:
        token = conn.execute(text("SELECT password FROM servers WHERE id = :i"), {"i": server_id}).scalar_one()
    assert Fernet(key).decrypt(token.encode()).decode() == PASSWORD
    assert not get_settings().key_file.exists()


def test_a_replaced_key_gives_a_clear_error(database: str) -> None:
    server_id, _ = _store_secrets()
    path = get_settings().key_file
    path.write_text(Fernet.generate_key().decode())
    encryption.reset_sealer()
    with (
        pytest.raises(encryption.SecretKeyError, match="cannot be decrypted with the configured key"),
        session_scope() as s,
    ):
        _ = repo.get(s, Server, server_id).password


def test_rotation_old_key_still_decrypts(database: str) -> None:
    server_id, _ = _store_secrets()
    path = get_settings().key_file
    old = path.read_text().strip()
    path.write_text(f"{Fernet.generate_key().decode()}\n{old}\n")
    encryption.reset_sealer()
    with session_scope() as s:
        assert repo.get(s, Server, server_id).password == PASSWORD


def test_world_readable_key_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTFLEET_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    encryption.reset_sealer()
    encryption.create_key_file(get_settings().key_file)
    os.chmod(get_settings().key_file, 0o644)
    with pytest.raises(encryption.SecretKeyError, match="chmod 600"):
        encryption.load_sealer(get_settings())


def test_malformed_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTFLEET_SECRET_KEY", "not-a-key")
    get_settings.cache_clear()
    with pytest.raises(encryption.SecretKeyError, match="CERTFLEET_SECRET_KEY is not a valid Fernet key"):
        encryption.load_sealer(get_settings())
    get_settings.cache_clear()
