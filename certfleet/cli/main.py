"""The `certfleet` command. Prefect is imported only inside commands, after PREFECT_HOME is set."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from certfleet import __version__
from certfleet.settings import get_settings

app = typer.Typer(
    help="certfleet: find, issue, deploy, verify, roll back and renew certificates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="certfleet's own database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
# Piped output (CI logs, `| tee`) gets a wide table instead of rich's 80-column fallback.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def use_data_dir(data_dir: Path) -> None:
    """Point settings, the key, the database and Prefect's home at another data directory."""
    from certfleet.models import db, encryption

    os.environ["CERTFLEET_DATA_DIR"] = str(data_dir)
    get_settings.cache_clear()
    encryption.reset_sealer()
    db.dispose_engines()
    os.environ["PREFECT_HOME"] = str(get_settings().prefect_home)


@app.callback()
def _setup(
    data_dir: Annotated[
        Path | None, typer.Option(envvar="CERTFLEET_DATA_DIR", help="Data directory (default ~/.certfleet)")
    ] = None,
) -> None:
    if data_dir is not None:
        use_data_dir(data_dir)
    os.environ.setdefault("PREFECT_HOME", str(get_settings().prefect_home))


@app.command()
def version() -> None:
    """Print certfleet's version."""
    out.print(__version__)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema (certfleet up does this at every start)."""
    from certfleet.models.db import migrate

    migrate()
    out.print(f"database at {get_settings().sqlalchemy_url.split('@')[-1]} is up to date")


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Create the demo fleet on the first start")] = True,
) -> None:
    """Start certfleet on its embedded default: database, built-in CA, Prefect server and UI, served flows."""
    from certfleet.cli.up import run_up

    run_up(demo_fleet=demo and get_settings().demo_fleet, say=out.print)


@app.command()
def dashboard(
    port: Annotated[int | None, typer.Option(help="Port (default CERTFLEET_DASHBOARD_PORT, 8080)")] = None,
) -> None:
    """Serve only the web dashboard and the /api/v1 JSON API (certfleet up serves it too)."""
    from certfleet.dashboard.server import ensure_admin, serve_forever
    from certfleet.models.bootstrap import initialize

    settings = get_settings()
    initialize()
    first = ensure_admin()
    if first is not None:
        shown = first.password or "the value of CERTFLEET_ADMIN_PASSWORD"
        out.print(f"first login: user {first.username}, password {shown} (shown once: change it)")
    out.print(f"dashboard: http://{settings.host}:{port or settings.dashboard_port}")
    serve_forever(settings.host, port or settings.dashboard_port)


@app.command()
def demo(
    keep: Annotated[
        Path | None, typer.Option(help="Keep the demo's data in this directory instead of a temporary one")
    ] = None,
) -> None:
    """Run the whole lifecycle once on a throwaway fleet of TLS listeners, then exit."""
    from certfleet.cli.demo import run_demo_command

    ok = run_demo_command(keep, out)
    raise typer.Exit(0 if ok else 1)


@app.command()
def issue(certificate_id: int, wait: Annotated[bool, typer.Option(help="Wait for the run to end")] = True) -> None:
    """Start an issue-certificate run on the running certfleet."""
    _start("issue-certificate", {"certificate_id": certificate_id}, wait)


@app.command()
def deploy(certificate_id: int, wait: Annotated[bool, typer.Option(help="Wait for the run to end")] = True) -> None:
    """Start a deploy-certificate run (all targets) on the running certfleet."""
    _start("deploy-certificate", {"certificate_id": certificate_id}, wait)


@app.command()
def provision(certificate_id: int, wait: Annotated[bool, typer.Option(help="Wait for the run to end")] = True) -> None:
    """Start a provision-certificate run (issue, then deploy) on the running certfleet."""
    _start("provision-certificate", {"certificate_id": certificate_id}, wait)


@app.command()
def rollback(deployment_id: int, wait: Annotated[bool, typer.Option(help="Wait for the run to end")] = True) -> None:
    """Start a rollback-deployment run on the running certfleet."""
    _start("rollback-deployment", {"deployment_id": deployment_id}, wait)


@app.command()
def renew(wait: Annotated[bool, typer.Option(help="Wait for the run to end")] = True) -> None:
    """Start a renew-expiring run now (it also runs every hour on its schedule)."""
    _start("renew-expiring", {}, wait)


@app.command()
def certificates() -> None:
    """List certificates with their status, serial, expiry and reason."""
    from certfleet.cli.tables import certificates_table

    out.print(certificates_table())


def _start(flow_name: str, parameters: dict[str, int], wait: bool) -> None:
    from certfleet.cli.runs import start_run

    state = start_run(flow_name, parameters, wait=wait)
    out.print(state)
    if wait and "Completed" not in state:
        raise typer.Exit(1)


def main() -> None:
    """Console entry point: errors are one clear line, not a traceback (CERTFLEET_DEBUG=1 shows it)."""
    try:
        app()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        if os.environ.get("CERTFLEET_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        err.print(f"[red]error:[/red] {message}", highlight=False)
        sys.exit(1)
