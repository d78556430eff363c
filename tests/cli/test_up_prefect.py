"""How `certfleet up` chooses its Prefect API, against a real server (Prefect's own test server, no auth string)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from certfleet.cli.up import _start_prefect
from certfleet.models import encryption
from certfleet.settings import get_settings
from tests.conftest import use_settings


@pytest.fixture
def restored_environment() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()
    encryption.reset_sealer()


def test_attaching_to_a_server_without_an_auth_string_says_it_is_open(
    prefect_harness: None, restored_environment: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL

    port = urlparse(str(PREFECT_API_URL.value())).port
    assert port is not None
    monkeypatch.setenv("CERTFLEET_PREFECT_PORT", str(port))
    monkeypatch.delenv("CERTFLEET_PREFECT_AUTH_STRING", raising=False)
    use_settings(monkeypatch, tmp_path, None)
    said: list[str] = []
    api = _start_prefect(get_settings(), said.append)
    assert (api.started_here, api.auth_string, api.generated) == (False, None, False)
    assert said == [
        f"[yellow]Prefect: attached to the server on port {port}, which has no auth string: "
        "anyone who reaches it can start runs[/yellow]"
    ]
    assert not get_settings().prefect_auth_file.exists()  # nothing generated for a server certfleet did not start
    assert os.environ["PREFECT_API_URL"] == f"http://127.0.0.1:{port}/api"
