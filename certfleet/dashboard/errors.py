"""Errors a service raises for bad input, and how the app answers them: 422 JSON for the API, a message on pages.

Services (in `certfleet/dashboard/services/` or any other domain module) raise `InputError` with a message that
says what to fix, optionally naming the form field. Nothing else is needed: the handlers below do the rest.
"""

from __future__ import annotations

import json
from urllib.parse import quote, unquote, urlparse

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from certfleet.models.repo import NotFound

FLASH_COOKIE = "certfleet_flash"


class InputError(ValueError):
    """Bad input: the message says what to fix; `field` names the form field / JSON key when there is one."""

    def __init__(
        self, message: str, field: str | None = None, problems: list[tuple[str | None, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.problems = problems or []  # every (field, message) when a service refuses for several reasons


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
    return path.startswith("/api/") and path != "/api/docs"  # the docs are a page: log in, then come back


def flash(response: Response, message: str, kind: str = "info") -> None:
    """A one-shot message shown on the next page (never put a secret in it: it travels in a cookie)."""
    response.set_cookie(FLASH_COOKIE, quote(json.dumps({"m": message, "k": kind})), httponly=True, samesite="lax")


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


async def input_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InputError)
    if is_api(request):
        body: dict[str, object] = {"detail": exc.message, "field": exc.field}
        if exc.problems:
            body["problems"] = [{"field": f, "message": m} for f, m in exc.problems]
        return JSONResponse(body, status_code=422)
    response = RedirectResponse(_back(request), status_code=303)
    flash(response, exc.message, "error")
    return response


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
    NotFound: not_found_handler,
    Forbidden: forbidden_handler,
    LoginRequired: login_required_handler,
}
