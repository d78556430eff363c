"""The `certfleet` command. Prefect is imported only inside commands, after PREFECT_HOME is set."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

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
bot_app = typer.Typer(help="The bot agent: runs certfleet's deployments inside a network.", no_args_is_help=True)
app.add_typer(bot_app, name="bot")
smime_app = typer.Typer(help="S/MIME: directory sync and certificate rollout.", no_args_is_help=True)
app.add_typer(smime_app, name="smime")
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
def deploy(
    certificate_id: int,
    wait: Annotated[bool, typer.Option(help="Wait for the runs that start now to end")] = True,
    ignore_window: Annotated[
        bool, typer.Option(help="Deploy now, outside the servers' maintenance windows (audited)")
    ] = False,
) -> None:
    """Start deploy-certificate runs (all targets: one run per bot that reaches them) on the running certfleet.

    A server outside its maintenance window gets a run scheduled for the window's start; it is not waited for."""
    if ignore_window:
        import getpass

        from certfleet.cli.runs import start_deploy

        states = start_deploy(certificate_id, actor=f"cli:{getpass.getuser()}", ignore_window=True, wait=wait)
        for state in states:
            out.print(state)
        if wait and not all(": Completed" in state or "waits for" in state for state in states):
            raise typer.Exit(1)
        return
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
def revoke(
    certificate_id: int,
    reason: Annotated[
        str, typer.Option(help="RFC 5280 reason: unspecified, keyCompromise, superseded, cessationOfOperation, ...")
    ],
    serial: Annotated[
        str | None, typer.Option(help="A serial (hex) it had before a rotation; default: the current one")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the run to end")] = True,
) -> None:
    """Start a revoke-certificate run: the CA that issued the certificate revokes it; it becomes Revoked."""
    import getpass

    from certfleet.cli.runs import start_revocation

    lines = start_revocation(certificate_id, reason, serial, actor=f"cli:{getpass.getuser()}", wait=wait)
    for line in lines:
        out.print(line, highlight=False)
    if wait and ": Completed" not in lines[-1]:
        raise typer.Exit(1)


@app.command()
def rotate(
    certificate_ids: Annotated[
        list[int] | None, typer.Argument(help="Certificate ids (or choose by an option)")
    ] = None,
    batch_name: Annotated[str | None, typer.Option(help="Every certificate with this Batch Name")] = None,
    ca_connector: Annotated[int | None, typer.Option(help="Filter: certificates of this CA connector id")] = None,
    tag: Annotated[str | None, typer.Option(help="Filter: certificates with this tag")] = None,
    status: Annotated[str | None, typer.Option(help="Filter: certificates in this status, e.g. Deployed")] = None,
    expiring_within: Annotated[int | None, typer.Option(help="Filter: expiring within this many days")] = None,
    canary: Annotated[int, typer.Option(help="Canaries per server type, deployed before the rest")] = 1,
    failure_budget: Annotated[float, typer.Option(help="Fraction that may fail before the batch stops")] = 0.05,
    ca_concurrency: Annotated[int, typer.Option(help="Issues at once per CA connector")] = 4,
    server_concurrency: Annotated[int, typer.Option(help="Deployments at once per server")] = 1,
    batch_key: Annotated[str | None, typer.Option(help="Continue the stopped batch with this key")] = None,
    ignore_maintenance_windows: Annotated[
        bool,
        typer.Option(
            "--ignore-maintenance-windows",
            help="Deploy now also to servers outside their maintenance window (audited); otherwise those wait",
        ),
    ] = False,
    wait: Annotated[bool, typer.Option(help="Wait for the run to end")] = True,
) -> None:
    """Start a rotate-batch run: re-key, re-issue and deploy the chosen certificates, canaries first."""
    import getpass

    from certfleet.cli.runs import start_rotation

    request: dict[str, Any] = {
        "certificate_ids": certificate_ids or None,
        "batch_name": batch_name,
        "ca_connector_id": ca_connector,
        "tag": tag,
        "status": status,
        "expiring_within_days": expiring_within,
        "canary_per_server_type": canary,
        "failure_budget": failure_budget,
        "ca_concurrency": ca_concurrency,
        "server_concurrency": server_concurrency,
        "ignore_maintenance_windows": ignore_maintenance_windows,
        "batch_key": batch_key,
    }
    lines = start_rotation(request, actor=f"cli:{getpass.getuser()}", wait=wait)
    for line in lines:
        out.print(line, highlight=False)
    if wait and ": Completed" not in lines[-1]:
        raise typer.Exit(1)


@smime_app.command("sync")
def smime_sync(
    profile_id: Annotated[int | None, typer.Argument(help="A directory profile's id; default: every profile")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the run to end")] = True,
) -> None:
    """Start a sync-directory run: read the profile's users from Azure AD through Microsoft Graph."""
    import getpass

    from certfleet.cli.runs import start_smime_sync

    _print_run(start_smime_sync(profile_id, actor=f"cli:{getpass.getuser()}", wait=wait), wait)


@smime_app.command("rollout")
def smime_rollout(
    user_id: Annotated[list[int] | None, typer.Option(help="Only these users (repeat); default: all awaiting")] = None,
    ca_connector: Annotated[
        int | None, typer.Option(help="A CA connector's id; default: the user's profile's, else the built-in CA")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Only users with this Source (exactly as listed)")] = None,
    profile: Annotated[int | None, typer.Option(help="Only users read from this directory profile (its id)")] = None,
    status: Annotated[
        list[str] | None, typer.Option(help="Only users in this status (repeat): Awaiting Order, CSR Pending, ...")
    ] = None,
    match: Annotated[str | None, typer.Option(help="Only users whose name or e-mail contains this (any case)")] = None,
    delivery: Annotated[
        str | None,
        typer.Option(
            help="One target for the whole run: setting, profile:<id> or folder:<absolute path>; default: each "
            "user's profile's own target, else the S/MIME delivery setting"
        ),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the run to end")] = True,
) -> None:
    """Start an smime-rollout run: order, issue and deliver S/MIME certificates (all awaiting, some, a filter)."""
    import getpass

    from certfleet.cli.runs import start_smime_rollout

    users = list(user_id) if user_id else None
    wanted = None
    if source or profile is not None or status or match:
        from pydantic import ValidationError

        from certfleet.models.db import session_scope
        from certfleet.smime import selection

        try:
            wanted = selection.UserFilter.model_validate(
                {"source": source, "profile_id": profile, "status": status, "text": match}
            )
        except ValidationError as exc:
            raise typer.BadParameter(str(exc.errors()[0]["msg"]), param_hint="--status") from None
        with session_scope() as s:
            selection.check(s, wanted)
            out.print(f"{len(selection.matching(s, users, wanted))} user(s) match now")
    actor = f"cli:{getpass.getuser()}"
    line = start_smime_rollout(
        users, actor=actor, wait=wait, ca_connector_id=ca_connector, user_filter=wanted, delivery=delivery
    )
    _print_run(line, wait)


@smime_app.command("revoke")
def smime_revoke(
    user_id: Annotated[int, typer.Argument(help="The S/MIME user's id")],
    reason: Annotated[str, typer.Option(help="RFC 5280 reason name, e.g. cessationOfOperation for a leaver")],
    serial: Annotated[str | None, typer.Option(help="Only this serial (hex); default: every valid one")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the run to end")] = True,
) -> None:
    """Start a revoke-smime-user run: the issuing CA revokes the user's certificates; the user becomes Revoked."""
    import getpass

    from certfleet.cli.runs import start_smime_revocation

    _print_run(start_smime_revocation(user_id, reason, serial, actor=f"cli:{getpass.getuser()}", wait=wait), wait)


@smime_app.command("reenroll")
def smime_reenroll(user_id: Annotated[int, typer.Argument(help="The S/MIME user's id (status Revoked)")]) -> None:
    """Put a Revoked user back to Awaiting Order: the next rollout orders a new key and certificate (audited)."""
    import getpass

    from certfleet.models.db import session_scope
    from certfleet.smime import service

    with session_scope() as s:  # a refusal (not Revoked, unknown id) is main()'s one-line error, exit 1
        user = service.reenroll(s, user_id, f"cli:{getpass.getuser()}")
        line = f"{user.email}: {user.status.value}; the next rollout orders a new certificate"
    out.print(line, highlight=False)


def _print_run(line: str, wait: bool) -> None:
    out.print(line, highlight=False)
    if wait and ": Completed" not in line:
        raise typer.Exit(1)


@bot_app.command("run")
def bot_run(
    url: Annotated[str, typer.Option(envvar="CERTFLEET_URL", help="certfleet's address, e.g. https://certfleet:8080")],
    token: Annotated[
        str, typer.Option(envvar="CERTFLEET_BOT_TOKEN", help="The bot's token (cfb_...), shown once at its creation")
    ],
    work_dir: Annotated[Path, typer.Option(help="Where the agent keeps its worker's log and Prefect home")] = Path(
        "~/.certfleet-bot"
    ),
    ca_bundle: Annotated[
        str | None,
        typer.Option(envvar="CERTFLEET_CA_BUNDLE", help="CA file of certfleet's TLS certificate"),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs at once on this bot")] = 8,
) -> None:
    """Check in with the bot token and run a Prefect worker on this bot's queue, until stopped."""
    from certfleet.bots.agent import Agent, AgentOptions

    folder = work_dir.expanduser()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    options = AgentOptions(url=url, token=token, work_dir=folder, ca_bundle=ca_bundle, limit=limit)
    raise typer.Exit(Agent(options, say=lambda line: out.print(line, highlight=False)).run())


@app.command()
def certificates() -> None:
    """List certificates with their status, serial, expiry and reason."""
    from certfleet.cli.tables import certificates_table

    out.print(certificates_table())


def _start(flow_name: str, parameters: dict[str, Any], wait: bool) -> None:
    from certfleet.cli.runs import start_run

    states = start_run(flow_name, parameters, wait=wait)
    for state in states:
        out.print(state)
    if wait and not all(": Completed" in state or "waits for" in state for state in states):
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
