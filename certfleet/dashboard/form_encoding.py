"""Form posts whose bytes are not UTF-8 are refused, naming the field.

Starlette decodes a urlencoded form with errors="replace": an invalid byte (or a UTF-8-encoded surrogate) would
silently become U+FFFD and be stored. The JSON API refuses the same input through the field rules; this ASGI
middleware makes forms do the same, before any page sees the values.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certfleet.dashboard.errors import refusal


def invalid_field(body: bytes) -> tuple[str, str] | None:
    """(field, message) of the first urlencoded field whose value is not UTF-8, or None."""
    for part in body.split(b"&"):
        raw_name, _, raw_value = part.partition(b"=")
        value = unquote_to_bytes(raw_value.replace(b"+", b" "))
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as exc:
            field = unquote_to_bytes(raw_name.replace(b"+", b" ")).decode("utf-8", "replace")
            bad = value[exc.start]
            return field, f"{field}: invalid Unicode: byte 0x{bad:02X} at byte {exc.start} is not UTF-8"
    return None


class StrictFormEncoding:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_urlencoded(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        found = invalid_field(body)
        if found is not None:
            field, text = found
            response = refusal(Request(scope), text, field, [(field, text)])
            await response(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _is_urlencoded(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return bool(value.split(b";")[0].strip().lower() == b"application/x-www-form-urlencoded")
    return False
