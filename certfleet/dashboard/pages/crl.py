"""The built-in CA's CRL over HTTP, for anyone (no login): what a relying party fetches from the CRL Distribution
Point that certificates of the built-in CA name when CERTFLEET_PUBLIC_URL is set."""

from __future__ import annotations

import threading
import time

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import func, select

from certfleet.dashboard.deps import DbSession
from certfleet.models import repo
from certfleet.models.orm import CAConnector, Revocation
from certfleet.tasks.build import built_in_crl

router = APIRouter()

# Signing a CRL of 10,000 entries takes about 0.4 s: a public route must not do that for every request. A CRL is
# kept per connector until a revocation is added (count and newest id change), the CA's keys change, or it is an
# hour old.
REBUILD_AFTER_S = 3600.0
_cache: dict[int, tuple[tuple[int, int | None, str | None], float, bytes]] = {}
_lock = threading.Lock()


@router.get("/crl/{connector_id}.crl")
def crl(connector_id: int, db: DbSession) -> Response:
    """DER (RFC 5280), signed by the issuing CA; a revocation shows at the next request."""
    connector = repo.get(db, CAConnector, connector_id)
    count, newest = db.execute(
        select(func.count(Revocation.id), func.max(Revocation.id)).where(Revocation.ca_connector_id == connector.id)
    ).one()
    key = (int(count), newest, connector.settings.get("issuing_cert_pem"))  # new CA keys: a new CRL
    with _lock:
        cached = _cache.get(connector.id)
        if cached is None or cached[0] != key or time.monotonic() - cached[1] > REBUILD_AFTER_S:
            cached = (key, time.monotonic(), built_in_crl(db, connector))
            _cache[connector.id] = cached
    return Response(cached[2], media_type="application/pkix-crl", headers={"Cache-Control": "no-cache"})
