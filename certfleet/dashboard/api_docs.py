"""The API docs behind login: Swagger UI from the swagger-ui-bundle-v2 package (no CDN) and the OpenAPI document.

FastAPI's own /docs page loads Swagger UI from a CDN and runs an inline script; this one is served from
certfleet's files, runs static/api-docs.js (the page CSP allows no inline script) and needs a Viewer login.
"""

from __future__ import annotations

from typing import Any

import swagger_ui_bundle
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from certfleet.dashboard.deps import Viewer
from certfleet.dashboard.templating import render

DOCS_PATH = "/api/docs"
OPENAPI_PATH = "/api/v1/openapi.json"
ASSETS_PATH = "/vendor/swagger-ui"


# Every 422 is certfleet's refusal (certfleet.dashboard.errors.refusal), not FastAPI's list of pydantic errors:
# the document says so, so clients and the schemathesis fuzzer (tests/dashboard/test_api_fuzz.py) read it right.
REFUSAL_SCHEMA: dict[str, Any] = {
    "title": "Refusal",
    "type": "object",
    "required": ["detail", "field"],
    "properties": {
        "detail": {"type": "string", "title": "Detail", "description": "what to fix"},
        "field": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Field"},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


def document_refusals(spec: dict[str, Any]) -> dict[str, Any]:
    """The 422 schema FastAPI generates (HTTPValidationError) replaced by certfleet's refusal body."""
    schemas = spec.get("components", {}).get("schemas", {})
    if "HTTPValidationError" in schemas:
        schemas["HTTPValidationError"] = REFUSAL_SCHEMA
    return spec


def install(app: FastAPI) -> None:
    """Adds the docs page, the OpenAPI document (both Viewer) and Swagger UI's files to an app made with
    `docs_url=None, openapi_url=None`."""
    app.mount(ASSETS_PATH, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-ui")

    @app.get(OPENAPI_PATH, include_in_schema=False)
    def openapi_document(who: Viewer) -> dict[str, Any]:
        return document_refusals(app.openapi())

    @app.get(DOCS_PATH, response_class=HTMLResponse, include_in_schema=False)
    def api_docs(request: Request, who: Viewer) -> HTMLResponse:
        ctx = {"title": "API", "openapi_url": OPENAPI_PATH, "assets": ASSETS_PATH}
        return render(request, "api/docs.html", ctx)
