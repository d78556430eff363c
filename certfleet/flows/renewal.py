"""renew-expiring: the schedule that keeps every managed certificate renewed and served."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from certfleet.renewal.runs import record_completed
from certfleet.tasks.renewal import Due, find_due, start_run
from certfleet.tasks.renewal_info import refresh_renewal_info
from certfleet.tasks.smime_renewal import find_due_smime_users, start_smime_renewal


@flow(name="renew-expiring", flow_run_name="renew-expiring")
def renew_expiring() -> int:
    """Renew every certificate inside its renewal window (or past the time its ACME CA's renewal information
    suggests); re-deploy issued ones that are not served yet; renew the S/MIME certificates inside theirs (one
    smime-rollout run for those users: new key, CA, delivery again).

    Returns how many runs it started (or found running); fails, after starting the others, if any could not start.
    """
    # ACME CAs with renewalInfo (RFC 9773) say when to renew; a CA that fails leaves its certificates to the
    # window rule, and must not stop the renewals.
    refresh_renewal_info(return_state=True)
    due = find_due()
    started: list[tuple[Due, str]] = []
    refused: list[str] = []
    for d in due:  # one certificate that cannot start (no bot for its server) must not hold up the others
        state = start_run(d, return_state=True)
        if state.is_completed():
            started.append((d, state.result()))
        else:
            refused.append(f"{d.common_name}: {state.message or state.name}")
    smime_due = find_due_smime_users()
    smime_run: str | None = None
    if smime_due:
        smime_state = start_smime_renewal(smime_due, len(smime_due), return_state=True)
        if smime_state.is_completed():
            smime_run = smime_state.result()
        else:
            refused.append(f"S/MIME renewal of {len(smime_due)} user(s): {smime_state.message or smime_state.name}")
    table = [
        {"certificate": d.common_name, "expires on": f"{d.expires_on:%Y-%m-%d %H:%M}", "run": d.action,
         "flow run": run_id}
        for d, run_id in started
    ] + [
        {"certificate": f"S/MIME {u.email}", "expires on": f"{u.expires_on:%Y-%m-%d %H:%M}", "run": "smime-rollout",
         "flow run": smime_run}
        for u in (smime_due if smime_run else [])
    ]  # fmt: skip
    if table:
        create_table_artifact(key="renewals", table=table, description="Runs started by renew-expiring")
    get_run_logger().info(
        "%d certificate(s) due: %d renewals, %d re-deployments, %d S/MIME renewals",
        len(started),
        sum(d.action == "provision" for d in due),
        sum(d.action == "deploy" for d in due),
        len(smime_due),
    )
    # Every due certificate was looked at (some may have failed to start, which the red run reports): the
    # schedule is alive. /metrics exposes this time; an alert fires when it grows old.
    record_completed()
    if refused:
        raise RenewalNotStarted(
            f"{len(refused)} of {len(due) + bool(smime_due)} due run(s) could not start: " + "; ".join(refused)
        )
    return len(started) + (smime_run is not None)


class RenewalNotStarted(RuntimeError):
    """Some due certificates could not be started; the others were. The run ends red so someone looks."""
