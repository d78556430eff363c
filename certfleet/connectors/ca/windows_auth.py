"""HTTP authentication the way IIS asks for it: NTLM (through pyspnego) when offered, else Basic.

NTLM authenticates a TCP connection, not a request: the three legs must share one connection, so a
client using this auth must keep one connection per origin (`httpx.Limits(max_connections=1)`).
The password only ever goes into the NTLM exchange or the Basic header, never into a message.
"""

from __future__ import annotations

import base64
from collections.abc import Generator

import httpx
import spnego


def offered_schemes(response: httpx.Response) -> dict[str, str]:
    """WWW-Authenticate challenges by lower-case scheme name -> the token or parameters after it."""
    offered: dict[str, str] = {}
    for header in response.headers.get_list("WWW-Authenticate"):
        for challenge in header.split(","):
            scheme, _, rest = challenge.strip().partition(" ")
            if scheme and "=" not in scheme:
                offered.setdefault(scheme.lower(), rest.strip())
    return offered


class WindowsAuth(httpx.Auth):
    requires_request_body = True

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password

    def __repr__(self) -> str:
        return f"WindowsAuth(username={self._username!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "Authorization" in request.headers:
            yield request
            return
        response = yield request
        if response.status_code != 401:
            return
        offered = offered_schemes(response)
        for scheme in ("ntlm", "negotiate"):
            if scheme in offered:
                yield from self._ntlm(request, "NTLM" if scheme == "ntlm" else "Negotiate")
                return
        if "basic" in offered:
            request.headers["Authorization"] = httpx.BasicAuth(self._username, self._password)._auth_header
            yield request

    def _ntlm(self, request: httpx.Request, scheme: str) -> Generator[httpx.Request, httpx.Response, None]:
        context = spnego.client(
            self._username, self._password, hostname=request.url.host, service="http", protocol="ntlm"
        )
        negotiate = context.step()
        assert negotiate is not None
        request.headers["Authorization"] = f"{scheme} {base64.b64encode(negotiate).decode()}"
        response = yield request
        if response.status_code != 401:
            return
        challenge = offered_schemes(response).get(scheme.lower())
        if not challenge:
            return  # the server refused the negotiation outright; the 401 stands
        authenticate = context.step(base64.b64decode(challenge))
        assert authenticate is not None
        request.headers["Authorization"] = f"{scheme} {base64.b64encode(authenticate).decode()}"
        yield request
