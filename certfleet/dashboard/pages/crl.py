"""The built-in CA's CRL over HTTP, for anyone (no login): what a relying party fetches from the CRL Distribution
Point that certificates of the built-in CA name when CERTFLEET_PUBLIC_URL is set."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from certfleet.dashboard.deps import DbSession
from certfleet.models import repo
from certfleet.models.orm import CAConnector
from certfleet.tasks.build import built_in_crl

router = APIRouter()


@router.get("/crl/{connector_id}.crl")
def crl(connector_id: int, db: DbSession) -> Response:
    """DER (RFC 5280), built from the revocations at each request, so a revoke shows at once."""
    der = built_in_crl(db, repo.get(db, CAConnector, connector_id))
    return Response(der, media_type="application/pkix-crl", headers={"Cache-Control": "no-cache"})
