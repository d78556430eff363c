"""/api/v1/audit: the audit log (operators and admins)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from certfleet.dashboard.deps import require_role
from certfleet.dashboard.lists import add_list_api
from certfleet.dashboard.services.orders import AUDIT

router = APIRouter(tags=["Audit"], dependencies=[Depends(require_role("operator"))])
add_list_api(router, AUDIT, tag="Audit")
