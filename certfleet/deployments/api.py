"""Which Prefect API this process talks to, with which auth string: `use_api` is the one place that says so.

Prefect reads its settings from the environment once, when it is imported; `use_api` sets the environment
(which the flow-run processes this process starts inherit) and, when Prefect was imported earlier (the
dashboard imports task modules), refreshes Prefect's settings, so no client here ever talks to another API.
A client with no API URL would start a temporary server of its own (on SQLite in PREFECT_HOME, next to the
real one's database): `use_api` forbids that, so a missing URL is an error instead of a second server.

Every Prefect client builds a TLS context when it is created, even for a plain-HTTP API, and loads its
trust file into it: PREFECT_API_SSL_CERT_FILE, else SSL_CERT_FILE, else certifi's 140 roots, about 40 ms
each time on these machines. A flow run creates several clients (the engine, the task runs, results), so
a short flow spent more time reading CA bundles than working (PrefectHQ/prefect#19106 proposes a shared
context; Prefect 3.9 has none). When the API is plain HTTP that context is never used, so certfleet points
it at a one-certificate file whose private key was never kept: loading it costs under a millisecond, and
it could not vouch for any server even if the URL later became https.
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

from certfleet.deployments.auth_string import configured_auth_string
from certfleet.settings import get_settings

PLACEHOLDER_TRUST_FILE = Path(__file__).with_name("placeholder-trust-anchor.pem")


def configured_api_url() -> str:
    """PREFECT_API_URL when set, else the embedded server's address."""
    settings = get_settings()
    return os.environ.get("PREFECT_API_URL") or f"http://{settings.host}:{settings.prefect_port}/api"


def skip_unused_trust_file() -> None:
    """For a plain-HTTP API: give Prefect's clients the one-certificate trust file, unless one was chosen."""
    os.environ.setdefault("PREFECT_API_SSL_CERT_FILE", str(PLACEHOLDER_TRUST_FILE))


def prefect_auth_string() -> str | None:
    """The Prefect API's auth string, for clients and for bots (sent to them after they authenticate):
    CERTFLEET_PREFECT_AUTH_STRING, else the one `certfleet up` generated, else PREFECT_API_AUTH_STRING."""
    return configured_auth_string() or os.environ.get("PREFECT_API_AUTH_STRING") or None


def auth_headers(auth_string: str | None) -> dict[str, str]:
    """The header Prefect's clients send (HTTP Basic with the auth string as the whole credential)."""
    if not auth_string:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode("utf-8")).decode("ascii")}


def use_api(url: str, auth_string: str | None = None) -> None:
    """Point this process, and the flow-run processes it starts, at the Prefect API `url`.

    With `auth_string` None an inherited PREFECT_API_AUTH_STRING (an operator's own setting) is kept.
    """
    wanted = {"PREFECT_API_URL": url, "PREFECT_SERVER_EPHEMERAL_ENABLED": "false"}
    if auth_string is not None:
        wanted["PREFECT_API_AUTH_STRING"] = auth_string
    os.environ.update(wanted)
    if url.startswith("http://"):
        skip_unused_trust_file()
    _refresh_prefect_settings(url, os.environ.get("PREFECT_API_AUTH_STRING"))


def use_configured_api() -> str:
    """`use_api` with certfleet's settings (PREFECT_API_URL or the embedded server); returns the URL."""
    url = configured_api_url()
    use_api(url, prefect_auth_string())
    return url


def _refresh_prefect_settings(url: str, auth_string: str | None) -> None:
    if "prefect.context" not in sys.modules:
        return  # Prefect will read the environment when it is imported
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    current = get_current_settings().api
    current_auth = current.auth_string.get_secret_value() if current.auth_string else None
    if current.url != url or current_auth != auth_string:
        refresh_global_settings_context()


def this_process_api() -> tuple[str, str | None]:
    """The Prefect API (URL, auth string) this process's Prefect client uses: inside a flow run, its own."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL
    from pydantic import SecretStr

    auth: object = PREFECT_API_AUTH_STRING.value()  # Prefect 3.8 unwraps the SecretStr here; older versions did not
    secret = auth.get_secret_value() if isinstance(auth, SecretStr) else auth
    return str(PREFECT_API_URL.value() or configured_api_url()), str(secret) if secret else None
