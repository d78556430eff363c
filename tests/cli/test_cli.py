"""The `certfleet` command as a newcomer runs it: demo, up, starting runs through Prefect, clear errors."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from certfleet.demo.fleet import load_fleet
from certfleet.demo.listener import free_port
from certfleet.deployments.api import auth_headers
from certfleet.deployments.embedded import EmbeddedPrefect, port_in_use
from certfleet.deployments.names import BOT_FLOWS, CENTRAL_FLOWS

CERTFLEET = str(Path(sys.executable).parent / "certfleet")


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CERTFLEET_"))}
    env.update(CERTFLEET_DATA_DIR=str(data_dir), CERTFLEET_VERIFY_TIMEOUT_S="5", **extra)
    return env


def _run(data_dir: Path, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CERTFLEET, *args],
        env=_env(data_dir, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_deploys_verifies_and_rolls_back(tmp_path: Path) -> None:
    result = _run(tmp_path, "demo", "--keep", str(tmp_path / "demo"), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Traceback" not in out + result.stderr
    assert out.count("│ Deployed") == 3
    assert out.count("│ Rolled Back") == 1
    assert "demo finished: every deployment was verified, the broken one was rolled back" in out
    assert "was not served within 5.0 s" in " ".join(out.split())
    hosts = load_fleet(tmp_path / "demo" / "fleet")
    assert len(hosts) == 3
    assert not any(port_in_use("127.0.0.1", h.port) for h in hosts)  # the demo cleans up after itself
    with sqlite3.connect(tmp_path / "demo" / "certfleet.db") as db:
        assert db.execute("SELECT status FROM certificates ORDER BY id").fetchall() == [
            ("Deployed",),
            ("Deployed",),
            ("Rolled Back",),
        ]


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    port = free_port()
    result = _run(tmp_path, "issue", "1", CERTFLEET_PREFECT_PORT=str(port))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: no Prefect API answers at http://127.0.0.1:{port}/api: start certfleet with `certfleet up`"
    )


def test_db_upgrade_creates_the_database_and_key(tmp_path: Path) -> None:
    result = _run(tmp_path, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "certfleet.db").exists()
    assert "is up to date" in result.stdout


@dataclass
class Up:
    """A running `certfleet up` and everything it printed so far (a thread keeps reading its console)."""

    process: subprocess.Popen[str]
    data_dir: Path
    port: int  # the Prefect server's
    dashboard_port: int
    lines: list[str] = field(default_factory=list)

    @property
    def console(self) -> str:
        return "".join(self.lines)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def printed(self, pattern: str) -> str:
        match = re.search(pattern, self.console)
        assert match, f"{pattern!r} not printed:\n{self.console}"
        return match.group(1)

    @property
    def auth_string(self) -> str:
        return self.printed(r"Prefect login: auth string (\S+) \(shown once")


# What a healthy start must never print: Prefect's own temporary server (a client that ran before the API was
# chosen), telemetry errors of an offline install, SQLite contention between two servers, any traceback.
UNHEALTHY = re.compile(r"ERROR|Traceback|temporary server|database is locked", re.IGNORECASE)


def assert_healthy(console: str) -> None:
    bad = [line for line in console.splitlines() if UNHEALTHY.search(line)]
    assert not bad, "\n".join(bad) + "\n--- whole console ---\n" + console


def start_up(data_dir: Path, *args: str, **extra: str) -> Up:
    """`certfleet up` on free ports; returns once it printed "Press Ctrl-C to stop." (fails if it exits)."""
    port, dashboard_port = int(extra.pop("CERTFLEET_PREFECT_PORT", free_port())), free_port()
    process = subprocess.Popen(
        [CERTFLEET, "up", *args],
        env=_env(
            data_dir,
            CERTFLEET_PREFECT_PORT=str(port),
            CERTFLEET_DASHBOARD_PORT=str(dashboard_port),
            **extra,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    up = Up(process, data_dir, port, dashboard_port)
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            up.lines.append(line)
            if "Press Ctrl-C to stop." in line:
                ready.set()
        ready.set()  # exited

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout=400):
        process.kill()
        pytest.fail("certfleet up did not come up:\n" + up.console)
    if "Press Ctrl-C to stop." not in up.console:
        process.kill()
        pytest.fail("certfleet up exited early:\n" + up.console)
    return up


def stop_up(up: Up) -> None:
    up.process.send_signal(signal.SIGINT)
    try:
        up.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        up.process.kill()
        pytest.fail("certfleet up did not stop on Ctrl-C")
    time.sleep(0.2)  # the reader thread takes the last lines


@pytest.fixture
def running_up(tmp_path: Path) -> Iterator[Up]:
    up = start_up(tmp_path)
    assert f"Prefect UI:   http://127.0.0.1:{up.port}" in up.console
    try:
        yield up
    finally:
        stop_up(up)
    assert_healthy(up.console)


def _prefect(up: Up, path: str, auth_string: str | None) -> httpx.Response:
    return httpx.post(f"{up.api}/{path}", json={}, headers=auth_headers(auth_string), timeout=10, trust_env=False)


def admin_api_token(data_dir: Path, name: str = "cli tests") -> str:
    """An API token for the first admin, made the way the Account page makes one (also the latency benchmark's)."""
    code = (
        "from sqlalchemy import select\n"
        "from certfleet.dashboard.services import users\n"
        "from certfleet.models.db import session_scope\n"
        "from certfleet.models.orm import User\n"
        "with session_scope() as s:\n"
        "    admin = s.scalars(select(User).where(User.username == 'admin')).one()\n"
        f"    print(users.create_api_token(s, admin.id, {name!r}, 'tests').token)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(data_dir), capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def _statuses(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as db:
        return [r[0] for r in db.execute("SELECT status FROM certificates ORDER BY id")]


def test_up_serves_the_flows_and_provisions_the_demo_fleet(running_up: Up) -> None:
    up = running_up
    data_dir, port = up.data_dir, up.port
    assert _prefect(up, "deployments/filter", None).status_code == 401  # the Prefect API wants the auth string
    deployments = _prefect(up, "deployments/filter", up.auth_string)
    assert deployments.status_code == 200
    names = {d["name"]: d for d in deployments.json()}
    assert set(names) == {"central", "on-bots"}
    flows = {f["name"] for f in _prefect(up, "flows/filter", up.auth_string).json()}
    assert {
        "issue-certificate",
        "deploy-certificate",
        "provision-certificate",
        "rollback-deployment",
    } <= flows
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10, trust_env=False).status_code == 200  # the UI
    ui = httpx.get(f"http://127.0.0.1:{port}/ui-settings", timeout=10, trust_env=False).json()
    assert ui["auth"] == "BASIC"  # the UI shows its login page

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and _statuses(data_dir / "certfleet.db") != ["Deployed"] * 3:
        time.sleep(1)
    assert _statuses(data_dir / "certfleet.db") == ["Deployed"] * 3

    # Starting a run from the CLI goes through Prefect to the served flow.
    with sqlite3.connect(data_dir / "certfleet.db") as db:
        deployment_id, cert_id, previous = db.execute(
            "SELECT id, certificate_id, previous_serial FROM deployments ORDER BY id"
        ).fetchone()
    result = _run(data_dir, "rollback", str(deployment_id), CERTFLEET_PREFECT_PORT=str(port), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"rollback-deployment-{deployment_id}: Completed" in result.stdout
    assert _statuses(data_dir / "certfleet.db")[cert_id - 1] == "Rolled Back"

    listing = _run(data_dir, "certificates")
    assert "web-1.demo.certfleet.test" in listing.stdout
    assert previous is not None
    _deploy_waits_for_a_maintenance_window(up)
    _demo_fleet_is_healthy_on_the_dashboard(up)
    assert_healthy(up.console)


def _deploy_waits_for_a_maintenance_window(up: Up) -> None:
    """`certfleet deploy` to a server outside its window schedules the run for the window and returns; with
    --ignore-window it deploys now (through the served flows) and the audit log records who said so."""
    from datetime import UTC, datetime, timedelta

    opening = (datetime.now(UTC) + timedelta(hours=12)).replace(minute=0, second=0, microsecond=0)
    db_path = up.data_dir / "certfleet.db"
    with sqlite3.connect(db_path) as db:
        (server_id,) = db.execute("SELECT server_id FROM deployment_targets WHERE certificate_id = 2").fetchone()
        db.execute(
            "UPDATE servers SET maintenance_cron = ?, maintenance_duration_minutes = 60 WHERE id = ?",
            (f"0 {opening.hour} * * *", server_id),
        )
    port = str(up.port)
    later = _run(up.data_dir, "deploy", "2", CERTFLEET_PREFECT_PORT=port, timeout=180)
    assert later.returncode == 0, later.stdout + later.stderr
    assert f"at-{opening:%Y%m%d%H%M}: Scheduled" in later.stdout
    assert "waits for its server's maintenance window" in later.stdout
    with sqlite3.connect(db_path) as db:
        (waits,) = db.execute("SELECT deploy_waits_until FROM deployment_targets WHERE certificate_id = 2").fetchone()
    assert waits.startswith(f"{opening:%Y-%m-%d %H:%M}")
    now = _run(up.data_dir, "deploy", "2", "--ignore-window", CERTFLEET_PREFECT_PORT=port, timeout=180)
    assert now.returncode == 0, now.stdout + now.stderr
    assert ": Completed" in now.stdout
    with sqlite3.connect(db_path) as db:
        actors = [
            r[0]
            for r in db.execute(
                "SELECT actor FROM audit_events WHERE action = ?", ("deploy-ignoring-maintenance-window",)
            )
        ]
        (status,) = db.execute("SELECT status FROM certificates WHERE id = 2").fetchone()
        db.execute("UPDATE servers SET maintenance_cron = NULL, maintenance_duration_minutes = NULL")
    assert [a.startswith("cli:") for a in actors] == [True]
    assert status == "Deployed"


def _demo_fleet_is_healthy_on_the_dashboard(up: Up) -> None:
    """Every server Active, Prefect's run counts readable, "Check connectivity" works on a demo server."""
    dashboard = f"http://127.0.0.1:{up.dashboard_port}/api/v1"
    bearer = {"Authorization": f"Bearer {admin_api_token(up.data_dir)}"}
    tiles = httpx.get(f"{dashboard}/dashboard", headers=bearer, timeout=10, trust_env=False).json()
    assert tiles["servers"] == {"total": 3, "mapped": 3, "active": 3, "windows": 0}
    runs = httpx.get(f"{dashboard}/dashboard/runs", headers=bearer, timeout=10, trust_env=False).json()
    assert runs["error"] is None  # the dashboard reads Prefect with the auth string
    assert set(runs["counts"]) == {"pending", "failed"}

    # "Check connectivity" on a demo server: a check-server run through the authenticated Prefect API.
    with sqlite3.connect(up.data_dir / "certfleet.db") as db:
        server_id, first_checked = db.execute("SELECT id, last_checked_at FROM servers ORDER BY id").fetchone()
    started = httpx.post(f"{dashboard}/servers/{server_id}/check", headers=bearer, timeout=30, trust_env=False)
    assert started.status_code == 202, started.text
    run_id = started.json()["flow_run_id"]
    deadline = time.monotonic() + 180
    state = None
    while time.monotonic() < deadline and state != "COMPLETED":
        run = httpx.get(f"{up.api}/flow_runs/{run_id}", headers=auth_headers(up.auth_string), timeout=10)
        state = run.json()["state"]["type"]
        time.sleep(1)
    assert state == "COMPLETED"
    with sqlite3.connect(up.data_dir / "certfleet.db") as db:
        status, reason, checked = db.execute(
            "SELECT status, status_reason, last_checked_at FROM servers WHERE id = ?", (server_id,)
        ).fetchone()
    assert (status, reason) == ("Active", None)
    assert checked > first_checked


def test_up_attaches_to_a_running_prefect_server(tmp_path: Path) -> None:
    """The README's "attaches instead of starting one": deployments land on THAT server and runs complete."""
    auth_string = "attach-test-auth-string-0123456789abcdef"
    prefect = EmbeddedPrefect(tmp_path / "own-prefect", port=free_port(), auth_string=auth_string)
    prefect.start(timeout=180)
    try:
        refused = _run(tmp_path / "no-auth", "up", CERTFLEET_PREFECT_PORT=str(prefect.port), timeout=120)
        assert refused.returncode == 1
        assert refused.stderr.strip() == (
            f"error: the Prefect server on 127.0.0.1:{prefect.port} requires an auth string and certfleet has "
            "none: set CERTFLEET_PREFECT_AUTH_STRING to that server's auth string"
        )
        up = start_up(
            tmp_path / "data", CERTFLEET_PREFECT_PORT=str(prefect.port), CERTFLEET_PREFECT_AUTH_STRING=auth_string
        )
        try:
            assert "Prefect login:" not in up.console  # nothing generated: the server's own string is used
            headers = auth_headers(auth_string)
            deployments = httpx.post(f"{prefect.api_url}/deployments/filter", json={}, headers=headers, timeout=10)
            assert len(deployments.json()) == len(CENTRAL_FLOWS) + len(BOT_FLOWS)  # every flow, once
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and _statuses(up.data_dir / "certfleet.db") != ["Deployed"] * 3:
                time.sleep(1)
            assert _statuses(up.data_dir / "certfleet.db") == ["Deployed"] * 3
            body = {"flows": {"name": {"any_": ["provision-certificate"]}}}
            states: list[str] = []
            while time.monotonic() < deadline and states != ["COMPLETED"] * 3:  # the runs end just after the rows
                runs = httpx.post(f"{prefect.api_url}/flow_runs/filter", json=body, headers=headers, timeout=10)
                states = sorted(r["state"]["type"] for r in runs.json())
                time.sleep(1)
            assert states == ["COMPLETED"] * 3  # on the server we started
        finally:
            stop_up(up)
        assert_healthy(up.console)
        assert prefect.process is not None
        assert prefect.process.poll() is None  # attached to, so not stopped by up
    finally:
        prefect.stop()
