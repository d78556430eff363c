"""The Provisioning Dashboard's numbers: each a COUNT in SQL, so the page costs the same at any fleet size."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from certfleet.bots import service as bots
from certfleet.dashboard.services import certificates, orders, servers
from certfleet.smime import service as smime


def tiles(session: Session) -> dict[str, dict[str, int]]:
    return {
        "bots": bots.counts(session),
        "certificates": certificates.tile_counts(session),
        "servers": servers.counts(session),
        "smime": smime.counts(session),
        "orders": orders.tile_counts(session),
    }


def deployment_runs() -> dict[str, Any]:
    """Deployment runs by Prefect state (the flow-run side of Deployment Pending / Failed); None where unknown."""
    from certfleet.dashboard.flows import count_runs

    counts = {
        "pending": count_runs("deploy-certificate", ["SCHEDULED", "PENDING", "RUNNING"]),
        "failed": count_runs("deploy-certificate", ["FAILED", "CRASHED"]),
    }
    error = None if all(v is not None for v in counts.values()) else "Prefect did not answer"
    return {"counts": counts, "error": error}
