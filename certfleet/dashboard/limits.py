"""Request size limits, checked before anything parses a body, and uploads only from people allowed to upload.

- JSON and form bodies: at most CERTFLEET_MAX_BODY_BYTES; multipart uploads: CERTFLEET_MAX_UPLOAD_BYTES and
  CERTFLEET_MAX_UPLOAD_FILES files. A declared Content-Length over the limit is refused at once; a chunked body
  is counted as it streams in and refused the moment it passes the limit. Either way: 413 naming the limit.
- FastAPI parses (and spools to disk) a multipart body before any dependency runs, so this middleware checks the
  caller first: an upload from nobody is answered 401 (API) or sent to the login page, from a Viewer 403,
  and not one byte of it is read. Every route that takes files needs at least UPLOAD_ROLE (the access test checks).
"""

from __future__ import annotations

from fastapi import Request, Response
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certfleet.dashboard.deps import optional_principal
from certfleet.dashboard.errors import (
    BodyTooLarge,
    Forbidden,
    LoginRequired,
    forbidden_handler,
    login_required_handler,
    too_large_handler,
)
from certfleet.models.orm import UserRole
from certfleet.settings import get_settings

UPLOAD_ROLE = UserRole.OPERATOR
_MAX_HEADER_BYTES = 8192  # a part's Content-Disposition longer than this is not looked into


def size_text(n: int) -> str:
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def body_limit_message(upload: bool) -> str:
    s = get_settings()
    if upload:
        return (
            f"the upload is larger than {size_text(s.max_upload_bytes)} (CERTFLEET_MAX_UPLOAD_BYTES): "
            "upload fewer or smaller files at a time"
        )
    return f"the request body is larger than {size_text(s.max_body_bytes)} (CERTFLEET_MAX_BODY_BYTES): send less"


def files_limit_message() -> str:
    most = get_settings().max_upload_files
    return f"the upload has more than {most} files (CERTFLEET_MAX_UPLOAD_FILES): upload at most {most} at a time"


class _FileCounter:
    """Counts the parts of a multipart body that carry a file name, as the bytes stream past."""

    def __init__(self, boundary: bytes) -> None:
        self.files = 0
        self._field = bytearray()
        self._value = bytearray()
        self._broken = False
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_header_begin": self._header_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
            },
        )

    def _header_begin(self) -> None:
        self._field.clear()
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        if len(self._field) < _MAX_HEADER_BYTES:
            self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        if len(self._value) < _MAX_HEADER_BYTES:
            self._value += data[start:end]

    def _header_end(self) -> None:
        if bytes(self._field).lower() == b"content-disposition":
            _, params = parse_options_header(bytes(self._value))
            if params.get(b"filename"):  # browsers send filename="" for an empty file input
                self.files += 1

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        try:
            self._parser.write(chunk)
        except Exception:
            self._broken = True


def _file_counter(content_type: str) -> _FileCounter | None:
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    return _FileCounter(boundary) if boundary else None


async def _uploader_refusal(request: Request) -> Response | None:
    """The answer for a caller who may not upload, or None when they may."""
    try:
        principal = await run_in_threadpool(optional_principal, request)
    except LoginRequired as exc:  # an unknown or revoked API token
        return await login_required_handler(request, exc)
    if principal is None:
        return await login_required_handler(request, LoginRequired("log in before uploading files"))
    if principal.metrics_only:
        return await forbidden_handler(request, Forbidden("this API token may only scrape /metrics"))
    if not principal.has(UPLOAD_ROLE):
        message = f"uploading files needs the {UPLOAD_ROLE.value} role; you are {principal.role.value}"
        return await forbidden_handler(request, Forbidden(message))
    return None


class RequestLimits:
    """Pure ASGI middleware; install it inside the session middleware (it reads the session to check uploads)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        content_type = headers.get("content-type", "")
        upload = content_type.lower().startswith("multipart/")
        settings = get_settings()
        limit = settings.max_upload_bytes if upload else settings.max_body_bytes
        request = Request(scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(request, BodyTooLarge(body_limit_message(upload)), scope, receive, send)
            return
        counter = None
        if upload:
            refusal = await _uploader_refusal(request)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
            counter = _file_counter(content_type)
        seen = 0
        most_files = settings.max_upload_files

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                chunk: bytes = message.get("body", b"")
                seen += len(chunk)
                if seen > limit:
                    raise BodyTooLarge(body_limit_message(upload))
                if counter is not None:
                    counter.feed(chunk)
                    if counter.files > most_files:
                        raise BodyTooLarge(files_limit_message())
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:  # read outside a route's body parsing (which answers through the handler)
            if started:
                raise
            await self._refuse(request, exc, scope, receive, send)

    @staticmethod
    async def _refuse(request: Request, exc: BodyTooLarge, scope: Scope, receive: Receive, send: Send) -> None:
        response = await too_large_handler(request, exc)
        await response(scope, receive, send)
