"""Azure AD (Microsoft Entra ID) users through Microsoft Graph, with an msal client-credentials token.

- The token comes from `msal.ConfidentialClientApplication.acquire_token_for_client` on its own
  `requests.Session` with `trust_env=False` and `verify=` the configured CA bundle: with `trust_env` on,
  REQUESTS_CA_BUNDLE would override `verify` (reference/ca-apis.md §0). Instance discovery is off, so an
  authority other than login.microsoftonline.com (a sovereign cloud, a test emulator) is used as given.
- Graph is read with httpx: `GET {graph}/v1.0/users?$select=...&$top=999`, every `@odata.nextLink` followed
  verbatim; 429 and 503 are retried after `Retry-After` (integer or fractional seconds; exponential backoff when
  absent); a 401 drops the cached token and the page is fetched again with a new one (a token that expired in
  the middle of a long sync).
- Secrets never appear in messages: errors carry Azure's own error code and text, not the request.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import msal
import requests

from certfleet.connectors.ca.http import make_client, retry_after_seconds
from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_BASE = "https://graph.microsoft.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SELECT = "displayName,mail,userPrincipalName,jobTitle,accountEnabled"
PAGE_SIZE = 999
TIMEOUT_S = 30.0
MAX_THROTTLE_RETRIES = 8
MAX_BACKOFF_S = 60.0


@dataclass(frozen=True)
class DirectoryUser:
    id: str
    display_name: str | None
    mail: str | None
    user_principal_name: str | None
    job_title: str | None
    account_enabled: bool


@dataclass(frozen=True)
class AzureADSettings:
    tenant_id: str
    client_id: str
    client_secret: str
    authority_host: str = DEFAULT_AUTHORITY_HOST
    graph_base: str = DEFAULT_GRAPH_BASE
    ca_bundle_pem: str | None = None  # None: the system trust store

    def __repr__(self) -> str:  # the secret stays out of tracebacks and logs
        return f"AzureADSettings(tenant_id={self.tenant_id!r}, client_id={self.client_id!r}, client_secret=***)"


def _user(item: dict[str, Any]) -> DirectoryUser:
    enabled = item.get("accountEnabled")
    return DirectoryUser(
        id=str(item.get("id") or ""),
        display_name=item.get("displayName"),
        mail=item.get("mail"),
        user_principal_name=item.get("userPrincipalName"),
        job_title=item.get("jobTitle"),
        account_enabled=enabled is not False,  # absent means Graph did not say: treat as enabled
    )


def _graph_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return f"{error.get('code')}: {error.get('message')}"
    except (ValueError, AttributeError):
        return response.text[:200]


class AzureADDirectory:
    """Reads the users of one tenant. Use as a context manager (it owns an httpx client and a requests session)."""

    def __init__(
        self,
        settings: AzureADSettings,
        *,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_throttle_retries: int = MAX_THROTTLE_RETRIES,
    ) -> None:
        self.settings = settings
        self.sleep = sleep
        self.max_throttle_retries = max_throttle_retries
        self._tmp = tempfile.TemporaryDirectory(prefix="certfleet-aad-")
        verify: str | bool = True
        if settings.ca_bundle_pem and settings.ca_bundle_pem.strip():
            bundle = Path(self._tmp.name) / "ca-bundle.pem"
            bundle.write_text(settings.ca_bundle_pem)
            verify = str(bundle)
        self._session = requests.Session()
        self._session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides verify
        self._session.verify = verify
        self._http = http or make_client(ca_bundle_pem=settings.ca_bundle_pem, timeout_s=TIMEOUT_S)
        self._owns_http = http is None
        self._app: msal.ConfidentialClientApplication | None = None
        self.tokens_acquired = 0
        self.throttled = 0
        self.token_refreshes = 0

    def __enter__(self) -> AzureADDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()
        self._session.close()
        self._tmp.cleanup()

    # -- token -------------------------------------------------------------------------------------------

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            authority = f"{self.settings.authority_host.rstrip('/')}/{self.settings.tenant_id}"
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.settings.client_id,
                    client_credential=self.settings.client_secret,
                    authority=authority,
                    instance_discovery=False,
                    http_client=self._session,
                    timeout=TIMEOUT_S,
                )
            except ValueError as exc:  # tenant discovery failed (unknown tenant, bad authority)
                raise PermanentConnectorError(f"Azure AD authority {authority}: {exc}") from None
            except requests.RequestException as exc:
                raise _transport_error("Azure AD sign-in", exc) from None
        return self._app

    def token(self) -> str:
        try:
            result = self._application().acquire_token_for_client(scopes=[GRAPH_SCOPE])
        except requests.RequestException as exc:
            raise _transport_error("Azure AD sign-in", exc) from None
        if "access_token" not in result:
            error = str(result.get("error") or "error")
            description = str(result.get("error_description") or "").split(" Trace ID:")[0]
            message = f"Azure AD refused the sign-in ({error}): {description}"
            if error in ("invalid_client", "unauthorized_client", "invalid_tenant", "invalid_scope"):
                raise PermanentConnectorError(message + "; check the profile's Tenant ID, Client ID and secret")
            raise TransientConnectorError(message)
        if result.get("token_source") != "cache":
            self.tokens_acquired += 1
        return str(result["access_token"])

    def _drop_cached_token(self) -> None:
        app = self._application()
        cache = app.token_cache
        for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(item)

    # -- Graph -------------------------------------------------------------------------------------------

    def first_page_url(self) -> str:
        query = urlencode({"$select": SELECT, "$top": str(PAGE_SIZE)}, safe="$,")
        return f"{self.settings.graph_base.rstrip('/')}/v1.0/users?{query}"

    def _get(self, url: str) -> dict[str, Any]:
        throttled = 0
        refreshed = False
        backoff = 1.0
        while True:
            headers = {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}
            try:
                response = self._http.get(url, headers=headers)
            except httpx.HTTPError as exc:
                raise _transport_error("Microsoft Graph", exc) from None
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
            if response.status_code == 401 and not refreshed:
                refreshed = True  # the token expired mid-sync (or was revoked): one fresh token, then give up
                self.token_refreshes += 1
                self._drop_cached_token()
                continue
            if response.status_code in (429, 503, 504) and throttled < self.max_throttle_retries:
                throttled += 1
                self.throttled += 1
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                if wait is None:
                    wait, backoff = backoff, min(backoff * 2, MAX_BACKOFF_S)
                self.sleep(min(wait, MAX_BACKOFF_S))
                continue
            message = f"Microsoft Graph answered HTTP {response.status_code} ({_graph_message(response)})"
            if response.status_code in (401, 403):
                raise PermanentConnectorError(
                    message + "; the application needs the User.Read.All application permission with admin consent"
                )
            if response.status_code in (429, 503, 504) or response.status_code >= 500:
                raise TransientConnectorError(message)
            raise PermanentConnectorError(message)

    def pages(self) -> Iterator[list[DirectoryUser]]:
        """Every page of users, following `@odata.nextLink` until Graph gives none."""
        url: str | None = self.first_page_url()
        while url:
            body = self._get(url)
            yield [_user(item) for item in body.get("value") or []]
            url = body.get("@odata.nextLink")

    def users(self) -> Iterator[DirectoryUser]:
        for page in self.pages():
            yield from page


def _transport_error(what: str, exc: Exception) -> PermanentConnectorError | TransientConnectorError:
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return PermanentConnectorError(
            f"{what}: the HTTPS certificate is not trusted ({text}); set the profile's TLS CA bundle"
        )
    return TransientConnectorError(f"{what} could not be reached: {text}")
