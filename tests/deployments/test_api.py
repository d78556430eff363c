"""Pointing Prefect at an API with its auth string: a plain-HTTP API gets the placeholder trust file, an https API
keeps its own; the auth string comes from the environment or is generated once and stored sealed."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from certfleet.deployments.api import (
    PLACEHOLDER_TRUST_FILE,
    auth_headers,
    configured_api_url,
    prefect_auth_string,
    use_api,
)
from certfleet.deployments.auth_string import AuthString, AuthStringError, ensure_auth_string
from certfleet.models import encryption
from certfleet.settings import get_settings
from tests.conftest import use_settings


@pytest.fixture(autouse=True)
def restored_environment() -> Iterator[None]:
    """`use_api` changes this process's environment and Prefect's settings: undo both for the next tests."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    if "prefect.context" in sys.modules:
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()


def prefect_sees(env: dict[str, str], url: str) -> dict[str, str | None]:
    """What a fresh process's Prefect settings hold after `use_api(url)` ran before Prefect was imported."""
    code = (
        "import json, sys; from certfleet.deployments.api import use_api; use_api(sys.argv[1]); "
        "from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_URL; "
        "print(json.dumps({'url': PREFECT_API_URL.value(), 'cert_file': PREFECT_API_SSL_CERT_FILE.value()}))"
    )
    out = subprocess.run([sys.executable, "-c", code, url], env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.fixture
def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}


def test_plain_http_api_uses_the_placeholder_trust_file(clean_env: dict[str, str]) -> None:
    seen = prefect_sees(clean_env, "http://127.0.0.1:4200/api")
    assert seen == {"url": "http://127.0.0.1:4200/api", "cert_file": str(PLACEHOLDER_TRUST_FILE)}


def test_https_api_keeps_the_system_trust(clean_env: dict[str, str]) -> None:
    seen = prefect_sees(
        {**clean_env, "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}, "https://prefect.example/api"
    )
    assert seen["cert_file"] != str(PLACEHOLDER_TRUST_FILE)


def test_a_chosen_trust_file_is_kept(clean_env: dict[str, str], tmp_path: Path) -> None:
    chosen = tmp_path / "corporate-roots.pem"
    chosen.write_bytes(PLACEHOLDER_TRUST_FILE.read_bytes())
    seen = prefect_sees({**clean_env, "PREFECT_API_SSL_CERT_FILE": str(chosen)}, "http://127.0.0.1:4200/api")
    assert seen["cert_file"] == str(chosen)


def test_the_placeholder_is_one_ca_certificate_that_loads() -> None:
    (cert,) = x509.load_pem_x509_certificates(PLACEHOLDER_TRUST_FILE.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    context = ssl.create_default_context(cafile=str(PLACEHOLDER_TRUST_FILE))
    assert context.cert_store_stats()["x509_ca"] == 1


def test_configured_url_defaults_to_the_embedded_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert configured_api_url().startswith("http://127.0.0.1:")
    monkeypatch.setenv("PREFECT_API_URL", "https://prefect.example/api")
    assert configured_api_url() == "https://prefect.example/api"


def test_use_api_sets_the_url_for_flow_run_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "http://old/api")
    use_api("https://prefect.example/api")
    assert os.environ["PREFECT_API_URL"] == "https://prefect.example/api"
    assert "PREFECT_API_SSL_CERT_FILE" not in os.environ


def test_use_api_gives_prefect_the_auth_string(clean_env: dict[str, str]) -> None:
    code = (
        "import json, sys; from certfleet.deployments.api import use_api; use_api(sys.argv[1], sys.argv[2]); "
        "from prefect.settings import get_current_settings; api = get_current_settings().api; "
        "print(json.dumps([api.url, api.auth_string.get_secret_value()]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "http://127.0.0.1:4200/api", "s3cret value"],
        env=clean_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["http://127.0.0.1:4200/api", "s3cret value"]


def test_use_api_after_prefect_was_imported_still_wins(clean_env: dict[str, str]) -> None:
    """Regression: the dashboard imports Prefect (through task modules) before `certfleet up` chose the API;
    Prefect kept its import-time settings, found no URL and started a temporary server of its own."""
    code = (
        "import json, sys; import certfleet.tasks.discovery; from prefect.settings import get_current_settings; "
        "assert get_current_settings().api.url is None; "
        "from certfleet.deployments.api import use_api; use_api(sys.argv[1], 'abc'); "
        "s = get_current_settings(); "
        "print(json.dumps([s.api.url, s.api.auth_string.get_secret_value(), s.server.ephemeral.enabled]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "http://127.0.0.1:4200/api"],
        env=clean_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["http://127.0.0.1:4200/api", "abc", False]


def test_without_an_auth_string_an_inherited_one_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "operator-chosen")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    use_api("http://127.0.0.1:4200/api")
    assert os.environ["PREFECT_API_AUTH_STRING"] == "operator-chosen"


def test_auth_headers_are_what_prefect_clients_send() -> None:
    assert auth_headers(None) == {}
    header = auth_headers("user:pa ss")["Authorization"]
    assert header.startswith("Basic ")
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == "user:pa ss"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("CERTFLEET_PREFECT_AUTH_STRING", raising=False)
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    use_settings(monkeypatch, tmp_path, None)
    yield tmp_path
    get_settings.cache_clear()
    encryption.reset_sealer()


def test_the_generated_auth_string_is_stored_sealed_and_reused(data_dir: Path) -> None:
    assert prefect_auth_string() is None  # nothing generated yet, nothing configured
    first = ensure_auth_string()
    assert first.generated
    assert len(first.value) >= 43  # 32 random bytes
    stored = get_settings().prefect_auth_file
    assert stored.stat().st_mode & 0o777 == 0o600
    assert first.value not in stored.read_text()  # sealed, not plain text
    assert prefect_auth_string() == first.value
    again = ensure_auth_string()
    assert (again.value, again.generated) == (first.value, False)


def test_the_environment_wins_and_is_used_exactly_as_given(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_auth_string()
    monkeypatch.setenv("CERTFLEET_PREFECT_AUTH_STRING", " my string ")
    get_settings.cache_clear()
    assert prefect_auth_string() == " my string "
    assert ensure_auth_string() == AuthString(" my string ", generated=False)


def test_an_empty_auth_string_is_refused(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTFLEET_PREFECT_AUTH_STRING", "")
    get_settings.cache_clear()
    with pytest.raises(AuthStringError, match="CERTFLEET_PREFECT_AUTH_STRING is empty"):
        prefect_auth_string()


def test_a_process_given_only_prefects_own_variable_uses_it(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flow run started by a worker inherits PREFECT_API_AUTH_STRING; certfleet's own setting comes first."""
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "from-the-worker")
    assert prefect_auth_string() == "from-the-worker"
    monkeypatch.setenv("CERTFLEET_PREFECT_AUTH_STRING", "certfleet's")
    get_settings.cache_clear()
    assert prefect_auth_string() == "certfleet's"


def test_this_process_api_gives_the_auth_string_itself() -> None:
    """check-bots writes queues with it: it failed on every run with an auth string set (Prefect unwraps it)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from certfleet.deployments.api import this_process_api

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:1/api", PREFECT_API_AUTH_STRING: "u:s3cret"}):
        assert this_process_api() == ("http://127.0.0.1:1/api", "u:s3cret")
