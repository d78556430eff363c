"""GET /metrics: the Prometheus text format, for a scraper with an API token (a metrics-only one will do)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from certfleet.dashboard.deps import Scraper
from certfleet.dashboard.metrics import exposition
from certfleet.models.db import get_engine
from certfleet.settings import get_settings

router = APIRouter()


@router.get("/metrics")
def metrics(who: Scraper) -> Response:
    # One connection, no ORM session: the queries are Core selects, the rows are streamed.
    with get_engine().connect() as conn:
        body = exposition(conn, get_settings().metrics_max_certificates)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
