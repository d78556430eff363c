"""The `certfleet` command as a newcomer runs it: demo, up, starting runs through Prefect, clear errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from certfleet.demo.fleet import load_fleet
from certfleet.demo.listener import free_port
from certfleet.deployments.embedded import port_in_use

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


@pytest.fixture
def running_up(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [CERTFLEET, "up"],
        env=_env(tmp_path, CERTFLEET_PREFECT_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            pytest.fail("certfleet up exited early:\n" + "".join(lines))
        lines.append(line)
        if "Press Ctrl-C to stop." in line:
            break
    else:
        proc.kill()
        pytest.fail("certfleet up did not come up:\n" + "".join(lines))
    assert f"Prefect UI:   http://127.0.0.1:{port}" in "".join(lines)
    try:
        yield tmp_path, port
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("certfleet up did not stop on Ctrl-C")
        if proc.stdout:
            proc.stdout.close()


def _statuses(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as db:
        return [r[0] for r in db.execute("SELECT status FROM certificates ORDER BY id")]


def test_up_serves_the_flows_and_provisions_the_demo_fleet(running_up: tuple[Path, int]) -> None:
    data_dir, port = running_up
    api = f"http://127.0.0.1:{port}/api"
    names = {d["name"]: d for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=10, trust_env=False).json()}
    assert set(names) == {"certfleet"}
    flows = {f["name"] for f in httpx.post(f"{api}/flows/filter", json={}, timeout=10, trust_env=False).json()}
    assert {
        "issue-certificate",
        "deploy-certificate",
        "provision-certificate",
        "rollback-deployment",
    } <= flows
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10, trust_env=False).status_code == 200  # the UI

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
