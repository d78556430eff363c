"""Pointing Prefect at an API: a plain-HTTP API gets the placeholder trust file, an https API keeps its own."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from certfleet.deployments.api import PLACEHOLDER_TRUST_FILE, configured_api_url, use_api


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
