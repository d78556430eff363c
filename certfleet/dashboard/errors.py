"""Errors a service raises for bad input, and how the app answers them: 422 JSON for the API, a message on pages.

Services (in `certfleet/dashboard/services/` or any other domain module) raise `InputError` (defined in
`certfleet.fields`) with a message that says what to fix, optionally naming the form field. Nothing else is needed:
the handlers below do the rest, and answer a body that pydantic refused in the same shape.
"""

from __future__ import annotations

import json
from urllib.parse import quote, unquote, urlparse

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response

from certfleet.fields import InputError, safe_text
from certfleet.models.repo import NotFound

FLASH_COOKIE = "certfleet_flash"

__all__ = ["FLASH_COOKIE", "HANDLERS", "Forbidden", "InputError", "LoginRequired", "flash", "take_flash"]


class Forbidden(PermissionError):
    """The user is logged in but their role may not do this."""


class LoginRequired(PermissionError):
    """No valid session or token."""


class BodyTooLarge(HTTPException):
    """The request body passed a size or file-count limit (raised while it streams in, so before it is parsed)."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail)


def is_api(request: Request) -> bool:
    path = request.url.path
    if path == "/metrics":  # a scraper, not a browser: 401/403, never a redirect to the login form
        return True
    return path.startswith("/api/") and path != "/api/docs"  # the docs are a page: log in, then come back


def flash(response: Response, message: str, kind: str = "info") -> None:
    """A one-shot message shown on the next page (never put a secret in it: it travels in a cookie)."""
    cookie = quote(json.dumps({"m": safe_text(message), "k": kind}))
    response.set_cookie(FLASH_COOKIE, cookie, httponly=True, samesite="lax")


def take_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(unquote(raw))
        return {"message": str(value["m"]), "kind": str(value.get("k", "info"))}
    except (ValueError, KeyError, TypeError):
        return None


def _back(request: Request) -> str:
    """Where a failed form goes back to: the referring page on this site, else the dashboard."""
    referer = request.headers.get("referer")
    if referer:
        parsed = urlparse(referer)
        if parsed.netloc == request.url.netloc:
            return parsed.path + (f"?{parsed.query}" if parsed.query else "")
    return "/"


def refusal(request: Request, message: str, field: str | None, problems: list[tuple[str | None, str]]) -> Response:
    """422 JSON for the API, a redirect back with the message for pages. Messages may quote the input, which may
    hold lone surrogates: they are replaced so the answer can be encoded (the handler itself must not fail)."""
    if is_api(request):
        body: dict[str, object] = {"detail": safe_text(message), "field": field}
        if problems:
            body["problems"] = [{"field": f, "message": safe_text(m)} for f, m in problems]
        return JSONResponse(body, status_code=422)
    response = RedirectResponse(_back(request), status_code=303)
    flash(response, message, "error")
    return response


async def input_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InputError)
    return refusal(request, exc.message, exc.field, exc.problems)


def _field_of(loc: tuple[int | str, ...]) -> str | None:
    """The JSON key of a pydantic error location: ("body", "tags", 0) -> "tags.0"."""
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path", "form", "header") else loc
    return ".".join(str(p) for p in parts) or None


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    """A body, query or form that pydantic refused: 422 with each problem as "field: rule", like InputError.
    The refused input is never echoed (it may be a secret, or not encodable)."""
    assert isinstance(exc, RequestValidationError)
    problems: list[tuple[str | None, str]] = []
    for error in exc.errors():
        field = _field_of(tuple(error.get("loc", ())))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")  # pydantic's prefix says nothing
        problems.append((field, f"{field or 'body'}: {message}"))
    if not problems:
        problems.append((None, "the request could not be read"))
    return refusal(request, "; ".join(m for _, m in problems), problems[0][0], problems)


async def not_found_handler(request: Request, exc: Exception) -> Response:
    if is_api(request):
        return JSONResponse({"detail": str(exc)}, status_code=404)
    from certfleet.dashboard.templating import render

    return render(request, "error.html", {"title": "Not found", "message": str(exc)}, status_code=404)


async def forbidden_handler(request: Request, exc: Exception) -> Response:
    if is_api(request):
        return JSONResponse({"detail": str(exc)}, status_code=403)
    from certfleet.dashboard.templating import render

    return render(request, "error.html", {"title": "Not allowed", "message": str(exc)}, status_code=403)


async def login_required_handler(request: Request, exc: Exception) -> Response:
    if is_api(request):
        return JSONResponse(
            {"detail": str(exc) or "log in or send an API token"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


async def too_large_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BodyTooLarge)
    if is_api(request):
        return JSONResponse({"detail": exc.detail}, status_code=413)
    from certfleet.dashboard.templating import render

    return render(request, "error.html", {"title": "Too large", "message": exc.detail}, status_code=413)


HANDLERS = {
    BodyTooLarge: too_large_handler,
    InputError: input_error_handler,
    RequestValidationError: validation_error_handler,
    NotFound: not_found_handler,
    Forbidden: forbidden_handler,
    LoginRequired: login_required_handler,
}
