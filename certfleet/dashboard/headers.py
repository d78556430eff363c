"""Security headers on every answer, and `Secure` cookies whenever browsers reach certfleet over TLS.

TLS means: this request came over HTTPS (uvicorn with TLS, or `X-Forwarded-Proto: https` from one of
CERTFLEET_TRUSTED_PROXIES, which uvicorn checks), or CERTFLEET_BEHIND_TLS says a TLS proxy fronts certfleet.
The pages load scripts and styles from /static only: no inline code, so the policy needs no 'unsafe-inline'.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certfleet.settings import get_settings

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",  # Swagger UI's icons are data: URIs in its stylesheet
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)
HSTS = "max-age=31536000"  # one year; no includeSubDomains: certfleet does not own its parent domain's hosts
STATIC_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # errors._back() needs the Referer of this site's own pages
    "x-content-type-options": "nosniff",
    "cross-origin-opener-policy": "same-origin",
}


def over_tls(scope: Scope) -> bool:
    return scope.get("scheme") == "https" or get_settings().behind_tls


def _secure_cookie(value: str) -> str:
    attributes = {part.strip().lower() for part in value.split(";")[1:]}
    return value if "secure" in attributes else f"{value}; Secure"


class SecurityHeaders:
    """Pure ASGI middleware (outermost): adds the headers above unless a response set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = over_tls(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in STATIC_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                if tls:
                    headers["strict-transport-security"] = HSTS
                    cookies = headers.getlist("set-cookie")
                    if cookies:
                        del headers["set-cookie"]
                        for cookie in cookies:
                            headers.append("set-cookie", _secure_cookie(cookie))
            await send(message)

        await self.app(scope, receive, send_with_headers)
