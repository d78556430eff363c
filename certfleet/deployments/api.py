"""Which Prefect API this process talks to, set before Prefect is imported (Prefect reads its settings once).

Every Prefect client builds a TLS context when it is created, even for a plain-HTTP API, and loads its
trust file into it: PREFECT_API_SSL_CERT_FILE, else SSL_CERT_FILE, else certifi's 140 roots, about 40 ms
each time on these machines. A flow run creates several clients (the engine, the task runs, results), so
a short flow spent more time reading CA bundles than working (PrefectHQ/prefect#19106 proposes a shared
context; Prefect 3.9 has none). When the API is plain HTTP that context is never used, so certfleet points
it at a one-certificate file whose private key was never kept: loading it costs under a millisecond, and
it could not vouch for any server even if the URL later became https.
"""

from __future__ import annotations

import os
from pathlib import Path

from certfleet.settings import get_settings

PLACEHOLDER_TRUST_FILE = Path(__file__).with_name("placeholder-trust-anchor.pem")


def configured_api_url() -> str:
    """PREFECT_API_URL when set, else the embedded server's address."""
    settings = get_settings()
    return os.environ.get("PREFECT_API_URL") or f"http://{settings.host}:{settings.prefect_port}/api"


def skip_unused_trust_file() -> None:
    """For a plain-HTTP API: give Prefect's clients the one-certificate trust file, unless one was chosen."""
    os.environ.setdefault("PREFECT_API_SSL_CERT_FILE", str(PLACEHOLDER_TRUST_FILE))


def use_api(url: str) -> None:
    """Point this process, and the flow-run processes it starts, at the Prefect API `url`."""
    os.environ["PREFECT_API_URL"] = url
    if url.startswith("http://"):
        skip_unused_trust_file()


def prefect_auth_string() -> str | None:
    """The Prefect API's auth string, for clients and for bots (sent to them after they authenticate)."""
    return os.environ.get("PREFECT_API_AUTH_STRING") or None


def this_process_api() -> tuple[str, str | None]:
    """The Prefect API (URL, auth string) this process's Prefect client uses: inside a flow run, its own."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

    auth = PREFECT_API_AUTH_STRING.value()
    return str(PREFECT_API_URL.value() or configured_api_url()), auth.get_secret_value() if auth else None
