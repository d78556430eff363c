"""Calls an ASGI app with a request body fed chunk by chunk, and says how many body bytes the app pulled.

TestClient hands the app the whole body at once; to prove a body is refused *before* it is read (or while it
streams, without Content-Length) a test needs to see what the app asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    pulled: int  # body bytes the app received
    set_cookies: list[str] = field(default_factory=list)

    def text(self) -> str:
        return self.body.decode(errors="replace")


def call(
    app: Any, method: str, path: str, headers: dict[str, str], chunks: Iterator[bytes], client: str = "127.0.0.1"
) -> Answer:
    pulled = 0
    out: dict[str, Any] = {"body": b"", "cookies": []}

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            raw = [(k.decode().lower(), v.decode()) for k, v in message.get("headers", [])]
            out["headers"] = dict(raw)
            out["cookies"] = [v for k, v in raw if k == "set-cookie"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    path_only, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path_only,
        "raw_path": path_only.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "127.0.0.1", **headers}.items()],
        "client": (client, 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    return Answer(out["status"], out["headers"], out["body"], pulled, out["cookies"])


def endless(chunk: bytes, at_most: int) -> Iterator[bytes]:
    """`at_most` copies of `chunk`: a body far over any limit, which the app must stop pulling early."""
    for _ in range(at_most):
        yield chunk
