"""Glue between a `ListSpec` and HTTP: the API list + export endpoints, the page context, column preferences.

add_list_api(router, BOTS)           # GET /api/v1/bots, GET /api/v1/bots/export?format=xlsx|pdf
ctx = page_context(request, db, who, BOTS)   # in a page handler: rows, columns, filters, pager
add_export_page(router, BOTS)        # GET /bots/export.xlsx and /bots/export.pdf for the page's buttons
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from certfleet.dashboard import listing, prefs
from certfleet.dashboard.deps import DbSession, Principal, Viewer
from certfleet.dashboard.errors import InputError
from certfleet.dashboard.export import export_response

SPECS: dict[str, listing.ListSpec] = {}  # every list, by name: column preferences look them up here


def register(spec: listing.ListSpec) -> listing.ListSpec:
    SPECS[spec.name] = spec
    return spec


def spec_named(name: str) -> listing.ListSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise InputError(f"there is no list named {name!r}; lists: {', '.join(sorted(SPECS))}") from None


def query_from_request(request: Request) -> listing.ListQuery:
    """Reads `filter` (repeatable) plus the filter builder's `fc`/`fo`/`fv` triples, `sort`, `page`, `per_page`,
    `columns`."""
    params = request.query_params
    filters = list(params.getlist("filter"))
    for col, op, val in zip(params.getlist("fc"), params.getlist("fo"), params.getlist("fv"), strict=False):
        if col and op:
            filters.append(f"{col}:{op}:{val}")
    try:
        page = int(params.get("page") or 1)
        per_page = int(params.get("per_page") or listing.DEFAULT_PER_PAGE)
    except ValueError:
        raise InputError("page and per_page must be whole numbers", field="page") from None
    return listing.parse_query(filters, params.get("sort"), page, per_page, params.get("columns"))


def _with_prefs(db: Session, who: Principal, spec: listing.ListSpec, query: listing.ListQuery) -> listing.ListQuery:
    if query.columns is None:
        query.columns = prefs.chosen_columns(db, who.user_id, spec.name)
    return query


def page_context(request: Request, db: Session, who: Principal, spec: listing.ListSpec, **extra: Any) -> dict[str, Any]:
    query = _with_prefs(db, who, spec, query_from_request(request))
    page = listing.fetch(db, spec, query)
    filters = [f.as_param() for f in query.filters]
    return {
        "spec": spec,
        "page": page,
        "filters": filters,
        "filter_rows": [(f.column, f.op, f.value) for f in query.filters],
        "chosen": [c.key for c in page.columns],
        "base_path": request.url.path,
        "title": spec.title,
        **extra,
    }


def add_list_api(router: APIRouter, spec: listing.ListSpec, *, tag: str | None = None) -> None:
    register(spec)
    path = spec.name.replace("_", "-")

    @router.get(
        f"/{path}",
        summary=f"List {spec.title} (filter, sort, page, choose columns)",
        name=f"api_list_{spec.name}",
        tags=[tag or spec.title],
    )
    def list_rows(
        db: DbSession,
        who: Viewer,
        filter: Annotated[list[str], Query(description="column:operator:value, repeatable (AND)")] = [],  # noqa: B006
        sort: Annotated[str | None, Query(description="column key, '-' prefix for descending")] = None,
        page: int = 1,
        per_page: int = listing.DEFAULT_PER_PAGE,
        columns: Annotated[str | None, Query(description="comma-separated column keys")] = None,
    ) -> dict[str, Any]:
        query = _with_prefs(db, who, spec, listing.parse_query(filter, sort, page, per_page, columns))
        return listing.as_json(listing.fetch(db, spec, query))

    @router.get(
        f"/{path}/export",
        summary=f"Export {spec.title} to Excel or PDF (the filtered rows, the chosen columns)",
        name=f"api_export_{spec.name}",
        tags=[tag or spec.title],
        response_class=StreamingResponse,
    )
    def export_rows(
        db: DbSession,
        who: Viewer,
        format: str = "xlsx",
        filter: Annotated[list[str], Query()] = [],  # noqa: B006
        sort: str | None = None,
        columns: str | None = None,
    ) -> StreamingResponse:
        query = _with_prefs(db, who, spec, listing.parse_query(filter, sort, 1, listing.DEFAULT_PER_PAGE, columns))
        return export_response(spec, query, format, who.username)

    @router.get(
        f"/{path}/columns",
        summary=f"The columns of {spec.title}: keys, labels, types, operators, values",
        tags=[tag or spec.title],
    )
    def describe_columns(who: Viewer) -> list[dict[str, Any]]:
        return [
            {
                "key": c.key,
                "label": c.label,
                "type": c.type.value,
                "default": c.default,
                "operators": list(listing.OPERATORS[c.type]) if c.filterable else [],
                "values": list(c.choices),
            }
            for c in spec.columns
        ]


def add_export_page(router: APIRouter, spec: listing.ListSpec) -> None:
    register(spec)

    @router.get(f"/{spec.name.replace('_', '-')}/export.{{fmt}}", include_in_schema=False)
    def export_page(request: Request, fmt: str, db: DbSession, who: Viewer) -> StreamingResponse:
        query = _with_prefs(db, who, spec, query_from_request(request))
        return export_response(spec, query, fmt, who.username)
