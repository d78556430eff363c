"""Microsoft identity platform (Entra ID) + Microsoft Graph `/v1.0/users` emulator (reference/ca-apis.md §5).

Speaks what the real `msal` client-credentials flow and a Graph client send over HTTPS:
- `GET /common/discovery/instance` (instance discovery; msal skips it with `instance_discovery=False`),
- `GET /{tenant}/v2.0/.well-known/openid-configuration` (tenant discovery),
- `POST /{tenant}/oauth2/v2.0/token` (client_credentials; a wrong secret answers 401 `invalid_client` with
  AADSTS7000215, an unknown client AADSTS700016, an unknown tenant 400 AADSTS90002),
- `GET /v1.0/users` with `$select` projection, `$top` (1..999, else 400), opaque `$skiptoken` paging through an
  absolute `@odata.nextLink` that carries every original parameter.
Failure injection on Graph: `graph_faults` (a queue of (status, Retry-After or None) answered before the next
`/v1.0/users` requests: 429 TooManyRequests or 503 ServiceUnavailable, integer or fractional Retry-After) and
`expire_token_after_pages` (the bearer token in use stops being valid after that many pages: 401
InvalidAuthenticationToken, as when a token expires in the middle of a long sync).
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from tests.emulators.pki import TlsIdentity
from tests.emulators.server import Emulator, Request, Response

USER_PROPERTIES = (
    "id",
    "displayName",
    "mail",
    "userPrincipalName",
    "jobTitle",
    "accountEnabled",
    "givenName",
    "surname",
    "businessPhones",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
)
DEFAULT_PROPERTIES = tuple(p for p in USER_PROPERTIES if p != "accountEnabled")  # Graph's default set
DEFAULT_PAGE = 100


def make_user(
    n: int,
    *,
    mail: str | bool | None = True,
    upn: str | None = None,
    job: str | None = "Engineer",
    enabled: bool = True,
    name: str | None = None,
) -> dict[str, Any]:
    """A directory user; `mail=True` gives user<n>@contoso.example, None/False gives no mail."""
    upn = upn or f"user{n}@contoso.example"
    return {
        "id": str(uuid.UUID(int=n + 1)),
        "displayName": name or f"User {n}",
        "mail": (f"user{n}@contoso.example" if mail is True else (mail or None)),
        "userPrincipalName": upn,
        "jobTitle": job,
        "accountEnabled": enabled,
        "givenName": "User",
        "surname": str(n),
        "businessPhones": [],
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": "en-US",
    }


def _graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    inner = {"date": now, "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}
    return Response.json({"error": {"code": code, "message": message, "innerError": inner}}, status, headers)


def _aad_error(status: int, error: str, code: int, text: str) -> Response:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    description = f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {now}"
    return Response.json(
        {
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": "https://login.microsoftonline.com/error?code=" + str(code),
        },
        status,
    )


@dataclass
class AzureADEmulator(Emulator):
    tls: TlsIdentity
    tenant_id: str = "11111111-2222-3333-4444-555555555555"
    client_id: str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    client_secret: str = "s3cr3t~value.with-odd_chars"
    users: list[dict[str, Any]] = field(default_factory=list)
    token_lifetime_s: int = 3599
    graph_faults: list[tuple[int, str | None]] = field(default_factory=list)
    expire_token_after_pages: int | None = None

    name = "azure-ad"

    def __post_init__(self) -> None:
        super().__init__(self.tls)
        self._lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # access token -> expiry (monotonic)
        self.pages_by_token: dict[str, int] = {}
        self.token_requests = 0
        self.bad_secret_attempts = 0
        self.expired_rejections = 0
        self.graph_log: list[tuple[float, int, dict[str, list[str]]]] = []  # (monotonic time, status, query)

    @property
    def authority_host(self) -> str:
        return self.base

    @property
    def graph_base(self) -> str:
        return self.base

    # -- dispatch -----------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        path = request.path
        if request.method == "GET" and path == "/common/discovery/instance":
            return self._instance_discovery(request)
        if request.method == "GET" and (m := re.fullmatch(r"/([^/]+)/v2\.0/\.well-known/openid-configuration", path)):
            return self._openid_configuration(m.group(1))
        if request.method == "POST" and (m := re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", path)):
            return self._token(m.group(1), request.form())
        if path == "/v1.0/users":
            response = self._users(request) if request.method == "GET" else _graph_error(
                405, "Request_BadRequest", "Method not allowed"
            )  # fmt: skip
            self.graph_log.append((time.monotonic(), response.status, request.query))
            return response
        return _graph_error(404, "Request_ResourceNotFound", f"Resource '{path}' does not exist")

    # -- identity platform ---------------------------------------------------------------------------------

    def _instance_discovery(self, request: Request) -> Response:
        endpoint = request.arg("authorization_endpoint") or ""
        m = re.match(r"https://[^/]+/([^/]+)/", endpoint)
        tenant = m.group(1) if m else "common"
        return Response.json(
            {
                "tenant_discovery_endpoint": f"{self.base}/{tenant}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": "127.0.0.1", "preferred_cache": "127.0.0.1", "aliases": []}],
            }
        )

    def _openid_configuration(self, tenant: str) -> Response:
        if tenant not in (self.tenant_id, "organizations", "common"):
            return _aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        return Response.json(
            {
                "token_endpoint": f"{self.base}/{tenant}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{self.base}/{tenant}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{self.base}/{tenant}/v2.0",
                "authorization_endpoint": f"{self.base}/{tenant}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{self.base}/{tenant}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{self.base}/{tenant}/oauth2/v2.0/logout",
                "tenant_region_scope": "EU",
            }
        )

    def _token(self, tenant: str, form: dict[str, str]) -> Response:
        with self._lock:
            self.token_requests += 1
        if tenant != self.tenant_id:
            return _aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return _aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if form.get("client_id") != self.client_id:
            return _aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory.",
            )
        if not secrets.compare_digest(form.get("client_secret", "").encode(), self.client_secret.encode()):
            with self._lock:
                self.bad_secret_attempts += 1
            return _aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{self.client_id}'.",
            )
        scopes = form.get("scope", "").split()
        if "https://graph.microsoft.com/.default" not in scopes:
            return _aad_error(400, "invalid_scope", 1002012, "The provided value for scope is not valid.")
        token = "eyJ0eXAiOiJKV1Qi." + secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = time.monotonic() + self.token_lifetime_s
        return Response.json(
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime_s,
                "ext_expires_in": self.token_lifetime_s,
                "access_token": token,
            }
        )

    # -- Graph -------------------------------------------------------------------------------------------

    def _users(self, request: Request) -> Response:
        with self._lock:
            fault = self.graph_faults.pop(0) if self.graph_faults else None
        if fault is not None:
            status, retry_after = fault
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            if status == 429:
                return _graph_error(429, "TooManyRequests", "Please retry again later.", headers)
            return _graph_error(status, "ServiceUnavailable", "Service is unavailable.", headers)
        auth = request.headers.get("Authorization") or ""
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        with self._lock:
            expiry = self.tokens.get(token)
            used = self.pages_by_token.get(token, 0)
            expired = expiry is not None and (
                time.monotonic() > expiry
                or (self.expire_token_after_pages is not None and used >= self.expire_token_after_pages)
            )
            if expired:
                self.expired_rejections += 1
        if expiry is None:
            return _graph_error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        if expired:
            return _graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        select = [s for s in (request.arg("$select") or "").split(",") if s]
        for prop in select:
            if prop not in USER_PROPERTIES:
                return _graph_error(
                    400,
                    "Request_BadRequest",
                    f"Could not find a property named '{prop}' on type 'microsoft.graph.user'.",
                )
        top_text = request.arg("$top")
        top = DEFAULT_PAGE
        if top_text is not None:
            if not top_text.isdigit() or not 1 <= int(top_text) <= 999:
                return _graph_error(
                    400,
                    "Request_UnsupportedQuery",
                    f"Invalid page size specified: '{top_text}'. Must be between 1 and 999 inclusive.",
                )
            top = int(top_text)
        skip = request.arg("$skiptoken")
        offset = 0
        if skip is not None:
            try:
                offset = int(base64.urlsafe_b64decode(skip.encode()).decode().removeprefix("offset:"))
            except ValueError:
                return _graph_error(400, "Directory_ExpiredPageToken", "The specified page token value has expired.")
        with self._lock:
            self.pages_by_token[token] = used + 1
        props = select or list(DEFAULT_PROPERTIES)
        page = [{p: u.get(p) for p in props} for u in self.users[offset : offset + top]]
        body: dict[str, Any] = {
            "@odata.context": f"{self.base}/v1.0/$metadata#users({','.join(props)})" if select else
            f"{self.base}/v1.0/$metadata#users",
            "value": page,
        }  # fmt: skip
        if offset + top < len(self.users):
            params = {k: v[0] for k, v in request.query.items() if k != "$skiptoken"}
            params["$skiptoken"] = base64.urlsafe_b64encode(f"offset:{offset + top}".encode()).decode()
            body["@odata.nextLink"] = f"{self.base}/v1.0/users?" + urlencode(params, quote_via=quote, safe="$,")
        return Response.json(body)
