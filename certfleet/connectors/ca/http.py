"""HTTP plumbing shared by the REST CA connectors: one verified httpx client, one error mapping.

Every CA call goes through `CAHttp.request`, which
- throttles first (an injected callable: the task layer plugs a Prefect rate limit in, tests nothing),
- maps transport failures and HTTP statuses to Transient/PermanentConnectorError with the CA's own words,
- never puts request bodies or headers (which carry keys) into a message.
"""

from __future__ import annotations

import email.utils
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError

DEFAULT_TIMEOUT_S = 30.0
USER_AGENT = "certfleet"

ConnectorError_ = PermanentConnectorError | TransientConnectorError


class RateLimited(TransientConnectorError):
    """The CA answered 429 (or its equivalent); `retry_after` is its hint in seconds, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def tls_context(ca_bundle_pem: str | None) -> ssl.SSLContext:
    """Verify the CA's HTTPS endpoint against the given PEM bundle, or the system trust store."""
    if ca_bundle_pem and ca_bundle_pem.strip():
        try:
            return ssl.create_default_context(cadata=ca_bundle_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise PermanentConnectorError(
                f"the TLS CA bundle is not valid PEM certificates: {exc}; paste the CA certificates "
                "that issued the CA's HTTPS certificate"
            ) from exc
    return ssl.create_default_context()


def make_client(
    base_url: str = "",
    *,
    ca_bundle_pem: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | None = None,
    single_connection: bool = False,
) -> httpx.Client:
    """A client that ignores proxy/CA environment variables (REQUESTS_CA_BUNDLE and friends) on purpose."""
    return httpx.Client(
        base_url=base_url,
        verify=tls_context(ca_bundle_pem),
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
        trust_env=False,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        auth=auth,
        follow_redirects=False,
        # Connection-bound authentication (NTLM) needs every leg on the same connection.
        limits=httpx.Limits(max_connections=1)
        if single_connection
        else httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds (integer or, as some APIs send, fractional) or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def describe_transport_error(ca: str, exc: httpx.HTTPError) -> ConnectorError_:
    """Timeouts and connection failures may heal; a TLS verification failure is configuration."""
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return PermanentConnectorError(
            f"{ca}: the HTTPS certificate of the CA endpoint is not trusted ({text}); "
            "set the connector's TLS CA bundle to the certificates that issued it"
        )
    if isinstance(exc, httpx.TimeoutException):
        return TransientConnectorError(f"{ca} did not answer in time ({type(exc).__name__}); will retry")
    return TransientConnectorError(f"{ca} could not be reached: {text}")


def error_for_status(ca: str, response: httpx.Response, message: str | None) -> ConnectorError_ | None:
    """None for 2xx/3xx; otherwise the error a user should see, classified as worth retrying or not."""
    code = response.status_code
    if code < 400:
        return None
    said = f": {message}" if message else ""
    if code == 429:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        hint = f"; it asks to wait {wait:g} s" if wait is not None else ""
        return RateLimited(f"{ca} is rate limiting requests (HTTP 429){said}{hint}", wait)
    if code in (401, 403):
        return PermanentConnectorError(
            f"{ca} rejected the credentials (HTTP {code}){said}; check the connector's credentials"
        )
    if code in (408, 425) or code >= 500:
        return TransientConnectorError(f"{ca} failed with HTTP {code}{said}; will retry")
    return PermanentConnectorError(f"{ca} refused the request (HTTP {code}){said}")


class CAHttp:
    """An httpx client bound to one CA, with its name for messages and its throttle."""

    def __init__(
        self,
        client: httpx.Client,
        ca_name: str,
        *,
        throttle: Callable[[], None] | None = None,
        message_of: Callable[[httpx.Response], str | None] | None = None,
    ) -> None:
        self.client = client
        self.ca_name = ca_name
        self.throttle = throttle or (lambda: None)
        self.message_of = message_of or (lambda r: None)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request; raise the mapped error for transport failures and 4xx/5xx answers."""
        self.throttle()
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise describe_transport_error(self.ca_name, exc) from exc
        error = error_for_status(self.ca_name, response, self._message(response))
        if error is not None:
            raise error
        return response

    def _message(self, response: httpx.Response) -> str | None:
        try:
            return self.message_of(response)
        except Exception:  # a malformed error body must not hide the status code
            return None

    def close(self) -> None:
        self.client.close()
