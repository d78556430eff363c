"""The FastAPI app: HTML pages at /, the JSON API at /api/v1 (OpenAPI at /api/v1/openapi.json, docs at /api/docs).

To add a domain: write `certfleet/dashboard/api/<domain>.py` and/or `certfleet/dashboard/pages/<domain>.py`,
each exposing `router` (an `APIRouter`), and add the module name to API_MODULES / PAGE_MODULES below.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from certfleet import __version__
from certfleet.dashboard import api_docs, security
from certfleet.dashboard.deps import SESSION_COOKIE
from certfleet.dashboard.errors import FLASH_COOKIE, HANDLERS
from certfleet.dashboard.form_encoding import StrictFormEncoding
from certfleet.dashboard.headers import SecurityHeaders
from certfleet.dashboard.limits import RequestLimits

# The ONE list of routers. API modules are mounted under /api/v1, page modules at /.
API_MODULES: list[str] = [
    "auth",
    "rotations",
    "dashboard",
    "bots",
    "certificates",
    "discovery",
    "servers",
    "smime",
    "smime_delivery",
    "ca_connectors",
    "orders",
    "audit",
    "users",
    "notifications",
    "agent",  # what bots' flow runs read and record, with the bot token
]
PAGE_MODULES: list[str] = [
    "auth",
    "rotations",
    "dashboard",
    "bots",
    "certificates",
    "discovery",
    "servers",
    "smime",
    "smime_delivery",
    "ca_connectors",
    "orders",
    "audit",
    "users",
    "notifications",
    "crl",  # the built-in CA's CRL, for anyone
    "metrics",  # Prometheus scrapes, with an API token
]


def _router(package: str, name: str) -> APIRouter:
    module = importlib.import_module(f"certfleet.dashboard.{package}.{name}")
    router = getattr(module, "router", None)
    if not isinstance(router, APIRouter):
        raise TypeError(f"certfleet.dashboard.{package}.{name} must expose `router = APIRouter(...)`")
    return router


async def _session_cookie(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Every visitor has a signed session (anonymous until login): CSRF tokens derive from its random id."""
    current = security.load_session(request.cookies.get(SESSION_COOKIE))
    request.state.session = current or security.new_session(None)
    response = await call_next(request)
    replaced: security.SessionData | None = getattr(request.state, "new_session", None)
    if replaced is not None or current is None:
        response.set_cookie(
            SESSION_COOKIE,
            security.dump_session(replaced or request.state.session),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    if getattr(request.state, "flash_taken", False):
        response.delete_cookie(FLASH_COOKIE)
    return response


def create_app() -> FastAPI:
    app = FastAPI(
        title="certfleet",
        version=__version__,
        description=(
            "certfleet's JSON API. Authenticate with `Authorization: Bearer <API token>` (create one under "
            "Settings → API Tokens). Lists take `filter=column:operator:value` (repeatable, AND), `sort`, `page`, "
            "`per_page` and `columns`; every list has an `/export?format=xlsx|pdf`."
        ),
        docs_url=None,  # api_docs serves both, behind login and without a CDN
        redoc_url=None,
        openapi_url=None,
    )
    for exc_type, handler in HANDLERS.items():
        app.add_exception_handler(exc_type, handler)
    # Innermost first. StrictFormEncoding reads a whole form, so it sits inside RequestLimits, which counts the
    # bytes as they stream in; RequestLimits sits inside the session middleware because it checks who uploads.
    app.add_middleware(StrictFormEncoding)  # a form field that is not UTF-8: 422 naming it, never U+FFFD
    app.add_middleware(RequestLimits)
    app.middleware("http")(_session_cookie)
    app.add_middleware(SecurityHeaders)  # outermost: every answer gets the headers
    api_docs.install(app)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).with_name("static"))), name="static")
    for name in API_MODULES:
        app.include_router(_router("api", name), prefix="/api/v1")
    for name in PAGE_MODULES:
        app.include_router(_router("pages", name), include_in_schema=False)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
