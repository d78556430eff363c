"""renew-expiring: the schedule that keeps every managed certificate renewed and served."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from certfleet.tasks.renewal import find_due, start_run


@flow(name="renew-expiring", flow_run_name="renew-expiring")
def renew_expiring() -> int:
    """Starts a provision run for each certificate inside its renewal window, and a deploy run for each
    issued certificate that is still not served. Returns how many runs it started (or found running)."""
    due = find_due()
    started = [(d, start_run(d)) for d in due]
    if started:
        create_table_artifact(
            key="renewals",
            table=[
                {
                    "certificate": d.common_name,
                    "expires on": f"{d.expires_on:%Y-%m-%d %H:%M}",
                    "run": d.action,
                    "flow run": run_id,
                }
                for d, run_id in started
            ],
            description="Runs started by renew-expiring",
        )
    get_run_logger().info(
        "%d certificate(s) due: %d renewals, %d re-deployments",
        len(started),
        sum(d.action == "provision" for d in due),
        sum(d.action == "deploy" for d in due),
    )
    return len(started)
