"""`certfleet demo`: runs once on a temporary data directory and its own Prefect server, then exits."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from certfleet.cli.main import use_data_dir
from certfleet.demo.listener import free_port
from certfleet.demo.run import DemoRow, run_demo
from certfleet.deployments.api import use_api
from certfleet.deployments.auth_string import ensure_auth_string
from certfleet.deployments.embedded import EmbeddedPrefect
from certfleet.models.bootstrap import initialize
from certfleet.settings import get_settings


def run_demo_command(keep: Path | None, console: Console) -> bool:
    root = keep.resolve() if keep else Path(tempfile.mkdtemp(prefix="certfleet-demo-"))
    # The demo tells its own story and its Prefect server is thrown away: keep Prefect's logs out of it.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    os.environ.setdefault("CERTFLEET_VERIFY_TIMEOUT_S", "5")  # the broken host needs no 15 s to prove it
    use_data_dir(root)
    try:
        boot = initialize()
        console.print(f"demo data in {root}; starting a Prefect server for the demo ...")
        auth_string = ensure_auth_string().value  # the demo's own, sealed in its data directory, never shown
        prefect = EmbeddedPrefect(get_settings().prefect_home, port=free_port(), auth_string=auth_string)
        prefect.start()
        use_api(prefect.api_url, auth_string)
        try:
            rows = run_demo(
                root / "fleet",
                ca_connector_id=boot.ca_connector_id,
                bot_id=boot.local_bot_id,
                say=console.print,
            )
        finally:
            prefect.stop()
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    console.print(_table(rows))
    for r in rows:
        if r.note:
            console.print(f"{r.host}: {r.note}", highlight=False)
    ok = _as_promised(rows)
    console.print(
        "demo finished: every deployment was verified, the broken one was rolled back"
        if ok
        else "[red]demo finished with unexpected results (see the table)[/red]"
    )
    return ok


def _flush_events() -> None:
    """Send the runs' last events before the demo's Prefect server goes away."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=5)


def _short(serial: str) -> str:
    return serial if len(serial) <= 14 else f"{serial[:12]}…"


def _table(rows: list[DemoRow]) -> Table:
    table = Table(title="certfleet demo: what happened")
    for column in ("server", "endpoint", "step", "serial deployed", "serial served", "status"):
        table.add_column(column, no_wrap=True)
    for r in rows:
        table.add_row(r.host, r.endpoint, r.step, _short(r.expected_serial), _short(r.served_serial), r.status)
    return table


def _as_promised(rows: list[DemoRow]) -> bool:
    *deployed, broken = rows
    return all(r.status == "Deployed" and r.served_serial == r.expected_serial for r in deployed) and (
        broken.status == "Rolled Back" and broken.served_serial != broken.expected_serial
    )
